"""Logging that never shows a key: a filter that redacts secrets from every record."""

from __future__ import annotations

import logging
import re

from bot.types import SECRET_REGISTRY

REDACTED = "[REDACTED]"

# Shapes of provider keys and auth headers, for secrets this process never decrypted
# (e.g. a key pasted into a chat message that then got logged).
_KEY_SHAPES = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}"
    r"|sk-[A-Za-z0-9_\-]{16,}"
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=]{8,}"
    r"|(?i:x-api-key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9_\-\.]{8,})"
)


def redact(text: str) -> str:
    """Replace every known secret and anything shaped like a key."""
    for value in SECRET_REGISTRY.values():
        if value in text:
            text = text.replace(value, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Attached to handlers, so records from every logger pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full request lines at INFO; keep them at WARNING to keep logs calm.
    logging.getLogger("httpx").setLevel(logging.WARNING)
