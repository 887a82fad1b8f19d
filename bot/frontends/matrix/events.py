"""What is this Matrix event? Pure functions over event content (no nio, no network)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from bot.types.text import normalize_text, unicode_pattern

# Clients put a "<name>: " or a pill before the text when they mention someone: a link to
# https://matrix.to/#/@user:server (its id maybe percent-encoded) or matrix:u/user:server.
# Linear in the HTML, as any member writes it: a tag's attributes end at the next "<" and
# the link is never given back to be tried shorter (a `<a href='matrix:u/` and 60 KB with
# no quote, or thousands of `<a `, had held the bot's whole loop for 10 to 30 seconds).
_PILL = re.compile(
    r"""<a\s[^<>]*?href\s*=\s*(["'])(https://matrix\.to/#/|matrix:u/)([^"'?#<>]++)[^"'<>]*+\1""",
    re.IGNORECASE,
)
# The first line of a reply's fallback quote: "> <@alice:server> …" ("> * <@…>" an emote's).
_FALLBACK_HEAD = re.compile(r"> (?:\* )?<@[^>\s]+>")
# The only place a file is fetched from: the homeserver's media repository, never a URL.
_MXC = re.compile(r"mxc://[A-Za-z0-9.:\[\]-]+/[A-Za-z0-9_-]+")
# Messages carrying a file: images and files are read; a voice message or a video is
# refused by its declared type, never downloaded (it had gone without a word).
MEDIA = frozenset({"m.image", "m.file", "m.audio", "m.video"})
# A sticker is an event of its own, an image without a msgtype: read as an m.image (in a
# direct chat it had gone without a word).
STICKER = "m.sticker"
# In the content of every message this bot sends. Its answers are m.text (people read
# them as such), so another bot of this kind would take a reply to it, or a mention of
# it in an answer, as addressed to it: two in one room answered each other for ever.
SENT_BY_THIS_BOT = "chat_completion_bot"


def msgtype_of(content: Mapping[str, Any]) -> str:
    """A message's msgtype, "" when it is not a string: a list or an object there (an
    encrypted event, which the homeserver cannot check, may hold one) is unhashable, and
    looking it up among the msgtypes had failed the event with an error in the log."""
    kind = content.get("msgtype")
    return kind if isinstance(kind, str) else ""


def from_this_bot(content: Mapping[str, Any]) -> bool:
    """Sent by a bot of this kind (another account, or another process)."""
    return content.get(SENT_BY_THIS_BOT) is True


def relates_to(content: Mapping[str, Any]) -> Mapping[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, Mapping) else {}


def is_edit(content: Mapping[str, Any]) -> bool:
    """An edit (m.replace) of an earlier message; the bot answers the original only."""
    return relates_to(content).get("rel_type") == "m.replace"


def edited_text(content: Mapping[str, Any]) -> str:
    """What an edit (m.replace) changes its message's text to ("" when it says nothing):
    a file message's caption (an edited caption; no caption left: ""), not its name."""
    new = content.get("m.new_content")
    if not isinstance(new, Mapping):
        return ""
    if msgtype_of(new) in MEDIA:  # MSC2530: `body` is the caption only beside a `filename`
        return caption_of(new)
    body = new.get("body")
    return normalize_text(body) if isinstance(body, str) else ""


def annotation(event_type: str, content: Mapping[str, Any]) -> tuple[str, str] | None:
    """(the annotated event, the key) of an m.reaction, else None."""
    rel = relates_to(content)
    if event_type != "m.reaction" or rel.get("rel_type") != "m.annotation":
        return None
    event_id, key = rel.get("event_id"), rel.get("key")
    if not isinstance(event_id, str) or not isinstance(key, str) or not event_id or not key:
        return None
    return event_id, key


def redacted(source: Mapping[str, Any]) -> str | None:
    """The event an m.room.redaction removes, else None (room version 11 names it in the
    content, older ones at the top level)."""
    if source.get("type") != "m.room.redaction":
        return None
    content = source.get("content")
    named = source.get("redacts")
    if not isinstance(named, str) and isinstance(content, Mapping):
        named = content.get("redacts")
    return named if isinstance(named, str) and named else None


def thread_root(content: Mapping[str, Any]) -> str:
    """The thread's root event id when the message is in a thread, else ""."""
    rel = relates_to(content)
    if rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str):
        return str(rel["event_id"])
    return ""


def replied_to(content: Mapping[str, Any]) -> str:
    """The event this message replies to ("" when none, or a thread's fallback only)."""
    rel = relates_to(content)
    if rel.get("rel_type") == "m.thread" and rel.get("is_falling_back", False):
        return ""
    reply = rel.get("m.in_reply_to")
    if isinstance(reply, Mapping) and isinstance(reply.get("event_id"), str):
        return str(reply["event_id"])
    return ""


def strip_reply_fallback(body: str, content: Mapping[str, Any]) -> str:
    """Drop the legacy "> <@user> quoted" lines a reply starts with. Only a reply's: in
    any other message they are what was typed (a forged quote could hide a command
    after it, or a key inside it from the checks)."""
    if not isinstance(relates_to(content).get("m.in_reply_to"), Mapping):
        return body
    lines = body.split("\n")
    if not _FALLBACK_HEAD.match(lines[0]):
        return body  # a client without fallbacks (Element X): a "> quote" is the member's
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    return "\n".join(lines[i:]).lstrip("\n")


_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.DOTALL | re.IGNORECASE)
_MX_REPLY_END = re.compile(r"</mx-reply>", re.IGNORECASE)


def _without_quote(formatted: str) -> str:
    """A reply's HTML without its quote (<mx-reply>). Only the part up to the last
    </mx-reply> is looked through: each <mx-reply> after it would be scanned to the end
    (thousands of them, a second or more)."""
    end = max((found.end() for found in _MX_REPLY_END.finditer(formatted)), default=0)
    return _MX_REPLY.sub("", formatted[:end]) + formatted[end:]


def mentions_user(
    content: Mapping[str, Any], user_id: str, names: tuple[str, ...], text: str | None = None
) -> bool:
    """m.mentions, a pill in the HTML, the user id, or one of `names` (its display names:
    its own, the one it has in the room) as a word.

    `text` is where to look for the id or name instead of `body` (a file's caption).
    """
    mentions = content.get("m.mentions")
    if isinstance(mentions, Mapping):
        ids = mentions.get("user_ids")
        if isinstance(ids, list) and user_id in ids:
            return True
    formatted = content.get("formatted_body")
    if isinstance(formatted, str):
        # A reply's quote of the message it answers (<mx-reply>) is not this message:
        # replying to someone who had named the bot is no mention of it.
        if isinstance(relates_to(content).get("m.in_reply_to"), Mapping):
            formatted = _without_quote(formatted)
        if any(_pilled(m) == user_id for m in _PILL.finditer(formatted)):
            return True
    body = content.get("body") if text is None else text
    if not isinstance(body, str):
        return False
    body = strip_reply_fallback(body, content)
    if user_id in body:
        return True
    return any(_named(name, body) for name in names if name)


# A pill whole: its link and the text shown for it (a person's display name).
_PILL_SHOWN = re.compile(_PILL.pattern + r"[^>]*>(.{0,512}?)</a\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
# A command that names someone is a line: a longer body or formatted body is not looked
# through (thousands of unclosed links, or a hundred pills each looked for in a body of
# tens of thousands of words, would cost seconds of regex before any check).
_PILLED_MOST = 4096
# …and names a person or two: the last few pills are its arguments.
_PILLS_MOST = 8


def pills_as_ids(text: str, content: Mapping[str, Any]) -> str:
    """`text` (the message's body) with each person a pill names by their display name
    written as their user id: a client that completes a mention puts the name in `body`
    and the id only in `formatted_body`'s link. A pill's name is looked for as a whole
    word from the end (where a command's arguments are); one not found changes nothing."""
    formatted = content.get("formatted_body")
    if not isinstance(formatted, str) or max(len(formatted), len(text)) > _PILLED_MOST:
        return text
    end = len(text)
    for link in reversed(list(_PILL_SHOWN.finditer(formatted))[-_PILLS_MOST:]):
        user_id = _pilled(link)
        shown = html.unescape(_TAG.sub("", link.group(4))).strip()
        if not user_id.startswith("@") or not shown or shown == user_id:
            continue
        words = list(re.finditer(rf"(?<!\S){re.escape(shown)}(?!\S)", text[:end]))
        if words:
            found = words[-1]
            text = text[: found.start()] + user_id + text[found.end() :]
            end = found.start()
    return text


# A word that may be a user id (`@` to the next space).
_TYPED_ID = re.compile(r"(?<!\S)@\S{1,254}(?!\S)")


def member_ids_as_written(text: str, members: Iterable[str]) -> str:
    """`text` with each user id that is a member's but for its letters' case written as
    the member's: ids are compared exactly, so `@Bob:example.org` would name nobody, and a
    rule denying Bob would let him chat. An id no member has stays as typed."""
    if "@" not in text or len(text) > _PILLED_MOST:
        return text
    exact = set(members)
    by_case = {m.casefold(): m for m in exact}

    def member(found: re.Match[str]) -> str:
        typed = found.group()
        return typed if typed in exact else by_case.get(typed.casefold(), typed)

    return _TYPED_ID.sub(member, text)


def _pilled(link: re.Match[str]) -> str:
    """The user id a pill links to."""
    named = unquote(html.unescape(link.group(3)))
    return named if link.group(2).lower().startswith("https") else "@" + named


# A name this short ("Al", or a card named "the") would be found in any message as a
# word: it addresses the bot only at the start, before ":" or "," ("Al: hi"). A
# character of a script written without spaces counts twice (小助手 is no "the").
_SHORT_NAME = 3
# What ends an address at the start of a message: "Al: hi", "Al, hi", "小助手：你好",
# "Al – hi" and "Al — hi" (a phone makes a dash of "-"). Spaces may come before it: "Al :
# salut" (French), "Al\u00a0: hi" (a no-break space after a pill).
_ADDRESS_ENDS = (":", ",", "：", "，", "、", "–", "—")
# After a space, these end an address only with a space (or nothing) after them too:
# "Al : salut", "Al - hi", but "Al :)" is a smiley.
_SPACED_ENDS = (":", ",", "-")
# Spaces on the line, of any width (no-break, thin, ideographic…), not line breaks.
_GAP = re.compile(r"[^\S\n\r\v\f\x1c-\x1e\x85\u2028\u2029]*")
# What Japanese (and Korean) write straight after a name: "Helperさん、こんにちは".
_HONORIFICS = ("さん", "さま", "様", "ちゃん", "くん", "君", "殿", "님")
# Scripts written without spaces between words: a name in one is found inside a run of
# text ("请问小助手", "アシスタントさん"), where a word boundary never comes.
_UNSPACED_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_UNSPACED = f"[{_UNSPACED_SCRIPTS}]"
# Scripts whose words are written straight on to a name of another script: those without
# spaces, and Korean's particles and honorifics ("Helperさん", "请问Helper", "Helper님").
_WRITTEN_ON = rf"[{_UNSPACED_SCRIPTS}\p{{Hangul}}]"


def _unspaced(text: str) -> int:
    """How many characters of `text` are of a script written without spaces (none in
    ASCII: the Unicode pattern module is not loaded for it)."""
    return 0 if text.isascii() else len(unicode_pattern(_UNSPACED).findall(text))


def _named(name: str, body: str) -> bool:
    if len(name) + _unspaced(name) > _SHORT_NAME:
        return _word(name, body)
    found = _address(body.lstrip(), name)
    return found is not None and found[1]


def _address(text: str, name: str) -> tuple[str, bool] | None:
    """When `text` starts by addressing `name`: what follows the address, and whether a
    mark ended it (":", "，", "–"; not only a space, or the end of the text). The name may
    have an honorific after it, spaces before the mark ("Al : salut", "Alさん、こんにちは").
    None when `text` does not start so ("Alice", "Al-Anon", "Alさんの")."""
    if not text.lower().startswith(name.lower()):
        return None
    rest = text[len(name) :]
    rest = next((rest[len(h) :] for h in _HONORIFICS if rest.startswith(h)), rest)
    gap = _GAP.match(rest)
    after = rest[gap.end() if gap else 0 :]
    spaced = after != rest
    mark, then = after[:1], after[1:]
    if spaced and mark in _SPACED_ENDS:
        if not then[:1].strip():
            return then.lstrip(), True
    elif mark in _ADDRESS_ENDS:
        return then.lstrip(), True
    if spaced or not after:
        return after.lstrip(), False
    return None


def _word(name: str, body: str) -> bool:
    """`name` in `body` as a word: no letter or digit runs on at an edge, unless the name
    ends there in a script without spaces, or in an emoji (which ends itself), or what
    runs on is of a script written on to a name ("Helperさん"; never "Helperé")."""
    for found in re.finditer(re.escape(name), body, re.IGNORECASE):
        start, end = found.span()
        if _ends(name[0], body[start - 1 : start] if start else "") and _ends(
            name[-1], body[end : end + 1]
        ):
            return True
    return False


def _ends(edge: str, beside: str) -> bool:
    """A name ends at its `edge` character with `beside` next to it ("": none)."""
    if _self_delimiting(edge) or not _in_word(beside):
        return True
    return _written_on(beside) and not _written_on(edge)


def _in_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _self_delimiting(char: str) -> bool:
    return not _in_word(char) or _unspaced(char) > 0


def _written_on(char: str) -> bool:
    """Of a script written straight on to a name (not loading the Unicode pattern module
    for ASCII)."""
    return not char.isascii() and unicode_pattern(_WRITTEN_ON).match(char) is not None


def strip_mention(body: str, user_id: str, names: tuple[str, ...]) -> str:
    """The text without a leading "<name>:" / "@user:server:" address (`names`: as for
    mentions_user)."""
    text = body.lstrip()
    for name in (user_id, *sorted(names, key=len, reverse=True)):
        found = _address(text, name) if name else None
        if found is not None:
            return found[0]
    return body.strip()


def is_direct_room(member_count: int) -> bool:
    """A room with the bot and one other person (joined or invited) is a direct chat:
    every message is for the bot, answered without a reply to it."""
    return member_count <= 2


# Join rules under which nobody joins without a member letting them in.
_CLOSED_RULES = frozenset({"invite", "knock", "private"})


def is_private_room(member_count: int, join_rule: str, history_visibility: str) -> bool:
    """A direct chat that nobody else can join or read unasked: where a key may be sent.
    A public room (or one a space's members join freely) with one person in it so far
    is not: a key taken there stayed in the history everyone who came later read."""
    return (
        is_direct_room(member_count)
        and join_rule in _CLOSED_RULES
        and history_visibility != "world_readable"
    )


def text_of(content: Mapping[str, Any]) -> str | None:
    """The text a person typed (m.text, m.emote); None for notices (other bots) and media.

    Lone surrogates, which no homeserver relays but an encrypted message may hold (its
    JSON is read by the bot alone), are U+FFFD as elsewhere (normalize_text): a key
    command holding one had failed with an error in the log, and no word to its sender."""
    if content.get("msgtype") not in ("m.text", "m.emote"):
        return None
    body = content.get("body")
    return strip_reply_fallback(normalize_text(body), content) if isinstance(body, str) else None


@dataclass(frozen=True, slots=True)
class MediaFile:
    """The file an m.image or m.file event names, and its key when it is encrypted."""

    mxc: str
    filename: str
    mimetype: str = ""  # as the sender's client declares it
    size: int = 0  # as declared (0: not given)
    key: str = ""  # AES-CTR key (unpadded urlsafe base64); "" for a plain upload
    sha256: str = ""  # of the ciphertext, checked before decrypting
    iv: str = ""

    @property
    def encrypted(self) -> bool:
        return bool(self.key)


def media_of(content: Mapping[str, Any], event_type: str = "m.room.message") -> MediaFile | None:
    """The file of an image, file, audio or video message, or of a sticker (`event_type`);
    None for other messages.

    A plain upload has `url`, an end-to-end encrypted one `file` (an EncryptedFile). One
    whose link is malformed is a file with no link: asked about, it cannot be downloaded,
    and the person is told so (ignored, they were told nothing)."""
    if event_type == STICKER:
        content = {**content, "msgtype": "m.image"}  # its body describes it, as a name
    elif event_type != "m.room.message":
        return None
    found = _media(content)
    if found is None and msgtype_of(content) in MEDIA:
        return MediaFile("", *_described(content))
    return found


def _described(content: Mapping[str, Any]) -> tuple[str, str, int]:
    """A file message's name, type and size, as its sender gave them."""
    body, name = content.get("body"), content.get("filename")
    filename = name if isinstance(name, str) and name else body if isinstance(body, str) else ""
    info = content.get("info")
    info = info if isinstance(info, Mapping) else {}
    mimetype = info.get("mimetype")
    mimetype = mimetype if isinstance(mimetype, str) else ""
    size = info.get("size")
    # A negative or non-integer size is no size at all.
    size = size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0
    return filename, mimetype, size


def _media(content: Mapping[str, Any]) -> MediaFile | None:
    if msgtype_of(content) not in MEDIA:
        return None
    filename, mimetype, size = _described(content)
    url = content.get("url")
    if isinstance(url, str):
        return MediaFile(url, filename, mimetype, size) if _MXC.fullmatch(url) else None
    file = content.get("file")
    if not isinstance(file, Mapping):
        return None
    key, hashes = file.get("key"), file.get("hashes")
    if not isinstance(key, Mapping) or not isinstance(hashes, Mapping):
        return None
    parts = (file.get("url"), key.get("k"), hashes.get("sha256"), file.get("iv"))
    if key.get("alg", "A256CTR") != "A256CTR" or not all(isinstance(p, str) and p for p in parts):
        return None
    url, k, sha256, iv = (str(p) for p in parts)
    if not _MXC.fullmatch(url):
        return None
    return MediaFile(url, filename, mimetype, size, key=k, sha256=sha256, iv=iv)


def caption_of(content: Mapping[str, Any]) -> str:
    """A file message's caption: its `body` when a `filename` is given and differs from it.

    Without a `filename` the body is the file's name, so there is no caption.
    """
    body, name = content.get("body"), content.get("filename")
    if not isinstance(body, str) or not isinstance(name, str) or not name or body == name:
        return ""
    return strip_reply_fallback(normalize_text(body), content)  # as text_of
