"""Who may do what in a Matrix room: power levels, and room-v12 creators above them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nio

# Room versions where the creators outrank every power level (MSC4289, "Hydra").
_HYDRA_PREVIEW = frozenset({"org.matrix.hydra.11"})
_FIRST_HYDRA_VERSION = 12


def creators_outrank(room_version: str) -> bool:
    if room_version in _HYDRA_PREVIEW:
        return True
    return room_version.isdigit() and int(room_version) >= _FIRST_HYDRA_VERSION


@dataclass(frozen=True, slots=True)
class RoomAuthority:
    """A room's create facts: its version and its creators (sender + additional_creators)."""

    room_version: str
    creators: frozenset[str]

    @property
    def privileged_creators(self) -> frozenset[str]:
        return self.creators if creators_outrank(self.room_version) else frozenset()


def authority_from_state(events: Iterable[Mapping[str, Any]]) -> RoomAuthority | None:
    """Read the m.room.create event out of a room's full state (None when absent)."""
    for event in events:
        if event.get("type") != "m.room.create" or event.get("state_key", "") != "":
            continue
        content = event.get("content")
        content = content if isinstance(content, Mapping) else {}
        creators = {str(event.get("sender", ""))}
        extra = content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(str(c) for c in extra if isinstance(c, str))
        creators.discard("")
        return RoomAuthority(str(content.get("room_version", "1")), frozenset(creators))
    return None


def is_room_admin(
    user_id: str, power_level: int, authority: RoomAuthority | None, admin_level: int
) -> bool:
    """Power level at or above `admin_level`, or a creator where creators outrank levels."""
    if authority is not None and user_id in authority.privileged_creators:
        return True
    return power_level >= admin_level


def inviter_allowed(inviter: str, allowed: Iterable[str]) -> bool:
    """Empty list: anyone. Otherwise a listed user id or a ":server" suffix."""
    rules = [a.strip() for a in allowed if a.strip()]
    if not rules:
        return True
    for rule in rules:
        if not rule.startswith(("@", ":")):
            rule = ":" + rule  # a bare server name
        if rule.startswith(":") and inviter.endswith(rule):
            return True
        if rule == inviter:
            return True
    return False


# What a level left out of m.room.power_levels is (nio's reading of the event, as before).
_DEFAULT_LEVELS = {
    "ban": 50,
    "invite": 50,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "events_default": 0,
    "users_default": 0,
}
_NOTIFICATIONS_ROOM = 50
_LEVEL_CHARS = 100  # longer: no level (Python's int() reads up to 4,300 digits, slowly)


def power_level(value: object) -> int | None:
    """A power level as Synapse reads one (int()): an integer, or in room versions 1-9 a
    string of one (`"50"`); anything else (a word, a float, true, a list): None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and len(value) <= _LEVEL_CHARS:
        try:
            return int(value)
        except ValueError:
            return None
    return None


def power_levels_of(content: Mapping[str, Any]) -> nio.PowerLevels:
    """An m.room.power_levels event's content as nio's PowerLevels, each level read by
    power_level: nio refuses a whole event with a string level in it (older rooms allow
    them), which left everyone at level 0 to the bot."""

    def levels(name: str) -> dict[str, int]:
        given = content.get(name)
        if not isinstance(given, Mapping):
            return {}
        read = {str(k): power_level(v) for k, v in given.items()}
        return {k: v for k, v in read.items() if v is not None}

    def level(name: str, default: int, within: Mapping[str, Any] = content) -> int:
        found = power_level(within.get(name))
        return default if found is None else found

    notifications = content.get("notifications")
    notifications = notifications if isinstance(notifications, Mapping) else {}
    defaults = nio.DefaultLevels(
        **{name: level(name, default) for name, default in _DEFAULT_LEVELS.items()},
        notifications={"room": level("room", _NOTIFICATIONS_ROOM, notifications)},
    )
    return nio.PowerLevels(defaults, levels("users"), levels("events"))
