"""A character channel's prompt: the card (parsed once per version) shapes the request."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bot.characters import Active, Card, CardError, CharacterPrompt, build_prompt, card_from_json
from bot.conversation.budget import estimate_tokens, history_budget
from bot.store import Store, StoredCharacter
from bot.types import ChannelConfig, ChannelRef, ChatMessage

log = logging.getLogger("bot.conversation")

LORE_SHARE = 4  # a lorebook may take a quarter of what the history could have
EXAMPLES_SHARE = 2  # example dialogues at most half of it
_CARDS_KEPT = 256


class CardPrompts:
    """The card of a channel (its own or its server's) and the prompt it makes."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cards: dict[tuple[str, str, str, int], Card] = {}

    async def card(self, ref: ChannelRef) -> Card | None:
        """The channel's character card, None without one (or one that cannot be read)."""
        stored = await self._store.character(ref)
        if stored is None:
            return None
        key = _key(stored)
        card = self._cards.get(key)
        if card is None:
            try:
                card = await asyncio.to_thread(card_from_json, stored.card)
            except CardError as err:  # stored by an older reader that took more
                log.warning("the character card in %s cannot be read: %s", ref, err)
                return None
            if len(self._cards) >= _CARDS_KEPT:
                self._cards.clear()
            self._cards[key] = card
        return card


@dataclass(frozen=True, slots=True)
class Turn:
    """What a turn's prompts share however much of the history each is given: the whole
    chat's length (a lorebook entry's `delay` counts it), the seed of the lorebook's
    rolls and its entries sticky or on cooldown (read once a turn), so the draft that
    counts the card's part and the prompt sent bring in the same entries."""

    chat_length: int
    lore_seed: int
    timed: Active | None = None

    @classmethod
    def of(cls, chat_length: int) -> Turn:
        return cls(chat_length, random.getrandbits(64))


def _prompt(
    card: Card,
    config: ChannelConfig,
    messages: Sequence[ChatMessage],
    user: str | None,
    turn: Turn | None = None,
) -> CharacterPrompt:
    """build_prompt with our prompts as its defaults (the system prompt as the {{original}}
    of the card's system prompt, the post-history instructions as that of its
    post_history_instructions, the auxiliary prompt after its scenario), lore and
    examples budgeted from the context the history could have."""
    base = history_budget(config.number("context"), config.number("max_tokens"), None, "")
    turn = turn or Turn.of(len(messages))
    return build_prompt(
        card,
        messages,
        user=user or "",
        estimate=estimate_tokens,
        default_system=config.system_prompt or "",
        default_post_history=config.post_history_prompt or "",
        auxiliary=config.auxiliary_prompt or "",
        lore_budget=base // LORE_SHARE,
        examples_budget=base // EXAMPLES_SHARE,
        lore_rng=random.Random(turn.lore_seed),
        chat_length=turn.chat_length,
        timed=turn.timed,
        wi_format=config.text_value("wi_format"),
        scenario_format=config.text_value("scenario_format"),
        personality_format=config.text_value("personality_format"),
        post_history_off=config.value("post_history_off") is True,
    )


async def prompt(
    card: Card,
    config: ChannelConfig,
    messages: Sequence[ChatMessage],
    user: str | None,
    turn: Turn | None = None,
) -> CharacterPrompt:
    """The card's prompt. With a lorebook it is built in a worker thread: its scans
    (regex keys up to their budget) then hold the event loop a search at a time, not
    for the whole scan."""
    book = card.character_book
    if book is not None and book.entries:
        return await asyncio.to_thread(_prompt, card, config, messages, user, turn)
    return _prompt(card, config, messages, user, turn)


def fixed_cost(draft: CharacterPrompt, config: ChannelConfig) -> int:
    """Tokens the card adds around the history (system text, examples, notes among it,
    post-history), less our own prompts, which history_budget already counted and the
    card's prompt holds or replaces."""
    own = estimate_tokens(config.own_prompts) if config.own_prompts else 0
    around = (*draft.before_history, *draft.notes, *draft.after_history)
    return estimate_tokens(draft.system) + sum(estimate_tokens(m.content) for m in around) - own


def _key(stored: StoredCharacter) -> tuple[str, str, str, int]:
    return (stored.scope.value, stored.name, stored.updated_at.isoformat(), len(stored.card))
