"""Lorebook entries' sticky and cooldown, against SillyTavern's WorldInfoTimedEffects
(public/scripts/world-info.js) worked by hand: an effect begun when the chat is `start`
long ends when it is `start + N` long; a turn adds two messages (question, answer)."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from bot.characters import build_prompt
from bot.characters.model import Card
from bot.characters.timed import Effect, Timers, begin, check, entry_hash, world_name
from bot.conversation.request import _since
from bot.types import HistoryEntry, Role
from tests.unit.characters.test_lorebook import _book


class Chat:
    """A conversation as the engine keeps one: stored messages (ids growing), the
    effects stored when a prompt is sent, the question stored after its prompt is
    built (its effects anchored to it then)."""

    def __init__(self, card: Card) -> None:
        self.card = card
        self.entries: list[HistoryEntry] = []
        self.timers = Timers()
        self._ids = iter(range(1, 10_000))

    def _prompt(self, chat: list[HistoryEntry], seed: int) -> list[str]:
        book = self.card.character_book
        assert book is not None
        now = chat[-1].id
        checked, active = check(self.timers, book, _since(chat, chat), now)
        prompt = build_prompt(
            self.card,
            chat,
            user="Bob",
            estimate=lambda t: len(t) // 4 + 1,
            lore_rng=random.Random(seed),
            chat_length=len(chat),
            timed=active,
        )
        self.timers = begin(checked, book, prompt.lore.activated, now, world_name(self.card))
        return [*prompt.lore.before, *prompt.lore.after]

    def ask(self, text: str, seed: int = 0) -> list[str]:
        question = HistoryEntry(Role.USER, text, author="Bob")
        lore = self._prompt([*self.entries, question], seed)
        stored = replace(question, id=next(self._ids))
        self.timers = self.timers.anchored(stored.id or 0)
        self.entries += [stored, HistoryEntry(Role.ASSISTANT, "ok", id=next(self._ids))]
        return lore

    def regenerate(self, seed: int = 0) -> list[str]:
        """The newest answer asked for again: the chat ends with its question (as
        SillyTavern's swipe, which pops the answer before it builds the prompt)."""
        *before, _ = self.entries
        lore = self._prompt(before, seed)
        self.entries = [*before, HistoryEntry(Role.ASSISTANT, "again", id=next(self._ids))]
        return lore


def _entry(content: str, key: str = "dragon", **ext: Any) -> dict[str, Any]:
    return {"keys": [key], "content": content, "extensions": ext}


def _turns(chat: Chat, *texts: str) -> list[bool]:
    return ["D" in chat.ask(text) for text in texts]


def test_a_sticky_entry_stays_in_for_its_messages_without_its_key() -> None:
    """Features probe: an entry with `sticky` was in only while its key was in the
    recent messages. Sticky 3, begun when the chat is 1 long (the question), ends when
    it is 4 long: in at 3 (the next question), out at 5."""
    chat = Chat(_book(_entry("D", sticky=3)))
    assert _turns(chat, "A dragon!", "What now?", "And now?", "dragon") == [
        True,
        True,
        False,
        True,
    ]
    # Sticky 2 ends when the chat is 3 long: the next question already.
    chat = Chat(_book(_entry("D", sticky=2)))
    assert _turns(chat, "A dragon!", "What now?") == [True, False]


def test_an_entry_on_cooldown_stays_out_for_its_messages_whatever_its_key() -> None:
    """Cooldown 3 begun at 1 ends at 4: out at 3, in again at 5 (and begun again);
    cooldown 5 begun at 1 ends at 6: out at 3 and 5, in at 7."""
    chat = Chat(_book(_entry("D", cooldown=3)))
    assert _turns(chat, *["dragon"] * 5) == [True, False, True, False, True]
    chat = Chat(_book(_entry("D", cooldown=5)))
    assert _turns(chat, *["dragon"] * 4) == [True, False, False, True]


def test_a_cooldown_follows_the_end_of_a_sticky() -> None:
    """Sticky 3 and cooldown 3 begun at 1: sticky at 3 (the cooldown begun with it
    does not hold a sticky entry back); the sticky ends at 5, which starts the cooldown
    there, protected, until 8: out at 5 and 7 though the key is there, in at 9."""
    chat = Chat(_book(_entry("D", sticky=3, cooldown=3)))
    assert _turns(chat, "dragon", "hm", "dragon", "dragon", "dragon") == [
        True,
        True,
        False,
        False,
        True,
    ]


def test_a_sticky_entry_is_not_rolled_for_again() -> None:
    """A sticky entry's chance is not rolled while it is sticky (verifyProbability):
    probability 1 comes in at every one of its sticky prompts, whatever the seed."""
    card = _book(_entry("D", sticky=5, probability=1, useProbability=True))
    book = card.character_book
    assert book is not None
    sticky = Timers(sticky={"x": _effect(book.entries[0], 1, 5)})
    for seed in range(50):
        chat = Chat(card)
        chat.timers = sticky
        chat.entries = [
            HistoryEntry(Role.USER, "dragon", id=1),
            HistoryEntry(Role.ASSISTANT, "ok", id=2),
        ]
        assert chat.ask("nothing here", seed=seed) == ["D"]
    # Not sticky, it comes in about one time in a hundred.
    rolls = sum("D" in Chat(card).ask("dragon", seed=seed) for seed in range(200))
    assert rolls < 20


def test_a_sticky_entry_wins_its_inclusion_group() -> None:
    """Of an inclusion group, a sticky entry is kept and the others matched with it
    are left out (filterGroupsByTimedEffects), whatever their override or weight."""
    card = _book(
        _entry("D", group="g", sticky=3, group_weight=0),
        _entry("E", key="dragon", group="g", group_override=True),
    )
    chat = Chat(card)
    assert chat.ask("dragon") == ["E"]  # the override is the pick: no sticky begins
    chat = Chat(card)
    book = card.character_book
    assert book is not None
    chat.timers = Timers(sticky={"x": _effect(book.entries[0], 0, 3)})
    chat.entries = [HistoryEntry(Role.ASSISTANT, "greeting", id=0)]
    assert chat.ask("dragon") == ["D"]


def test_regenerating_starts_the_answers_effects_again_and_keeps_a_protected_one() -> None:
    """SillyTavern's swipe builds the prompt on the chat without the answer: the chat
    has not grown since the effects begun at its question, which are dropped (then
    begun again if the entry comes in); a cooldown that followed a sticky's end is
    protected and holds."""
    chat = Chat(_book(_entry("D", cooldown=5)))
    assert chat.ask("dragon") == ["D"]
    assert chat.regenerate() == ["D"]
    assert chat.ask("dragon") == []  # the cooldown begun again at the regenerated prompt
    chat = Chat(_book(_entry("D", sticky=3, cooldown=5)))
    assert _turns(chat, "dragon", "hm", "dragon") == [True, True, False]
    assert "D" not in chat.regenerate()


def test_an_edited_entrys_effects_are_not_its() -> None:
    """An effect names its entry by all it says (SillyTavern's entry hash): the entry
    edited (a card imported again), the stored sticky holds it no more."""
    chat = Chat(_book(_entry("D", sticky=5)))
    assert chat.ask("dragon") == ["D"]
    chat.card = _book(_entry("D, edited", sticky=5))
    assert chat.ask("hm") == []


def test_stored_effects_read_back_and_malformed_ones_are_left_out() -> None:
    timers = Timers(
        sticky={"b.1": _effect_of("h", 4, 3.0)},
        cooldown={"b.1": _effect_of("h", 6, 2.0, protected=True)},
    )
    assert Timers.from_json(timers.to_json()) == timers
    bad: Any = {"sticky": {"a": ["h", "4", 3, False], "b": ["h", 4, "3", False], "c": 5}}
    assert Timers.from_json(bad) == Timers()
    assert Timers.from_json(None) == Timers() == Timers.from_json([1])


def _effect(entry: Any, start: int, length: float) -> Effect:
    return _effect_of(entry_hash(entry), start, length)


def _effect_of(hash_: str, start: int, length: float, *, protected: bool = False) -> Effect:
    return Effect(hash_, start, length, protected)
