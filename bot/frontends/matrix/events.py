"""What is this Matrix event? Pure functions over event content (no nio, no network)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Clients put a "<name>: " or a pill before the text when they mention someone.
_PILL = re.compile(r'<a\s+href="https://matrix\.to/#/([^"?]+)(?:\?[^"]*)?"', re.IGNORECASE)


def relates_to(content: Mapping[str, Any]) -> Mapping[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, Mapping) else {}


def is_edit(content: Mapping[str, Any]) -> bool:
    """An edit (m.replace) of an earlier message; the bot answers the original only."""
    return relates_to(content).get("rel_type") == "m.replace"


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


def strip_reply_fallback(body: str) -> str:
    """Drop the legacy "> <@user> quoted" lines a reply starts with."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    return "\n".join(lines[i:]).lstrip("\n")


def mentions_user(content: Mapping[str, Any], user_id: str, display_name: str) -> bool:
    """m.mentions, a pill in the HTML, the user id, or the display name as a word."""
    mentions = content.get("m.mentions")
    if isinstance(mentions, Mapping):
        ids = mentions.get("user_ids")
        if isinstance(ids, list) and user_id in ids:
            return True
    formatted = content.get("formatted_body")
    if isinstance(formatted, str):
        if any(m.group(1) == user_id for m in _PILL.finditer(formatted)):
            return True
    body = content.get("body")
    if not isinstance(body, str):
        return False
    body = strip_reply_fallback(body)
    if user_id in body:
        return True
    return bool(display_name) and _word(display_name).search(body) is not None


def _word(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)


def strip_mention(body: str, user_id: str, display_name: str) -> str:
    """The text without a leading "<name>:" / "@user:server:" address."""
    text = body.lstrip()
    for name in (user_id, display_name):
        if name and text.lower().startswith(name.lower()):
            rest = text[len(name) :]
            if rest[:1] in (":", ",", " ", ""):
                return rest[1:].lstrip() if rest[:1] in (":", ",") else rest.lstrip()
    return body.strip()


def is_direct_room(member_count: int) -> bool:
    """A room with the bot and one other person (joined or invited) is a direct chat."""
    return member_count <= 2


def text_of(content: Mapping[str, Any]) -> str | None:
    """The text a person typed (m.text, m.emote); None for notices (other bots) and media."""
    if content.get("msgtype") not in ("m.text", "m.emote"):
        return None
    body = content.get("body")
    return strip_reply_fallback(body) if isinstance(body, str) else None
