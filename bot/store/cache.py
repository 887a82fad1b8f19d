"""Write-through memory of what a chat turn reads, so a turn costs one write, not five reads.

Correct while one process serves a channel (Discord shards by guild; one Matrix process):
this process sees every write and drops what it changes. The TTL bounds how stale a
value can get if an operator breaks that rule anyway.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

Scope3 = tuple[str, str, str]  # (platform, server, channel); channel "" = the server row


class ScopedCache(Generic[V]):
    """Values derived from a channel's rows (channel and server scope), newest used kept.

    `generation()` before a database read and `put(..., generation=…)` after it keep a
    read that raced with a write from caching what the write replaced.
    """

    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int,
        max_weight: int = 0,
        weigh: Callable[[V], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_weight = max_weight
        self._weigh = weigh
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Scope3, V, int]] = OrderedDict()
        self._weight = 0
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def weight(self) -> int:
        return self._weight

    def generation(self) -> int:
        return self._generation

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry[2]

    def put(self, key: Hashable, scope: Scope3, value: V, *, generation: int) -> None:
        """Remember `value` unless a write dropped anything since `generation` was taken."""
        if generation != self._generation:
            return
        self._set(key, scope, value)

    def replace(self, key: Hashable, value: V) -> None:
        """Update a cached value in place after this process wrote it (no-op when absent)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._set(key, entry[1], value, expires=entry[0])

    def drop_scope(self, scope: Scope3) -> None:
        """Forget everything derived from the row at `scope` (a server row: all its channels)."""
        self._generation += 1
        platform, server, channel = scope
        doomed = [
            key
            for key, (_, s, _, _) in self._entries.items()
            if s[0] == platform and s[1] == server and (not channel or s[2] == channel)
        ]
        for key in doomed:
            self._remove(key)

    def drop(self, key: Hashable) -> None:
        self._generation += 1
        self._remove(key)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._weight = 0

    def _set(self, key: Hashable, scope: Scope3, value: V, expires: float | None = None) -> None:
        self._remove(key)
        weight = self._weigh(value) if self._weigh is not None else 0
        if self._max_weight and weight > self._max_weight:
            return
        now = self._clock()
        due = expires if expires is not None else now + self._ttl
        self._entries[key] = (due, scope, value, weight)
        self._weight += weight
        while len(self._entries) > self._max_entries or (
            self._max_weight and self._weight > self._max_weight
        ):
            oldest = next(iter(self._entries))
            self._remove(oldest)
        # Past their TTL the least recently used go too (one used since it was put was not
        # past it then): a channel seen once is not held until max_entries others come
        # (about 5 KB a channel in all the caches, values no read would return).
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][0] > now:
                break
            self._remove(oldest)

    def _remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._weight -= entry[3]
