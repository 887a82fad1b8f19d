"""Markdown → Matrix HTML (org.matrix.custom.html): a small, escaping-first renderer.

Covers what chat answers use: code fences, inline code, bold, italics, strikethrough,
spoilers, links, headings, rules, block quotes, line breaks and indents. Everything else
is escaped text, so model output can never inject markup.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from bot.frontends.matrix.tlds import TLDS
from bot.types.text import HIDDEN, char_class

HTML_FORMAT = "org.matrix.custom.html"

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+.#-]*)\s*$")
# A link's text holds no `[` (as in CommonMark, `[a [b](u)` links `b`), its address no
# `](`: each look for one then ends where the next could begin. Read on to the line's
# end from every `[` (or `](`) of a line of them, a page of `[` took seconds to render,
# several times each edit as the page was measured, the bot's loop held.
_SPANS = (
    r"\\(?P<escaped>[!-/:-@\[-`{-~])"  # CommonMark: a backslash keeps punctuation as is
    r"|(?P<code>`+)(?P<code_text>.+?)(?P=code)"
    # An address may hold balanced parentheses, one deep (CommonMark: `wiki/Foo_(bar)`).
    r"|\[(?P<link_text>[^\[\]\n]+)\]\((?P<url>(?:[^()\s\]]|\](?!\()|\([^()\s]*+\))++)\)"
)
# A run of emphasis marks; `*` between two digits is a product (`2*3*4`), no mark.
_MARK_RUN = r"(?P<run>\*{2,}|(?<!\d)\*|\*(?!\d)|_+|~+|\|+)"
_INLINE = re.compile(f"{_SPANS}|{_MARK_RUN}")
# A bare address is text, its marks none: `https://docs.python.org/3/library/__main__
# .html` went bold in its middle, and clients linked only its start. As GitHub's
# Markdown reads one, without the marks and punctuation that end it (`**https://e.o**`).
# Looked for only in a line that holds `://`: prose without one is read as fast as before.
_ADDRESS = r"(?<!\w)(?P<bare>https?://[^\s<>`\\]*[^\s<>`\\?!.,:;'\"*_~|])"
_INLINE_WITH_ADDRESSES = re.compile(f"{_SPANS}|{_ADDRESS}|{_MARK_RUN}")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_PILL = re.compile(r"https?://matrix\.to/", re.IGNORECASE)


# Link text that reads as a web address: a URL, or a dotted host name ending in a
# top-level domain, perhaps with a port and a path (`google.com`, `www.google.com/login`,
# `gооgle.com` in Cyrillic too; not `Node.js`, `os.path` or `console.log`, which no
# domain ends in).
_URL_TEXT = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:[^\s/?#@]*@)?(?P<host>\[[^\]]*\]|[^\s/?#:]*)\S*", re.I
)
_HOST_TEXT = re.compile(
    r"(?P<host>(?:[\w-]+\.)+(?P<tld>[^\W\d_]{2,}))\.?(?::[0-9]{1,5})?(?:[/?#]\S*)?"
)


def _ascii_host(host: str) -> str:
    """`host` as DNS spells it (`bücher.de` is `xn--bcher-kva.de`), to compare two names."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:  # an empty or overlong label: no such host, compared as written
        return host


def _misleading(text: str, url: str) -> bool:
    """Whether `text` names a web address other than the one `url` goes to: a masked
    link (`[google.com](https://evil.example)`) shows one host and opens another, and
    Matrix clients open a link without showing where it goes. Text naming the target's
    own host or a domain it is in, or the file it links (`[README.md](…/README.md)`), is
    no disguise."""
    shown = text.strip(" *_~`<>")
    named = _URL_TEXT.fullmatch(shown) or _HOST_TEXT.fullmatch(shown)
    if named is None:
        return False
    if named.re is _HOST_TEXT and _ascii_host(named["tld"].lower()) not in TLDS:
        return False  # a name with dots in it (`Node.js`, `pandas.DataFrame`), no address
    try:
        target = urlsplit(url)
        host = target.hostname or ""
    except ValueError:  # `http://[::1`: no host to compare
        return True
    if url.lower().startswith("mailto:"):
        host = target.path.rpartition("@")[2]
    host = _ascii_host(host.lower().rstrip(".")).removeprefix("www.")
    name = _ascii_host(named["host"].lower().strip("[]").rstrip(".")).removeprefix("www.")
    if host and (host == name or host.endswith(f".{name}") or name.endswith(f".{host}")):
        return False
    is_file = named.re is _HOST_TEXT  # `[README.md](…/README.md)`: the file it links
    return not (is_file and unquote(target.path).rpartition("/")[2].lower() == shown.lower())


_TAG = re.compile(r"<[^>]*>")
# What shows nothing (the text table's, with the letters drawn as nothing), and any other
# format character (Cf, by category in _shown). Not its line separators: in a link's text
# they are line breaks, which show as a break and read as a blank, as `\n` would.
_IGNORABLE = re.compile(f"[{char_class(HIDDEN)}]")
# The full stops a host name may be written with (IDNA reads `google。com` as google.com).
_DOTS = str.maketrans("\u3002\uff0e\uff61", "...")


def _shown(rendered: str) -> str:
    """What a link's rendered text shows: its tags and escapes read (`google\\.com`,
    `goo**gle.com**` show `google.com`), characters that show nothing (a zero-width
    space, a soft hyphen, a direction mark, a variation selector) left out, its blanks
    as spaces, a full stop of another width as a dot."""
    text = _IGNORABLE.sub("", html.unescape(_TAG.sub("", rendered))).translate(_DOTS)
    return " ".join("".join(c for c in text if unicodedata.category(c) != "Cf").split())


def _link(text: str, url: str) -> str:
    # A link to a person or room (matrix.to, matrix:) is drawn as a pill: a model's
    # answer would show a look-alike mention of whomever it names; a link whose text is
    # another address disguises where it goes. As written, then (clients link the URL).
    # The text is judged as it shows, not as written: an escape, an emphasis around part
    # of it or a zero-width space inside hid an address from the rule.
    shown = _inline(text)
    if (
        not url.lower().startswith(_SAFE_SCHEMES)
        or _PILL.match(url)
        or _misleading(_shown(shown), url)
    ):
        return html.escape(f"[{text}]({url})", quote=False)
    return f'<a href="{html.escape(url, quote=True)}">{shown}</a>'


# Emphasis marks a line may hold and still be paired: a line of thousands is no prose (a
# model looping on `*_`), and pairing them cost ~10 µs a run on the event loop, at each
# paced edit; they are shown as the text they are.
MAX_MARKS = 2000


def _inline(text: str) -> str:
    """Escape `text` and turn inline Markdown into tags."""
    parts: list[str | _Run] = []
    pos = 0
    paired = sum(map(text.count, "*_~|")) <= MAX_MARKS
    pattern = _INLINE_WITH_ADDRESSES if "://" in text else _INLINE
    for match in pattern.finditer(text):
        parts.append(html.escape(text[pos : match.start()], quote=False))
        pos = match.end()
        groups = match.groupdict()
        if groups["run"]:
            run = match.group()
            parts.append(_run(text, match.start(), match.end()) if paired else run)
        elif groups.get("bare"):
            parts.append(html.escape(groups["bare"], quote=False))
        elif groups["escaped"]:
            parts.append(html.escape(groups["escaped"], quote=False))
        elif groups["code"]:
            parts.append(f"<code>{html.escape(groups['code_text'].strip(), quote=False)}</code>")
        else:
            parts.append(_link(groups["link_text"], groups["url"]))
    parts.append(html.escape(text[pos:], quote=False))
    _pair([part for part in parts if isinstance(part, _Run)])
    return "".join(part if isinstance(part, str) else part.html() for part in parts)


# Emphasis as CommonMark pairs its marks: a run of `*` or `_` opens where it leans on the
# word after it and closes where it leans on the one before, so marks nest (`**a *b* c**`)
# and share a run (`***x***`); `_` not inside a word (`snake_case_name`), `*` anywhere
# (`**粗体**文字`). `~~` strikes; `||` hides, as Discord writes a spoiler (and models
# trained on its chats do), drawn as Matrix's spoiler; each a run of two.
_TAGS = {
    "*": (("<em>", "</em>"), ("<strong>", "</strong>")),
    "_": (("<em>", "</em>"), ("<strong>", "</strong>")),
    "~": (("<del>", "</del>"),) * 2,
    "|": (("<span data-mx-spoiler>", "</span>"),) * 2,
}


@dataclass(slots=True)
class _Run:
    """A run of one mark: how long it was written, how many of its marks are still text,
    and the tags it closes (innermost first) and opens (innermost first)."""

    char: str
    length: int
    left: int
    can_open: bool
    can_close: bool
    closes: list[str] = field(default_factory=list)
    opens: list[str] = field(default_factory=list)

    def html(self) -> str:
        return "".join(self.closes) + self.char * self.left + "".join(reversed(self.opens))


def _blank(char: str) -> bool:
    return not char or char.isspace()  # a line's start and end count as blank


def _punctuation(char: str) -> bool:
    return bool(char) and unicodedata.category(char)[0] in "PS"


def _run(text: str, start: int, end: int) -> _Run:
    """The run `text[start:end]`, and whether it may open or close (CommonMark's
    flanking rules)."""
    char, length = text[start], end - start
    before, after = text[start - 1 : start], text[end : end + 1]
    leans_on_next = not _blank(after) and (
        not _punctuation(after) or _blank(before) or _punctuation(before)
    )
    leans_on_previous = not _blank(before) and (
        not _punctuation(before) or _blank(after) or _punctuation(after)
    )
    if char in "~|" and length != 2:
        return _Run(char, length, length, False, False)
    if char in "*~":
        return _Run(char, length, length, leans_on_next, leans_on_previous)
    return _Run(  # `_` and `||` open or close a word, never inside one (`a||b`, a table)
        char,
        length,
        length,
        leans_on_next and (not leans_on_previous or _punctuation(before)),
        leans_on_previous and (not leans_on_next or _punctuation(after)),
    )


def _pairs(opener: _Run, closer: _Run) -> bool:
    if opener.char != closer.char or not opener.can_open:
        return False
    if opener.char in "*_" and (opener.can_close or closer.can_open):
        # CommonMark's rule of three: `*a**b**c*` is an <em> around a <strong>.
        both = opener.length % 3 == 0 and closer.length % 3 == 0
        return both or (opener.length + closer.length) % 3 != 0
    return True


def _pair(runs: list[_Run]) -> None:
    """Pair the runs of a line into tags, each closer with the nearest opener it fits
    (CommonMark's "process emphasis"). Linear: runs between a pair are text from then on,
    and where a closer's search failed, one of its kind does not search again."""
    openers: list[_Run] = []
    searched: dict[tuple[str, bool, int], int] = {}  # openers below this never fit
    for run in runs:
        if run.can_close:
            kind = (run.char, run.can_open, run.length % 3)
            i = len(openers) - 1
            while run.left and i >= searched.get(kind, 0):
                opener = openers[i]
                if not _pairs(opener, run):
                    i -= 1
                    continue
                used = 2 if opener.left >= 2 and run.left >= 2 else 1
                tag_open, tag_close = _TAGS[run.char][used - 1]
                opener.opens.append(tag_open)
                run.closes.append(tag_close)
                opener.left -= used
                run.left -= used
                del openers[i + 1 if opener.left else i :]
                for k, v in searched.items():  # what lay above is gone
                    searched[k] = min(v, len(openers))
                i = len(openers) - 1
            if run.left:
                searched[kind] = len(openers)
        if run.left and run.can_open:
            openers.append(run)


# Blanks that open a line: its indent (a nested list's item, a poem's line).
_INDENT = re.compile(r"[ \t]+")


def _line(line: str, render: Callable[[str], str] = _inline) -> str:
    """One line of prose as HTML (`render`ed): its indent kept as no-break spaces (a tab
    as four). HTML folds leading blanks to nothing, so a nested list's items all showed
    at the same depth once the answer held any Markdown (and so was sent as HTML)."""
    indent = _INDENT.match(line)
    if indent is None:
        return render(line)
    return "&nbsp;" * len(indent.group().expandtabs(4)) + render(line[indent.end() :])


# A heading's opening `#`s (at most three blanks before them) and a rule: three or more
# of one of `-`, `*`, `_`, blanks between (CommonMark's ATX heading and thematic break).
_HEADING = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_RULE = re.compile(r" {0,3}([-*_])[ \t]*(?:\1[ \t]*){2,}")


def _block(line: str) -> str | None:
    """A line that is a block of its own: a heading (its closing `#`s dropped) or a rule;
    None for one of prose. Element draws <h1>–<h6> and <hr>; models write both."""
    if _RULE.fullmatch(line):
        return "<hr>"
    heading = _HEADING.match(line)
    if heading is None:
        return None
    text = line[heading.end() :].strip(" \t")
    unclosed = text.rstrip("#")
    if not unclosed or unclosed[-1] in " \t":  # `## Title ##`: the closing run is no text
        text = unclosed.rstrip(" \t")
    level = len(heading.group(1))
    return f"<h{level}>{_inline(text)}</h{level}>"


def _lines(parts: Iterable[str]) -> str:
    """Lines joined with <br>, but for after a block, which ends its own line (a <br>
    there would show as an empty line)."""
    out: list[str] = []
    for part in parts:
        if out and not out[-1].endswith(_BLOCK_ENDS):
            out.append("<br>")
        out.append(part)
    return "".join(out)


_BLOCK_ENDS = ("<hr>", *(f"</h{level}>" for level in range(1, 7)))


def _paragraphs(lines: list[str]) -> str:
    """Plain lines: block quotes grouped, headings and rules as such, the rest joined
    with <br>."""
    out: list[str] = []
    quote: list[str] = []
    plain: list[str] = []

    def flush_plain() -> None:
        if plain:
            out.append(_lines(_block(line) or _line(line) for line in plain))
            plain.clear()

    def flush_quote() -> None:
        if quote:
            out.append(f"<blockquote>{'<br>'.join(_line(q) for q in quote)}</blockquote>")
            quote.clear()

    for line in lines:
        if line.startswith(">"):
            flush_plain()
            quote.append(line[1:].removeprefix(" "))
        else:
            flush_quote()
            plain.append(line)
    flush_plain()
    flush_quote()
    return _lines(part for part in out if part)


def markdown_to_html(text: str) -> str:
    """Matrix `formatted_body` for `text`; an unclosed fence runs to the end."""
    blocks: list[str] = []
    prose: list[str] = []
    code: list[str] | None = None
    fence = ""
    lang = ""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if code is None:
            if match:
                if prose:
                    blocks.append(_paragraphs(prose))
                    prose = []
                code, fence, lang = [], match.group(1), match.group(2)
            else:
                prose.append(line)
        elif match and match.group(1).startswith(fence[0]) and len(match.group(1)) >= len(fence):
            blocks.append(_code_block(code, lang))
            code = None
        else:
            code.append(line)
    if code is not None:
        blocks.append(_code_block(code, lang))
    if prose:
        blocks.append(_paragraphs(prose))
    return "".join(_join(blocks))


def _join(blocks: list[str]) -> list[str]:
    """Separate prose blocks from each other with a line break; <pre> needs none."""
    out: list[str] = []
    for block in blocks:
        if out and not block.startswith("<pre>") and not out[-1].endswith("</pre>"):
            out.append("<br>")
        out.append(block)
    return out


def _code_block(lines: list[str], lang: str) -> str:
    cls = f' class="language-{html.escape(lang, quote=True)}"' if lang else ""
    body = html.escape("\n".join(lines), quote=False)
    return f"<pre><code{cls}>{body}\n</code></pre>"


def needs_html(text: str) -> bool:
    """Whether rendering changes anything (plain text is sent without formatted_body,
    whose clients keep its indents as they are)."""
    plain = "<br>".join(_line(line, _escaped) for line in text.split("\n"))
    return markdown_to_html(text) != plain


def _escaped(text: str) -> str:
    return html.escape(text, quote=False)
