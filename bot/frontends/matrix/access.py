"""Who may do what in a Matrix room: power levels, and room-v12 creators above them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
