"""Keep typed secrets out of discord.py's own debug logs."""

from __future__ import annotations

import logging

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


def install_log_filter() -> None:
    """Attach the filter to discord.py's gateway logger once."""
    logger = logging.getLogger("discord.gateway")
    if not any(isinstance(f, ModalValuesFilter) for f in logger.filters):
        logger.addFilter(ModalValuesFilter())
