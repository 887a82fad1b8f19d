"""A question says it carries files (`messages.files`) only when a text file's text is
folded into its content: then an edit keeps its text. 0021 guessed from images, or from
any line opening a fence (a code block typed by hand has one too), and the code between
0021 and this revision flagged a question with images alone: the edits of all those were
kept out, though their text holds nothing of a file's. Images are stored apart
(`image_count`): a picture's question reads as edited.

Every user row's flag is made anew from its content: true only when it ends with a file
block in the exact shape the bot writes it (`_folded`). A code block typed by hand is
taken for a file's only when it has that shape too: a bare fence (no language tag) under
a line naming no known file type, ending the message ("fix this:" on a line, then a
fenced block), as a file of that name would be; it keeps its text on an edit, as before.

One pass over the user rows, in batches of `BATCH` by id, in Python (the table may be
big: a batch's contents are held at once, never the table's; about 4 to 5 s per 100,000
questions, SQLite or PostgreSQL); only the rows whose flag changes are written.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000

# What bot.media.files.fenced (with file_block's line for a PDF's pages not read) wrote
# after a question's own text, one block a text file, as of this revision: copied, since
# a migration must not change with the bot's code. The engine puts the blocks after the
# text (none: the first block's leading newline taken off), so a question carrying files
# ends with one:
#   "\n{file_label(name)}\n{fence}{language(name)}\n{text}\n{fence}"
#   + "\n[… {left out:,} of {total:,} characters left out]" when the file was cut
#   + "\n\n[… pages {first}–{last} of {last} not read]" when a PDF's pages were not all read
# The fence is three backticks or more, longer than any run of them in the text between.
_BLOCK = re.compile(
    r"(?:\A|\n)(?P<label>[^\n]{1,100})\n(?P<fence>`{3,})(?P<tag>[a-z]*)\n"
    r"(?:(?!(?P=fence))[\s\S])*\n(?P=fence)"
    r"(?:\n\[… [\d,]+ of [\d,]+ characters left out\])?"
    r"(?:\n\n\[… pages \d+–\d+ of \d+ not read\])?\Z"
)
# The closing fence and what may follow it, found from the end: `_BLOCK` is then tried at
# the one place its opening can be (the text between holds no run of the fence's length),
# so a row costs one pass over its content, whatever fences a hostile file holds.
_END = re.compile(
    r"\n(`{3,})"
    r"(?:\n\[… [\d,]+ of [\d,]+ characters left out\])?"
    r"(?:\n\n\[… pages \d+–\d+ of \d+ not read\])?\Z"
)
# bot.media.files.language's tables as of this revision: the fence's tag is derived from
# the file's name (`python` for `x.py`); a fence typed by hand (```py) after a line that
# names no such file is no file's.
_LANGUAGES = {
    "py": "python", "pyi": "python", "js": "javascript", "mjs": "javascript",
    "cjs": "javascript", "jsx": "jsx", "ts": "typescript", "mts": "typescript",
    "tsx": "tsx", "json": "json", "jsonl": "json", "ndjson": "json", "geojson": "json",
    "csv": "csv", "tsv": "tsv", "md": "markdown", "markdown": "markdown", "yaml": "yaml",
    "yml": "yaml", "toml": "toml", "ini": "ini", "cfg": "ini", "conf": "ini", "xml": "xml",
    "svg": "xml", "html": "html", "htm": "html", "css": "css", "scss": "scss",
    "sass": "sass", "less": "less", "sh": "bash", "bash": "bash", "zsh": "bash",
    "fish": "fish", "ps1": "powershell", "bat": "bat", "cmd": "bat", "c": "c", "h": "c",
    "cpp": "cpp", "cc": "cpp", "cxx": "cpp", "hpp": "cpp", "hh": "cpp", "cs": "csharp",
    "java": "java", "kt": "kotlin", "kts": "kotlin", "go": "go", "rs": "rust",
    "rb": "ruby", "php": "php", "swift": "swift", "sql": "sql", "lua": "lua", "r": "r",
    "pl": "perl", "scala": "scala", "dart": "dart", "hs": "haskell", "ex": "elixir",
    "exs": "elixir", "erl": "erlang", "clj": "clojure", "jl": "julia", "zig": "zig",
    "nim": "nim", "vue": "vue", "svelte": "svelte", "tex": "latex", "rst": "rst",
    "diff": "diff", "patch": "diff", "proto": "protobuf", "graphql": "graphql",
    "gql": "graphql", "nix": "nix", "gradle": "groovy", "groovy": "groovy",
    "tf": "hcl", "hcl": "hcl", "dockerfile": "dockerfile", "cmake": "cmake",
    "asm": "asm", "s": "asm", "vb": "vbnet", "fs": "fsharp", "ml": "ocaml",
    "m": "objectivec", "mm": "objectivec", "el": "elisp", "lisp": "lisp", "scm": "scheme",
}  # fmt: skip
_NAMED = {"dockerfile": "dockerfile", "makefile": "makefile", "gnumakefile": "makefile",
          "cmakelists.txt": "cmake", "jenkinsfile": "groovy"}  # fmt: skip
# file_label shortens a name past 100 characters with this at its end: the tag was
# derived from the whole name, which the row no longer holds.
_SHORTENED = "…"


def _language(label: str) -> str:
    """bot.media.files.language (with bot.media.kinds.extension) of the name `label` shows."""
    base = label.replace("\\", "/").rsplit("/", 1)[-1].lower()
    stem, dot, ext = base.rpartition(".")
    return _NAMED.get(base) or _LANGUAGES.get(ext if dot and stem else "", "")


def _folded(content: str) -> bool:
    """`content` ends with a text file's block as the bot writes it (see `_BLOCK`)."""
    end = _END.search(content)
    if end is None:
        return False
    fence = end.group(1)
    opening = content.rfind(fence, 0, end.start())  # the last run of its length before
    if opening < 1 or content[opening - 1] != "\n":  # a fence opens a line, after its label
        return False
    label_line = content.rfind("\n", 0, opening - 1)  # the newline before it, or none
    block = _BLOCK.match(content, max(label_line, 0))
    if block is None or block.group("fence") != fence:
        return False
    label, tag = block.group("label"), block.group("tag")
    if label.endswith(_SHORTENED):
        return tag == "" or tag in _LANGUAGES.values()
    return tag == _language(label)


def upgrade() -> None:
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("role", sa.String),
        sa.column("content", sa.Text),
        sa.column("files", sa.Boolean),
    )
    read = (
        sa.select(messages.c.id, messages.c.content, messages.c.files)
        .where(messages.c.role == "user", messages.c.id > sa.bindparam("after"))
        .order_by(messages.c.id)
        .limit(BATCH)
    )
    write = (
        messages.update()
        .where(messages.c.id == sa.bindparam("row_id"))
        .values(files=sa.bindparam("flag"))
    )
    conn = op.get_bind()
    after = 0
    while rows := conn.execute(read, {"after": after}).all():
        after = rows[-1].id
        changed = [
            {"row_id": row.id, "flag": flag}
            for row in rows
            if (flag := _folded(row.content or "")) != bool(row.files)
        ]
        if changed:
            conn.execute(write, changed)


def downgrade() -> None:
    # Nothing to undo: the flag keeps what 0021's column means, made right.
    pass
