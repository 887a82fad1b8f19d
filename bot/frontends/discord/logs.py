"""Keep typed secrets and tokens out of discord.py's own debug logs, and its tracebacks
for an autocompletion's answer Discord did not take out of the error log."""

from __future__ import annotations

import logging
import re

from bot.frontends.discord.failures import CALL_FAILED
from bot.types import REDACTED
from bot.types.secrets import holds_key

_GATEWAY_EVENT = "For Shard ID %s: WebSocket Event: %s"
_MODAL_SUBMIT = 5  # interaction type


class ModalValuesFilter(logging.Filter):
    """discord.py logs every gateway event at DEBUG, modal submissions (API keys) included.

    The record is logged before our code sees the key, so the secret registry cannot
    redact it yet: hide modal submissions' values at the source instead, and the text
    of a message that holds a key (the bot refuses and deletes it; a key split over
    lines would pass the log's redaction half by half).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == _GATEWAY_EVENT and isinstance(args, tuple) and len(args) == 2:
            event = args[1]
            if isinstance(event, dict) and _holds_key(event):
                data = event["d"]
                hidden = {**data, "content": "(message text hidden: it holds a key)"}
                record.args = (args[0], {**event, "d": hidden})
            elif isinstance(event, dict) and _is_modal_submit(event):
                data = event.get("d") or {}
                record.args = (
                    args[0],
                    {
                        "t": event.get("t"),
                        "d": {
                            "id": data.get("id"),
                            "type": _MODAL_SUBMIT,
                            "data": "(form values hidden)",
                        },
                    },
                )
        return True


def _holds_key(event: dict[object, object]) -> bool:
    data = event.get("d")
    return (
        event.get("t") in ("MESSAGE_CREATE", "MESSAGE_UPDATE")
        and isinstance(data, dict)
        and isinstance(data.get("content"), str)
        and holds_key(data["content"])
    )


def _is_modal_submit(event: dict[object, object]) -> bool:
    data = event.get("d")
    return (
        event.get("t") == "INTERACTION_CREATE"
        and isinstance(data, dict)
        and data.get("type") == _MODAL_SUBMIT
    )


# A webhook's URL holds its token (it posts into its channel, as the webhook, until the
# webhook is deleted), an interaction's its token (a reply as the bot for 15 minutes).
_TOKEN_IN_URL = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s?#'\"]+")


class UrlTokenFilter(logging.Filter):
    """discord.py logs every webhook and interaction call at DEBUG with its whole URL; a
    token in a URL's path is no key shape the log's redaction knows (a path is left alone,
    or model ids and routes would be blanked): hide it here, where the URLs are Discord's."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # the handler's own filter shows such a record as it came
            return True
        hidden = _TOKEN_IN_URL.sub(rf"\g<1>{REDACTED}", message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


_AUTOCOMPLETE_FAILED = "Ignoring exception in autocomplete for %r (Guild: %s, User: %s)"


class AutocompleteAnswerFilter(logging.Filter):
    """discord.py sends an autocompletion's suggestions itself, after our completer
    returned them, and logs a call that failed as an error with its traceback: one per
    keystroke while Discord is unreachable, or answers "Unknown interaction" to suggestions
    that came after its 3 s. Nobody can act on those (the next keystroke asks again): one
    line at INFO says it instead. Any other exception keeps its traceback (a bug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        failed = record.exc_info[1] if record.exc_info else None
        if record.msg == _AUTOCOMPLETE_FAILED and isinstance(failed, CALL_FAILED):
            command = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "could not answer an autocompletion of /%s: %s"
            record.args = (command, _failure(failed))
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def _failure(err: BaseException) -> str:
    """What failed, without the text Discord sent (it may quote what was sent)."""
    code = getattr(err, "code", None)
    return f"{type(err).__name__} {code}" if code else type(err).__name__


def install_log_filter() -> None:
    """Attach the filters to discord.py's loggers once."""
    for name, kind in (
        ("discord.gateway", ModalValuesFilter),
        ("discord.webhook.async_", UrlTokenFilter),
        ("discord.http", UrlTokenFilter),
        ("discord.app_commands.tree", AutocompleteAnswerFilter),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
