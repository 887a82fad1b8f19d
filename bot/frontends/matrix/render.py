"""Markdown → Matrix HTML (org.matrix.custom.html): a small, escaping-first renderer.

Covers what chat answers use: code fences, inline code, bold, italics, strikethrough,
links, block quotes, line breaks and indents. Everything else is escaped text, so model
output can never inject markup.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from bot.frontends.matrix.tlds import TLDS
from bot.types.text import HIDDEN, char_class

HTML_FORMAT = "org.matrix.custom.html"

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+.#-]*)\s*$")
# A link's text holds no `[` (as in CommonMark, `[a [b](u)` links `b`), its address no
# `](`: each look for one then ends where the next could begin. Read on to the line's
# end from every `[` (or `](`) of a line of them, a page of `[` took seconds to render,
# several times each edit as the page was measured, the bot's loop held.
_INLINE = re.compile(
    r"\\(?P<escaped>[!-/:-@\[-`{-~])"  # CommonMark: a backslash keeps punctuation as is
    r"|(?P<code>`+)(?P<code_text>.+?)(?P=code)"
    # An address may hold balanced parentheses, one deep (CommonMark: `wiki/Foo_(bar)`).
    r"|\[(?P<link_text>[^\[\]\n]+)\]\((?P<url>(?:[^()\s\]]|\](?!\()|\([^()\s]*+\))++)\)"
    r"|\*\*(?P<bold>[^*\n]+?)\*\*"
    r"|__(?P<bold2>[^_\n]+?)__"
    r"|~~(?P<strike>[^~\n]+?)~~"
    r"|(?<![\w*])\*(?P<em>[^*\s](?:[^*\n]*[^*\s])?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<em2>[^_\s](?:[^_\n]*[^_\s])?)_(?![\w_])"
)
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


def _inline(text: str) -> str:
    """Escape `text` and turn inline Markdown into tags."""
    out: list[str] = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[pos : match.start()], quote=False))
        pos = match.end()
        groups = match.groupdict()
        if groups["escaped"]:
            out.append(html.escape(groups["escaped"], quote=False))
        elif groups["code"]:
            out.append(f"<code>{html.escape(groups['code_text'].strip(), quote=False)}</code>")
        elif groups["url"]:
            out.append(_link(groups["link_text"], groups["url"]))
        elif groups["bold"] or groups["bold2"]:
            out.append(f"<strong>{_inline(groups['bold'] or groups['bold2'])}</strong>")
        elif groups["strike"]:
            out.append(f"<del>{_inline(groups['strike'])}</del>")
        else:
            out.append(f"<em>{_inline(groups['em'] or groups['em2'])}</em>")
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


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


def _paragraphs(lines: list[str]) -> str:
    """Plain lines: block quotes grouped, the rest joined with <br>."""
    out: list[str] = []
    quote: list[str] = []
    plain: list[str] = []

    def flush_plain() -> None:
        if plain:
            out.append("<br>".join(_line(line) for line in plain))
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
    return "<br>".join(part for part in out if part)


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
