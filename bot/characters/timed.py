"""Lorebook entries' sticky and cooldown timed effects, kept per conversation from one
prompt to the next, as SillyTavern's WorldInfoTimedEffects (public/scripts/world-info.js)
keeps them in a chat's metadata (`timedWorldInfo`).

SillyTavern counts in chat messages: an effect begun with the chat `start` long ends
when it is `start + Number(entry.sticky)` (or `.cooldown`) long. Here an effect begins
at a stored message (the newest of the chat the prompt was built on, the question being
asked) and is counted in the messages after it in the history read: the same count
while nothing is deleted, and still growing once the history read back stops at its
limit (where the chat's length read would stop growing). An effect that began before
the oldest message read back has ended (request._since)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.characters.model import Card, CharacterBook, LoreEntry, js_number

STICKY, COOLDOWN = "sticky", "cooldown"
_KINDS = (STICKY, COOLDOWN)


@dataclass(frozen=True, slots=True)
class Effect:
    """One entry's sticky or cooldown: SillyTavern's {hash, start, end, protected}, with
    `end` as its length from `start`."""

    hash: str  # the entry's (entry_hash): an edited entry, or another card's, is not found
    start: int | None  # the message it began at; None: the question not stored yet
    length: float  # Number(entry.sticky) or Number(entry.cooldown) when it began
    protected: bool = False  # a cooldown that followed a sticky: kept when the chat goes back


@dataclass(frozen=True, slots=True)
class Timers:
    """A conversation's effects by entry key (SillyTavern's `${world}.${uid}`)."""

    sticky: Mapping[str, Effect] = field(default_factory=dict)
    cooldown: Mapping[str, Effect] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            kind: {
                key: [e.hash, e.start, e.length, e.protected]
                for key, e in getattr(self, kind).items()
            }
            for kind in _KINDS
        }

    @classmethod
    def from_json(cls, data: object) -> Timers:
        """What was stored; anything malformed left out (as ensureChatMetadata drops what
        is no object)."""
        if not isinstance(data, dict):
            return cls()
        kinds: dict[str, dict[str, Effect]] = {STICKY: {}, COOLDOWN: {}}
        for kind, found in kinds.items():
            stored = data.get(kind)
            for key, value in stored.items() if isinstance(stored, dict) else ():
                effect = _effect(value)
                if isinstance(key, str) and effect is not None:
                    found[key] = effect
        return cls(kinds[STICKY], kinds[COOLDOWN])

    def anchored(self, at: int) -> Timers:
        """The effects begun at the question not stored yet, begun at its id `at`."""
        if all(e.start is not None for kind in _KINDS for e in getattr(self, kind).values()):
            return self
        sticky, cooldown = (
            {k: e if e.start is not None else replace(e, start=at) for k, e in effects.items()}
            for effects in (self.sticky, self.cooldown)
        )
        return Timers(sticky, cooldown)


@dataclass(frozen=True, slots=True)
class Active:
    """The book's entries (by index) a prompt finds sticky or on cooldown."""

    sticky: frozenset[int] = frozenset()
    cooldown: frozenset[int] = frozenset()


def timed(book: CharacterBook | None) -> bool:
    """Whether any entry of the book is sticky or has a cooldown."""
    return book is not None and any(
        _value(entry, kind) is not None for entry in book.entries for kind in _KINDS
    )


def world_name(card: Card) -> str:
    """The name SillyTavern gives a card's lorebook (its entries' `world`): the book's
    own, else `<card name>'s Lorebook` (importEmbeddedWorldInfo). Two cards' unnamed
    books are two worlds: their entries' effects are apart."""
    book = card.character_book
    return (book.name if book is not None else "") or f"{card.name}'s Lorebook"


def entry_key(world: str, book: CharacterBook, index: int) -> str:
    """SillyTavern's `${entry.world}.${entry.uid}`: the book's name (world_name) and the
    entry's id (its place in the book when it has none)."""
    uid = book.entries[index].id
    return f"{world}.{index if uid is None else uid}"


def entry_hash(entry: LoreEntry) -> str:
    """SillyTavern's entry.hash (of all the entry says): an effect is the entry's it
    names only while the entry is unchanged."""
    return hashlib.blake2b(repr(entry).encode(), digest_size=8).hexdigest()


def first_by_hash(book: CharacterBook) -> Mapping[str, int]:
    """Each entry's hash → the first entry with it (SillyTavern's `entries.find` by
    hash), worked out once a book and kept with it (`hashes`): hashing all of a
    2,000-entry book took ~10 ms, on the event loop, at every prompt with an effect."""
    if not book.hashes and book.entries:
        for at, entry in enumerate(book.entries):
            book.hashes.setdefault(entry_hash(entry), at)
    return book.hashes


def check(
    timers: Timers,
    book: CharacterBook,
    since: Callable[[int | None], float],
    now: int | None,
) -> tuple[Timers, Active]:
    """SillyTavern's checkTimedEffects for a prompt: which entries are sticky and which
    on cooldown, and the effects kept. `since(start)`: the chat's messages after
    `start` (SillyTavern's `chat.length - start`); `now`: the chat's newest message.

    In order, for the stickies then the cooldowns (#checkTimedEffectOfType): one whose
    chat has not grown since it began (`since <= 0`: the answer it began with is
    regenerated, or messages were deleted) is dropped, unless protected; one whose entry
    is not in the book (edited, another card's) is dropped once its length has passed;
    one whose entry is no longer sticky (or has no cooldown) is dropped; one whose length
    has passed is dropped, and a sticky that ends so starts its entry's cooldown, from
    now and protected, which holds at this prompt already; any other holds."""
    by_hash = first_by_hash(book) if timers.sticky or timers.cooldown else {}
    kept = {STICKY: dict(timers.sticky), COOLDOWN: dict(timers.cooldown)}
    active: dict[str, set[int]] = {STICKY: set(), COOLDOWN: set()}
    for kind in _KINDS:
        effects = kept[kind]
        for key, effect in list(effects.items()):  # a sticky's end adds a cooldown first
            index = by_hash.get(effect.hash)
            elapsed = since(effect.start)
            if elapsed <= 0 and not effect.protected:
                del effects[key]
                continue
            if index is None:
                if elapsed >= effect.length:
                    del effects[key]
                continue
            if _value(book.entries[index], kind) is None:
                del effects[key]
                continue
            if elapsed >= effect.length:
                del effects[key]
                length = _value(book.entries[index], COOLDOWN)
                if kind == STICKY and length is not None:
                    kept[COOLDOWN][key] = Effect(effect.hash, now, length, protected=True)
                    active[COOLDOWN].add(index)
                continue
            active[kind].add(index)
    return Timers(kept[STICKY], kept[COOLDOWN]), Active(
        frozenset(active[STICKY]), frozenset(active[COOLDOWN])
    )


def begin(
    timers: Timers, book: CharacterBook, activated: Iterable[int], now: int | None, world: str
) -> Timers:
    """SillyTavern's setTimedEffects after a prompt: each entry it brought in that is
    sticky (or has a cooldown) and has no such effect yet begins one at `now`. `world`:
    the book's name (world_name)."""
    kinds = {STICKY: dict(timers.sticky), COOLDOWN: dict(timers.cooldown)}
    for index in activated:
        entry = book.entries[index]
        for kind, effects in kinds.items():
            length = _value(entry, kind)
            key = entry_key(world, book, index)
            if length is not None and key not in effects:
                effects[key] = Effect(entry_hash(entry), now, length)
    return Timers(kinds[STICKY], kinds[COOLDOWN])


def _value(entry: LoreEntry, kind: str) -> float | None:
    """An entry's sticky or cooldown as SillyTavern uses it: none when falsy to
    JavaScript (`!entry[type]`: 0, empty, null), else Number() of it. One that is no
    number (`"abc"`, or Infinity) is none here: SillyTavern would never end it."""
    number = js_number(entry.extension_values.get(kind))
    return None if number is None or number == 0 else number


def _effect(value: object) -> Effect | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    hash_, start, length, protected = value
    if not isinstance(hash_, str) or not isinstance(protected, bool):
        return None
    if isinstance(start, bool) or not isinstance(start, int):
        return None
    if isinstance(length, bool) or not isinstance(length, int | float):
        return None
    number = js_number(length)
    return None if number is None else Effect(hash_, start, number, protected)
