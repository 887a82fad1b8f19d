"""Secrets as values that never show themselves, and the one redaction rule for text."""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import traceback
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote

from bot.types.place import LOG_PLACE, named_places
from bot.types.text import INVISIBLE, char_class, without_invisible

REDACTED = "****"
# How to make the key that encrypts stored secrets (BOT_SECRET_KEYS), wherever it is missing.
KEYGEN_HINT = (
    "run `./scripts/run.sh keygen` (Docker: `docker run --rm chat-completion-bot keygen`) "
    "and put the result in BOT_SECRET_KEYS"
)

# Where a provider key can start: not inside a word of ASCII letters and digits (`task-`,
# `risk-free` are no keys), but after `_` or any other character (`x_sk-…`, `é sk-…`).
_KEY_START = r"(?<![A-Za-z0-9])"
# Shapes of provider keys and auth headers, for secrets this process never decrypted
# (a key of another service echoed by a proxy, a key pasted where it does not belong).
# Matrix ids ($event, !room, @user, #alias) are long base64 tokens too; they are not keys:
# the first alternative takes each whole (a `-` inside one is no start of a key), to keep.
# A key's character, and what may hide after it (holds_key reads through the same):
# `sk-proj-A1b2<U+200B>C3d4…` is one key, not a short one and the rest of it shown.
_KEY_CHAR = rf"[A-Za-z0-9_\-][{char_class(INVISIBLE)}]*"
_KEY_SHAPES = re.compile(
    r"(?P<matrix_id>(?<![\w$!@#])[$!@#](?:(?!sk-)[A-Za-z0-9_\-.=/+])+(?::[A-Za-z0-9.\-]+(?::\d+)?)?)"
    rf"|sk-ant-(?:{_KEY_CHAR}){{8,}}"
    # A whole key where a key starts (`x_sk-…`, as holds_key finds it); any `sk-…` after a
    # word's end (not `Gdańsk-based`), or after an escape a log's repr() writes.
    rf"|{_KEY_START}sk-(?:{_KEY_CHAR}){{16,}}"
    r"|(?:\b|(?<=\\[nrt])|(?<=\\x[0-9a-fA-F]{2})|(?<=\\u[0-9a-fA-F]{4}))"
    rf"sk-(?:{_KEY_CHAR}){{2,}}"
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=+/~]{8,}"
    r"|(?i:x-api-key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9_\-\.]{8,}"
    rf"|(?<![$!@#:/\w])(?:{_KEY_CHAR}){{32,}}\b"
    # Where that long one failed at a `-`, it fails at each later start of the same run
    # (they see no end it did not): its `-`s and what hides after them are kept, skipped
    # whole. Tried from each, a line of 40,000 `-` (or `-` and a zero-width space, one
    # key run now) took 30 to 90 s, the loop held.
    rf"|(?P<keep>(?<![$!@#:/\w])-[\-{char_class(INVISIBLE)}]*)"
)
# Words in a name that says its value is a credential: a URL's query parameter
# (`?access_token=`, `?api_key=`), anywhere in its name.
CREDENTIAL_WORDS = ("key", "token", "secret", "pass", "auth", "sig", "cookie")
# A header's name says so by one of its parts (`X-Api-Key`, `Authorization`, `apikey`),
# parts split at `-_. ` and where a capital starts a word (`X-AuthToken`, `AccessKey`),
# a part run together of such words too (`xauthtoken`): a part only containing one
# (`X-Bypass-Cache`, `X-Author`, `X-Max-Tokens`) is no credential.
_CREDENTIAL_PART = re.compile(
    r"(?:x|api|access|auth|client|private|secret|session|refresh|bearer|proxy)*"
    r"(?:keys?|token|secret|pass(?:word|wd|phrase)?|auth(?:orization)?|sig(?:nature)?"
    r"|cookie|credentials?)"
)
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def names_a_credential(name: str) -> bool:
    """Whether a header's name says its value is a credential."""
    parts = re.split(r"[-_.\s]+", _WORD_START.sub("-", name).lower())
    return any(_CREDENTIAL_PART.fullmatch(part) for part in parts)


# The shortest key or password taken (Kind.SECRET). Anything shorter is guessed at once,
# and the log's registry of secrets (as short a word is in ordinary text) leaves it out,
# while a channel's answers would lose it from inside every word: a password `a` made
# "I have a cat" read "I h****ve **** c****t".
MIN_SECRET_CHARS = 6


def too_short(secret: str) -> str | None:
    """Why a key or password is refused for its length, said without it (`(1 character;
    it takes at least 6): …`), or None: the one rule for one typed in chat (Kind.SECRET)
    and the operator's DEFAULT_*_API_KEY."""
    if len(secret) >= MIN_SECRET_CHARS:
        return None
    chars = "character" if len(secret) == 1 else "characters"
    return (
        f"({len(secret)} {chars}; it takes at least {MIN_SECRET_CHARS}): so short a secret "
        "is guessed at once, and would be blanked out of every word the bot shows"
    )


# A channel secret this long found in a message stops it, and in a model id leaves that
# out (a shorter one could be any word; answers are still cleaned of those).
HELD_SECRET_CHARS = 8
_PERCENT = re.compile(r"%[0-9A-F]{2}")
_WHOLE_KEY = re.compile(r"(?:sk-ant-|sk-)[A-Za-z0-9_\-]{16,}")


_KEY_INSIDE = re.compile(_KEY_START + _WHOLE_KEY.pattern)


def held_secret(what: str, prefix: str, *, instead: str = "") -> str:
    """The one refusal of a key or password pasted where none belongs. `what` held it (a
    "message", "file", "edit", "emote", "`name` option", "text for the system prompt");
    `instead`: what to do rather than storing a key with the key command (a command sent
    where none runs: send it anew)."""
    instead = instead or f"admins store keys with {prefix}key set."
    return (
        f"That {what} holds what looks like a key or password, so I did not send or keep "
        f"it. If others could see it, make a new one; {instead}"
    )


def holds_key(text: str) -> bool:
    """Text with a provider key in it (`sk-…`, `sk-ant-…`), also with unseen characters
    inside it: a command value or a chat message that does is refused, never sent,
    stored or shown (a key pasted into `/model`, or into a message to the model)."""
    if _KEY_INSIDE.search(text) is not None:
        return True
    seen = without_invisible(text)  # zero-width or soft hyphens pasted along, or put in
    return seen != text and _KEY_INSIDE.search(seen) is not None


def _escapes(text: str) -> set[str]:
    """`text` as each encoding an endpoint may put it in writes it."""
    found = {
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        repr(text)[1:-1],
        repr(text.encode("utf-8", "surrogatepass"))[2:-1],
        html.escape(text),
    }
    for encoded in (quote(text, safe=""), quote(text), quote_plus(text)):
        found.add(encoded)
        found.add(_PERCENT.sub(lambda m: m.group().lower(), encoded))
    return found


def _every_char_escaped(text: str) -> set[str]:
    """`text` with every character escaped, not only the special ones: `%4C%65…`,
    `\\u004c\\u0065…`, `\\x4c\\x65…`, `&#76;&#101;…`, `&#x4c;&#x65;…` (upper and lower
    hex). An endpoint that escapes everything writes a secret no other form finds."""
    raw = text.encode("utf-8", "surrogatepass")
    found = {
        "".join(f"%{b:02X}" for b in raw),
        "".join(f"&#{ord(c)};" for c in text),
    }
    for hex_ in ("x", "X"):
        found.add("".join(f"\\u{ord(c):04{hex_}}" for c in text))
        found.add("".join(f"&#x{ord(c):{hex_}};" for c in text))
        if text.isascii():
            found.add("".join(f"\\x{ord(c):02{hex_}}" for c in text))
    found.add("".join(f"%{b:02x}" for b in raw))
    return found


# A base64 run shorter than this is redacted only as part of a longer form: a short
# secret's base64 inside a blob is a few letters that ordinary text holds too.
_MIN_BASE64_CHARS = 8


def _base64(text: str) -> set[str]:
    """`text` in base64 (standard and URL-safe) wherever it sits in an encoded blob.

    Alone it is the whole encoding, padding and all. Inside a blob (`user:password` in
    a Basic header, a key inside an encoded JSON body) its bytes start at any of three
    offsets of a 3-byte group, and each offset spells it differently: for each, the
    characters that depend on its bytes alone."""
    raw = text.encode("utf-8", "surrogatepass")
    found = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        first = (offset * 8 + 5) // 6  # the first character with none of the filler
        last = (offset + len(raw)) * 8 // 6  # after it, the next bytes' bits would mix in
        middle = encoded[first:last]
        if offset == 0:
            found.add(encoded)
        if len(middle) >= _MIN_BASE64_CHARS:
            found.add(middle)
    found |= {f.replace("+", "-").replace("/", "_") for f in found}
    found |= {f.rstrip("=") for f in found}
    return found


@lru_cache(maxsize=4096)
def secret_forms(secret: str) -> tuple[str, ...]:
    """Every way `secret` may come back in text: raw, escaped, encoded; longest first.

    An endpoint may echo a key inside a JSON string, a Python bytes repr
    (`b'authorization: Bearer …'`), a URL, HTML, base64 (a Basic header, an encoded
    body), hex (a dump of the bytes sent), any of these escaped once more, or with
    every character escaped.
    """
    once = _escapes(secret) | _base64(secret)
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, *once, *_every_char_escaped(secret), raw.hex(), raw.hex().upper()}
    # Re-cased, as an endpoint that folds case writes it ("invalid key SK-ABC…").
    forms |= {secret.upper(), secret.lower()}
    for form in once:
        forms |= _escapes(form)
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


# Where a word starts: after no letter or digit that joins it, or after one that ends an
# escape (a `%20` or `\n` before it in a URL or a JSON string, as _KEY_SHAPES reads them).
# Looked at behind a form found (`{form}`): a pattern that begins with its form is searched
# for by that form's first character, not tried at every position of the text. `{joins}`:
# what joins the form's word there.
_WORD_BEGINS = (
    r"(?:(?<!{joins}{form})|(?<=%[0-9A-Fa-f]{{2}}{form})|(?<=\\[nrt]{form})"
    r"|(?<=\\x[0-9a-fA-F]{{2}}{form})|(?<=\\u[0-9a-fA-F]{{4}}{form}))"
)
# Letters of the scripts written without spaces between words (Chinese, Japanese, Korean's
# particles, Thai, Lao, Khmer, Myanmar): "パスワードはnoneです", "密码none" or "none입니다"
# hold `none` as a word of its own. Every other letter or digit joins a word, an accented
# one too: `rich` stays in "Zürich".
_UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff\u3130-\u318f"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
_JOINS = f"[^\\W_{_UNSPACED}]"
_JOINS_CHAR = re.compile(_JOINS)


def joins_word(char: str) -> bool:
    """Whether `char` runs into a word beside it, as _as_word reads one: a letter or digit
    not of a script written without spaces (the guard holds back an answer's end while
    the next piece may still join it)."""
    return _JOINS_CHAR.match(char) is not None


@lru_cache(maxsize=4096)
def _as_word(secret: str) -> re.Pattern[str]:
    """Each form of a secret too short to take (too_short: an older version took `none`,
    `x`), where it does not run into a letter or digit on either side (joins_word): `none`
    goes from "There is none left" and "密码none", not from "nonetheless" ("****theless"),
    and `x` not from every word with an x in it. Such a key is guessed at once; no word
    needs to lose it."""
    alone = []
    for form in secret_forms(secret):
        escaped = re.escape(form)
        before = _WORD_BEGINS.format(form=escaped, joins=_JOINS) if joins_word(form[0]) else ""
        after = f"(?!{_JOINS})" if joins_word(form[-1]) else ""
        alone.append(escaped + before + after)
    return re.compile("|".join(alone))


# What separates words: the space, a tab, the spaces keyboards and typesetting make
# (no-break, thin, narrow, ideographic: a CJK keyboard's fullwidth space).
_SPACES = r" \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"


@lru_cache(maxsize=4096)
def _loosely(secret: str) -> re.Pattern[str] | None:
    """`secret` as it may be disguised to slip past its exact forms: in any case, in
    fullwidth letters (`ｓｋ－…`), with invisible characters, a line break or a Markdown
    escape between its characters, or with spaces between every two of them
    (`h u n t e r 2`: a single space is how words meet, `pass word`). Only a secret of
    HELD_SECRET_CHARS or more: a shorter one could match ordinary words."""
    if len(secret) < HELD_SECRET_CHARS:
        return None
    classes = []
    for char in secret:
        # A case with more characters than one (`ß` is `SS` in capitals, `İ` is `i̇` in
        # small letters) is no variant of one character: the exact forms have it.
        variants = {v for v in (char, char.lower(), char.upper()) if len(v) == 1}
        variants |= {chr(ord(v) + 0xFEE0) for v in variants if "!" <= v <= "~"}
        classes.append("[" + "".join(re.escape(v) for v in sorted(variants)) + "]")
    # Never a character of the secret itself between them: the pattern then matches in
    # linear time.
    escape = "" if "\\" in secret else "\\\\"
    # Between its characters, what an eye or a renderer skips: the one table's invisible
    # characters (letters drawn as nothing and line separators too), a line break, an escape.
    unseen = char_class("".join(c for c in INVISIBLE if c not in secret))
    tight = "(?:" + f"[{unseen}\\r\\n{escape}]{{0,3}}".join(classes) + ")"
    if any(c.isspace() for c in secret):
        return re.compile(tight)
    spaced = "(?:" + f"[{_SPACES}{unseen}]{{1,3}}".join(classes) + ")"
    return re.compile(f"{tight}|{spaced}")


def redact(
    text: str, secrets: Iterable[str] = (), *, shapes: bool = True, known: bool = True
) -> str:
    """`text` without any form of the given secrets, of known secrets, or of key shapes.

    The one rule for everything shown, stored or logged: `secrets` are redacted
    whatever their length (an endpoint's own password may be short; one under
    MIN_SECRET_CHARS, which an older version took, only as a word of its own); secrets this
    process has seen are redacted when long enough not to garble ordinary words.
    `shapes=False` for a model's answer, where "bearer …" is just prose. With shapes, a
    URL's user info and the values of its query parameters named as credentials go too
    (`http://****@host/v1?api_key=****`).

    `known=False` for text shown in one channel, which is cleaned of that channel's own
    secrets (given in `secrets`) and of key shapes only. Every channel's secrets are
    known to the process, and anyone may set a word as a password in a server of their
    own (or type one in a refused command): known secrets there would let them blank
    that word from every answer and error the bot shows anywhere. The log, the
    operator's, is cleaned of all of them.
    """
    given = tuple(secrets)
    for secret in (*given, *(SECRET_REGISTRY.values() if known else ())):
        if not _may_be_in(secret, text):
            continue
        if too_short(secret) is not None:  # one an older version took: a word of its own
            text = _as_word(secret).sub(REDACTED, text)
            continue
        for form in secret_forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    for secret in given:  # the channel's own, also disguised (_loosely)
        loose = _loosely(secret) if _may_be_in(secret, text) else None
        if loose is not None:
            text = loose.sub(REDACTED, text)
    if not shapes:
        return text
    if "/" in text:  # a URL's user info, or a credential in its query (`?api_key=…`)
        text = _URL.sub(_url_hidden, text)
    return _KEY_SHAPES.sub(_redacted_shape, text)


# An http(s) URL, as written or JSON-escaped (`http:\/\/…`), to its first space or quote:
# the user info of its authority (group 1, before its `@`) and the rest.
_URL = re.compile(r"(?i)\bhttps?:(?:\\?/){2}([^\s\"'<>`/?#@\\]*@)?[^\s\"'<>`]*")
# A query parameter inside one: its name (group 2) and value (group 3).
_QUERY_PARAM = re.compile(r"([?&;]([^=&;#]*)=)([^&;#]*)")


def _url_hidden(url: re.Match[str]) -> str:
    """A URL without what logs in: its user info (`user:password@`, or a key written as
    the user) and its query parameters named as credentials (names_a_credential)."""
    text = url[0]
    if url[1]:
        at = url.start(1) - url.start(0)
        text = text[:at] + REDACTED + "@" + text[at + len(url[1]) :]
    if "=" in text:
        text = _QUERY_PARAM.sub(_credential_hidden, text)
    return text


def _credential_hidden(param: re.Match[str]) -> str:
    return param[1] + REDACTED if names_a_credential(param[2]) else param[0]


def _may_be_in(secret: str, text: str) -> bool:
    """Whether any form of `secret` fits in `text`: every form, and every disguise, is at
    least as long as the secret. A key of 60 KB typed into a command (refused as too
    long) had its forms and disguise built to clean a reply of one line: half a minute,
    the bot's whole loop held."""
    return bool(secret) and len(secret) <= len(text)


def _redacted_shape(found: re.Match[str]) -> str:
    return found[0] if found["matrix_id"] or found["keep"] else REDACTED


class _SecretRegistry:
    """Plaintexts of secrets this process has seen lately, so logs can redact them.

    Bounded: anyone can make the bot see a secret (a key typed into a command, refused
    or not, in a direct message of their own), and every log line is searched for every
    form of each. The `_MOST` seen last are kept; one in use is seen again whenever it is
    read (a turn opens its channel's), and the channel's own are given to redact()
    wherever they matter."""

    _MOST = 1024

    def __init__(self) -> None:
        self._values: dict[str, None] = {}  # oldest first
        self._sorted: tuple[str, ...] | None = ()
        self._short: dict[str, frozenset[str]] = {}  # value: the places it was read in
        self._lock = threading.Lock()

    def add(self, value: str, *, stored: bool = False) -> None:
        """Remember `value`. One under MIN_SECRET_CHARS only when `stored` (an older
        version stored it, a channel still sends it), and for the log lines of the place
        it was read in (short_in): as a word of its own it is still a word (`none`) that
        other channels' lines hold. Typed ones that short (refused) and stand-ins (`key`)
        are left out: anyone could otherwise blank the word `the` from the log."""
        if not value:
            return
        if len(value) < MIN_SECRET_CHARS:
            if stored:
                self._add_short(value, LOG_PLACE.get())
            return
        with self._lock:
            if value in self._values:  # seen again: the last to go
                del self._values[value]
                self._values[value] = None
                return
            self._values[value] = None
            if len(self._values) > self._MOST:
                del self._values[next(iter(self._values))]
            self._sorted = None

    def _add_short(self, value: str, place: str) -> None:
        with self._lock:
            places = self._short.pop(value, frozenset())
            self._short[value] = places | {place}  # seen again: the last to go
            if len(self._short) > self._MOST:
                del self._short[next(iter(self._short))]

    def short_in(self, place: str) -> tuple[str, ...]:
        """The short stored secrets read in `place` (a log line's LOG_PLACE; "" outside
        any; a line for several places names each, or the first of them)."""
        if not self._short:
            return ()
        with self._lock:
            found = list(self._short.items())
        # Each place whole: `discord:g1:c1` is not named by `discord:g1:c10` (it lost c1's
        # short password from its lines as a word, `none`, that c1 never wrote there).
        named = {place, *named_places(place)}
        return tuple(v for v, where in found if not named.isdisjoint(where))

    def values(self) -> tuple[str, ...]:
        found = self._sorted
        if found is None:
            with self._lock:
                found = self._sorted = tuple(sorted(self._values, key=len, reverse=True))
        return found


SECRET_REGISTRY = _SecretRegistry()


_SHOWN_TAIL_MIN = 16  # a secret shows its last 4 characters only from this length on


class SecretValue:
    """A secret string that never shows itself in repr/str/format."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        SECRET_REGISTRY.add(value)

    def reveal(self) -> str:
        return self._value

    @property
    def last4(self) -> str:
        """Its last 4 characters, to tell keys apart; nothing for a short secret (a
        9-character password would show almost half of itself)."""
        return self._value[-4:] if len(self._value) >= _SHOWN_TAIL_MIN else ""

    def __repr__(self) -> str:
        return "SecretValue('****')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretValue cannot be pickled")


def failure(err: BaseException) -> str:
    """An unexpected error for the log: its kind and where it was raised in the bot,
    `OverflowError in bot/store/usage.py:116 (record_usage)`. Not its message: a
    driver's message can carry the statement's values (a message, a stored secret)."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "/bot/" in f.filename.replace("\\", "/")] or frames
    if not ours:
        return type(err).__name__
    frame = ours[-1]
    path = frame.filename.replace("\\", "/")
    where = path[path.rfind("/bot/") + 1 :] if "/bot/" in path else path.rsplit("/", 1)[-1]
    return f"{type(err).__name__} in {where}:{frame.lineno} ({frame.name})"


def went_wrong(err: BaseException, running: str = "", log: str | None = None) -> str:
    """What a person is told of an unexpected error (a bug): its kind, never its message
    (`failure` says where it was raised, in the log). `log`: where the reader finds the
    log themselves (the console's operator); others are sent to the operator."""
    what = f" running {running}" if running else ""
    then = f"{log} says where" if log else "tell the bot's operator (its log says where)"
    return (
        f"Something went wrong{what} ({type(err).__name__}). Try again; if it keeps "
        f"failing, {then}."
    )


def holds_secret(text: str, secrets: Iterable[str]) -> bool:
    """Whether a message holds, in any written form, one of the secrets its channel's
    endpoint is sent: as written, and as read with invisible characters out and escapes
    undone (a password with a zero-width space inside, partly %-encoded, or in sloppy
    HTML entities)."""
    held = [s for s in secrets if len(s) >= HELD_SECRET_CHARS]
    if not held:
        return False
    read = html.unescape(unquote(without_invisible(text)))
    return any(redact(t, held, shapes=False, known=False) != t for t in (text, read))
