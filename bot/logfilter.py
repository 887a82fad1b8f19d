"""Logging that never shows a key: a filter that redacts secrets from every record."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
from pathlib import Path

from bot.types import REDACTED, redact
from bot.types.place import LOG_PLACE
from bot.types.secrets import SECRET_REGISTRY

__all__ = ["REDACTED", "RedactingFilter", "configure_logging", "redact"]


class RedactingFilter(logging.Filter):
    """Attached to handlers, so records from every logger pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # `%s` without its value (a library's slip): raised into its caller
            message = _as_it_came(record)
            record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        place = LOG_PLACE.get()
        # A short secret an older version stored: only in the lines of where it is used.
        short = SECRET_REGISTRY.short_in(place)
        cleaned = redact(message, short)
        if place and place not in cleaned:  # written while the bot works in one place
            cleaned = f"{cleaned} (in {place})"
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, short)
        return True


def _as_it_came(record: logging.LogRecord) -> str:
    """A record whose message cannot be made: its words and values as they came, or as
    much of them as can be shown (a value whose repr fails too)."""
    try:
        return f"{record.msg} {record.args!r}"
    except Exception:
        try:
            return f"{record.msg} (its values could not be shown)"
        except Exception:
            return f"a log line from {record.name} that could not be shown"


class _QuietFileHandler(logging.handlers.RotatingFileHandler):
    """Moves its file aside at its size, and follows a file moved or deleted by anything
    else (logrotate, another process's rotation) as WatchedFileHandler does: it had gone
    on writing into the moved file, and the log file named by DATA_DIR stayed missing."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is not None:  # called under the handler's lock
            try:
                here = os.stat(self.baseFilename)
                moved = not os.path.samestat(here, os.fstat(self.stream.fileno()))
            except OSError:  # gone (deleted, its folder moved)
                moved = True
            if moved:  # the emit below opens the file named again
                with contextlib.suppress(OSError):
                    self.stream.close()
                self.stream = None
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk or a deleted folder must not print a traceback into the console's chat.
        pass


def configure_logging(
    level: str, *, log_file: Path | None = None, to_stderr: bool = True
) -> Path | None:
    """Log at `level` to stderr and/or `log_file`; return the file in use, if any.

    A log file that cannot be opened is left out without a word: logging never stops the
    bot, and a console without stderr logging must stay silent.
    """
    handlers: list[logging.Handler] = []
    used: Path | None = None
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                _QuietFileHandler(log_file, maxBytes=5_000_000, backupCount=2, encoding="utf-8")
            )
            used = log_file.resolve()
        except OSError:
            pass
    if to_stderr:
        handlers.append(logging.StreamHandler())
    if not handlers:
        # With no handler at all, logging's last resort would still print warnings to stderr.
        handlers.append(logging.NullHandler())
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    # Python warnings would otherwise go straight to stderr, past the handlers above.
    logging.captureWarnings(True)
    # httpx logs full request lines at INFO; keep them at WARNING to keep logs calm. So
    # does Alembic its plugins, at every start ("setup plugin alembic.autogenerate.…").
    for chatty in ("httpx", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # httpcore's DEBUG dumps every header (a short proxy password in a redirect's
    # Location, an echoed Authorization): whatever LOG_LEVEL says, never below INFO.
    # aiosqlite's DEBUG logs every statement with its parameters: every chat message,
    # and the sealed secrets; so does peewee's under matrix-nio's E2EE store: the pickled
    # account and room keys (the same rule: never below INFO).
    for noisy in ("httpcore", "hpack", "aiosqlite", "peewee"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger(noisy).level))
    # matrix-nio logs every event of every sync at INFO (80 of a short run's 111 lines):
    # its warnings, unless DEBUG asks for everything.
    if root.level > logging.DEBUG:
        logging.getLogger("nio").setLevel(logging.WARNING)
        # pypdf warns of every flaw of a member's PDF it reads past ("invalid pdf header",
        # "incorrect startxref pointer"): nothing for an operator to do; the member is told
        # when a file cannot be read.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
    return used
