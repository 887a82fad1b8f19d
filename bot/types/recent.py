"""A bounded memory of ids seen lately (events handled, messages deleted)."""

from __future__ import annotations


class RecentIds:
    """The last `size` ids added: older ones are forgotten first. Used where an id may
    come again (a sync retried after a network error, a homeserver's replay) or where
    something must be known for a while (a message deleted before its turn was stored)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest first

    def __contains__(self, item: str) -> bool:
        return bool(item) and item in self._ids

    def add(self, item: str) -> None:
        if item and item not in self._ids:
            self._ids[item] = None
            if len(self._ids) > self._size:
                del self._ids[next(iter(self._ids))]
