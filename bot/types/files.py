"""How the bot names a file someone sent: in a prompt, and in its own messages."""

from __future__ import annotations

from bot.types.secrets import holds_key, redact
from bot.types.text import literal, shorten, shown_name


def file_label(name: str) -> str:
    """A file name as a prompt names it: one line, bounded, without a right-to-left
    override or zero-width characters (`invoice\u202efdp.exe` showed as "invoiceexe.pdf")."""
    return shorten(shown_name(name), 100) or "the attachment"


def display_name(name: str) -> str:
    """A file name in the bot's own message: its label, with no markdown of its own
    (`[Log in](https://…).png` is no link in the bot's voice), and without a key pasted
    into it (the bot's refusal would have repeated it where its sender cannot delete it)."""
    label = shown_name(name)  # zero-width characters out first: `sk-…` seen whole
    if holds_key(label):
        label = redact(label, known=False)
    return literal(file_label(label))
