"""A turn's request: as much of the history as the context holds, images shown or named,
each asker named, and a channel's character card shaping it (bot.characters.build_prompt)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from bot.characters import (
    Card,
    Timers,
    macros_for,
    macros_without_card,
    system_without_card,
    timed,
)
from bot.conversation import character
from bot.conversation.attachments import image_placeholder
from bot.conversation.budget import estimate_tokens, image_tokens, trim_history
from bot.conversation.character import CardPrompts
from bot.fields import REGISTRY, conversation_room
from bot.providers import CONTINUE_INSTRUCTION, ChatRequest
from bot.store import Store
from bot.types import (
    ChannelConfig,
    ChannelRef,
    ChatMessage,
    HistoryEntry,
    Image,
    Platform,
    Role,
    TurnState,
    params_as,
)
from bot.types.text import without_invisible


@dataclass(frozen=True, slots=True)
class Overflow:
    """Why a request cannot fit the context set here: its parts that go whatever the
    history (what, tokens), the largest first, come to more than the whole context."""

    parts: tuple[tuple[str, int], ...]
    size: int

    def text(self, p: str, platform: Platform) -> str:
        """Why it was not sent, with the commands that help as `platform` takes them."""
        context = params_as(p, platform, "context")
        named = " and ".join(f"{what} (about {tokens:,} tokens)" for what, tokens in self.parts)
        if len(self.parts) > 1:
            named += f" come to about {sum(tokens for _, tokens in self.parts):,} tokens,"
        else:
            named += " is"
        return (
            f"This was not sent to the model: it cannot fit the context. {named[:1].upper()}"
            f"{named[1:]} more than the whole {self.size:,}-token context set with "
            f"{context}. {_FIT[self.parts[0][0]].format(p=p, context=context)}"
        )


# What helps, by the largest part (Overflow.parts' names).
_PROMPTS_FIT = "An admin shortens {what} or raises {{context}}, if the model takes more."
_FIT = {
    "your message": "Shorten your message or split it up.",
    "your image": "Ask without it, or attach a smaller one (fewer pixels).",
    "your images": "Ask with fewer of them, or attach smaller ones (fewer pixels).",
    "the prompts": _PROMPTS_FIT.format(what="the prompts ({p}prompts)"),
    "the character card and prompts": _PROMPTS_FIT.format(what="the character card"),
    "the answer being continued": "{p}regenerate asks for a new answer instead.",
    "the question it answers": "An admin raises {context}, if the model takes more.",
}


class Built(NamedTuple):
    request: ChatRequest
    overflow: Overflow | None  # it cannot fit the context set here: not to be sent
    # The lorebook's timed effects to store once it is sent (None: nothing changed);
    # those begun at a question not stored yet are anchored to it then (Timers.anchored).
    lore: Timers | None = None


# The least of an answer's end worth continuing from: less, and it is not cut.
_MIN_TAIL = 64


def _tail(entry: HistoryEntry, tokens: int) -> HistoryEntry:
    """The entry with only as much of its end as about `tokens` tokens, from a word's
    start; as it was when less than _MIN_TAIL would be left."""
    text = entry.content
    if tokens < _MIN_TAIL or estimate_tokens(text) <= tokens:
        return entry
    keep = len(text) * tokens // max(1, estimate_tokens(text))
    while keep > 0 and estimate_tokens(text[-keep:]) > tokens:
        keep = keep * 9 // 10
    tail = text[len(text) - keep :]
    # From a line's start if one is near (code stays whole lines), else a word's.
    for mark in ("\n", " "):
        at = tail.find(mark)
        if 0 <= at < len(tail) // 4:
            tail = tail[at + 1 :]
            break
    return replace(entry, content="…" + tail, tokens=estimate_tokens(tail))


class Requests:
    """Builds the request for a conversation's newest entry."""

    def __init__(self, store: Store, history_image_turns: int) -> None:
        self._store = store
        self._image_turns = history_image_turns  # earlier turns whose images go out again
        self._cards = CardPrompts(store)

    async def build(
        self,
        ref: ChannelRef,
        config: ChannelConfig,
        entries: list[HistoryEntry],
        sees: bool,
        continue_answer: bool = False,
        fresh: Sequence[Image] = (),
    ) -> Built:
        """The request for the newest entry (a question, or an answer to continue) with as
        much of the history before it as the context holds; a channel's character card
        shapes it (bot.characters.build_prompt). An answer being continued that has grown
        past the context goes with its end only; what cannot fit a context set with
        /params context comes with its Overflow, and is not to be sent. `fresh`: the
        images of a question not stored yet (built before it is, so its quota charge
        holds what the request sends)."""
        *history, newest = entries
        follows = _follows(entries)
        # A question that got no answer stays in the history people see, but the model
        # gets one user turn at a time.
        usable = [
            e
            for e in history
            if e.state is not TurnState.FAILED and (e.content.strip() or e.images)
        ]
        context = config.number("context")
        size, room = conversation_room(context, config.number("max_tokens"))
        # What goes whatever the history: the prompts (and a card's text, examples and
        # lore), the newest entry, and the question an answer being continued goes on from.
        prompts = estimate_tokens(config.own_prompts) if config.own_prompts else 0
        card = await self._cards.card(ref)
        asker = next((e.author for e in reversed(entries) if e.role is Role.USER), None)
        prefill = _prefill(config, card, asker)
        prompts += estimate_tokens(prefill) if prefill else 0
        # The whole chat (as SillyTavern counts it for a lorebook entry's delay: the
        # messages sent and answered, the one asked or continued too) and one draw of
        # the lorebook's chances, for the draft and the prompt sent alike.
        turn = character.Turn.of(len(usable) + 1)
        # The entries sticky or on cooldown, read once for the draft and the prompt sent;
        # what the prompt sent brings in starts its own (stored only when it is sent).
        book = card.character_book if card is not None else None
        stored = checked = None
        if book is not None and timed.timed(book):
            stored = Timers.from_json(await self._store.lore_timers(ref))
            since = _since(entries, [*usable, newest])
            checked, active = timed.check(stored, book, since, newest.id)
            turn = replace(turn, timed=active)
        now = newest.id
        if card is not None:
            whole = self._sent([*usable, newest], follows, {})
            draft = await character.prompt(card, config, whole, asker, turn)
            prompts += character.fixed_cost(draft, config)
        asked: list[HistoryEntry] = []
        if continue_answer and usable and usable[-1].id == newest.reply_to:
            # The question the answer goes on from stays, whatever else the context
            # leaves out: without it, "[Continue]" follows an answer to nothing.
            *usable, question = usable
            asked = [question]
        # The images that go (the newest entry's, and the newest earlier turns' that had
        # any) are known before the history is trimmed: it leaves out the oldest turns
        # first, so those it keeps show the same. Each counts by its size as sent.
        shown = await self._shown_images([*usable, *asked, newest], fresh) if sees else {}
        seen = {key: image_tokens(config.source, images) for key, images in shown.items()}
        own_images = seen.get(id(newest), 0)
        asked_cost = sum(e.tokens or estimate_tokens(e.content) for e in asked)
        asked_cost += sum(seen.get(id(e), 0) for e in asked)
        # An answer being continued goes with what asks to go on (the most any endpoint
        # is sent): counted as part of it.
        going_on = estimate_tokens(CONTINUE_INSTRUCTION) if continue_answer else 0
        newest_cost = estimate_tokens(newest.content) + going_on
        if continue_answer and prompts + asked_cost + newest_cost > room:
            # An answer grown past the context goes on from as much of its end as fits.
            whole_answer, newest = newest, _tail(newest, room - prompts - asked_cost - going_on)
            if id(whole_answer) in follows:  # the same turn, cut
                follows[id(newest)] = follows[id(whole_answer)]
            newest_cost = estimate_tokens(newest.content) + going_on
        fixed = prompts + asked_cost + newest_cost + own_images
        overflow = None
        lore: Timers | None = None
        if fixed > size and context is not None:  # the model's size is known: it cannot fit
            what = "the answer being continued" if continue_answer else "your message"
            attached = len(shown.get(id(newest), ()))
            parts = (
                ("the character card and prompts" if card else "the prompts", prompts),
                ("the question it answers", asked_cost),
                (what, newest_cost),
                ("your images" if attached > 1 else "your image", own_images),
            )
            overflow = Overflow(
                tuple(sorted((p for p in parts if p[1]), key=lambda p: -p[1])), size
            )
        kept = [*trim_history(usable, max(0, room - fixed), seen), *asked, newest]
        messages = self._sent(kept, follows, shown)
        # Who asked, by id: a nickname changed mid-conversation (or the console's name
        # before an upgrade) is still one person, whose turns need no names.
        who = _asker(kept)
        authors = {who(e) for e in kept if e.role is Role.USER}
        authors.discard(None)
        # The turns' stored estimates, not each turn counted again at every request.
        estimate = sum(e.tokens or estimate_tokens(e.content) for e in kept)
        estimate += sum(seen.get(id(e), 0) for e in kept)
        if card is None:
            # As SillyTavern sends its prompts without a character: the main and the
            # auxiliary prompt first, the post-history instructions after the chat.
            own = "\n\n".join(t for t in (config.system_prompt, config.auxiliary_prompt) if t)
            system = system_without_card(own, asker)
            post = system_without_card(config.post_history_prompt, asker)
            if post and not continue_answer:  # the answer being continued stays last
                messages.append(ChatMessage(Role.SYSTEM, post.strip()))
                estimate += estimate_tokens(post)
        else:
            prompt = await character.prompt(card, config, messages, asker, turn)
            if book is not None and checked is not None:
                world = timed.world_name(card)
                lore = timed.begin(checked, book, prompt.lore.activated, now, world)
            system = prompt.system or None
            messages = list(prompt.chat(continuing=continue_answer))
            after = () if continue_answer else prompt.after_history
            # Examples, notes among and after the history.
            extra = [*prompt.before_history, *prompt.notes, *after]
            estimate += sum(estimate_tokens(m.content) for m in extra)
        values = config.values
        stop = values.get("stop")
        if isinstance(stop, list | tuple) and stop:
            # Macros in stop strings are replaced as in the prompts (SillyTavern's
            # custom_stopping_strings_macro, on by default): `\n{{user}}:` stops where
            # the model begins to speak for whoever asked.
            resolved = (_with_macros(s, card, asker) for s in stop if isinstance(s, str))
            values = {**values, "stop": [s for s in resolved if s] or None}
        request = ChatRequest(
            model=config.model or "",
            messages=tuple(messages),
            system_prompt=system,
            options=REGISTRY.request_options(values, config.source),
            multi_user=len(authors) > 1,
            continue_answer=continue_answer,
            input_estimate=estimate
            + (estimate_tokens(system) if system else 0)
            + (estimate_tokens(prefill) if prefill else 0),
            prefill=prefill,
            continue_by_prefill=config.value("continue_prefill") is not False,
        )
        return Built(request, overflow, None if lore == stored else lore)

    @staticmethod
    def _sent(
        kept: list[HistoryEntry],
        follows: dict[int, int],
        shown: dict[int, tuple[Image, ...]],
    ) -> list[ChatMessage]:
        """Stored turns as the model is sent them (the images `shown` has for an entry
        shown, by id(entry), others named), each asker by the name `_speakers` gives
        them, and each with the stored turn it follows (`follows`, from _follows)."""
        names = _speakers(kept)
        who = _asker(kept)
        messages = []
        for entry in kept:
            sent = shown.get(id(entry), ())
            named = [image_placeholder(r.name) for r in entry.images[len(sent) :]]
            content = _naming(entry.content, named)
            name = names.get(who(entry) or "", entry.author)
            turn = ChatMessage(entry.role, content, name, sent, follows.get(id(entry)))
            messages.append(turn)
        return messages

    async def _shown_images(
        self, entries: list[HistoryEntry], fresh: Sequence[Image] = ()
    ) -> dict[int, tuple[Image, ...]]:
        """The newest entry's images, and those of the newest earlier turns that had any
        (HISTORY_IMAGE_TURNS), by id(entry); older ones are named instead. `fresh` ones
        are at hand (not read from the store)."""
        turns = self._image_turns
        earlier = [i for i, e in enumerate(entries[:-1]) if e.images][-turns:] if turns > 0 else []
        recent = [*earlier, len(entries) - 1] if entries[-1].images else earlier
        if not recent:
            return {}
        data = {image.sha256: image for image in fresh if image.sha256}
        refs = [r for i in recent for r in entries[i].images if r.sha256 not in data]
        data |= await self._store.image_data(refs) if refs else {}
        shown: dict[int, tuple[Image, ...]] = {}
        for i in recent:
            found = [data[r.sha256] for r in entries[i].images if r.sha256 in data]
            # A turn with a pruned image is named in full, so its images stay in order.
            if len(found) == len(entries[i].images):
                pairs = zip(found, entries[i].images, strict=True)
                shown[id(entries[i])] = tuple(replace(img, name=r.name) for img, r in pairs)
        return shown


def _naming(content: str, names: Sequence[str]) -> str:
    """`content` followed by the names of the images not sent with it: on a line of their
    own after a file's block (a fence closes only alone on its line), after a space on a
    one-line message, alone when it has no text."""
    if not names:
        return content
    joined = " ".join(names)
    if not content:
        return joined
    between = "\n" if "\n" in content else " "
    return f"{content}{between}{joined}"


def _prefill(config: ChannelConfig, card: Card | None, asker: str | None) -> str:
    """The text the answer begins with (the assistant prefill) where the source takes
    one (Claude), its macros replaced as SillyTavern's substituteParams does: "" when
    there is none."""
    text = config.value("assistant_prefill")
    if not isinstance(text, str) or not text.strip():
        return ""
    if not REGISTRY.by_name["assistant_prefill"].applies_to(config.source):
        return ""
    return _with_macros(text, card, asker)


def _with_macros(text: str, card: Card | None, asker: str | None) -> str:
    """`text` with its macros replaced as in the prompt: {{char}} the card's, or
    SillyTavern's `Assistant` without one; {{user}} whoever asked."""
    if card is None:
        return macros_without_card(asker)(text)
    return macros_for(card, asker or "")(text)


def _since(
    read: Sequence[HistoryEntry], chat: Sequence[HistoryEntry]
) -> Callable[[int | None], float]:
    """How many of `chat`'s messages come after the stored message `start` (by id: a
    conversation's ids grow), what a lorebook's timed effect counts: SillyTavern's
    `chat.length - start`. A message older than every one `read` is past any count: the
    history read back stops at its newest rows, and the count over them would stay the
    same from one prompt to the next."""
    oldest = min((e.id for e in read if e.id is not None), default=None)

    def since(start: int | None) -> float:
        if start is None:
            return 0
        if oldest is None or start < oldest:
            return math.inf
        return sum(1 for e in chat if e.id is None or e.id > start)

    return since


def _follows(entries: list[HistoryEntry]) -> dict[int, int]:
    """Each entry (by identity: two of the same words compare equal) → the stored id of
    the entry before it in the conversation, failed questions included. It is the same at
    every build from the first on, when the newest question has no id of its own yet."""
    found: dict[int, int] = {}
    before: int | None = None
    for entry in entries:
        if before is not None:
            found[id(entry)] = before
        if entry.id is not None:
            before = entry.id
    return found


# Colons and what looks like one: a name that holds one reads as a speaker before it.
_COLONS = str.maketrans(dict.fromkeys(":\uff1a\u2236\ua789\ufe55\ufe13\u02d0\u05c3", " "))


def _asker(kept: list[HistoryEntry]) -> Callable[[HistoryEntry], str | None]:
    """Who asked an entry, by id. A question stored before ids were (before migration
    0005) has its asker's name only: it is taken for whoever goes by that name in the
    newer turns (an upgrade had made each person two, `alice` and `alice (2)`)."""
    by_name = {e.author.casefold(): e.author_id for e in kept if e.author and e.author_id}

    def who(entry: HistoryEntry) -> str | None:  # by name in any case, as engine._asked_by
        return entry.author_id or by_name.get((entry.author or "").casefold(), entry.author)

    return who


def _speakers(kept: list[HistoryEntry]) -> dict[str, str]:
    """Each asker's name as the model reads it before their words (`Name: text`), by
    who they are, in the name they have now: without colons or look-alikes of one (a
    member named `Ada: the admin says` read as Ada speaking) or invisible characters,
    and numbered when two people show the same name (`Bob`, `Bob (2)`)."""
    latest: dict[str, str] = {}
    asker = _asker(kept)
    for entry in kept:
        who = asker(entry)
        if entry.role is Role.USER and entry.author and who:
            latest[who] = entry.author  # in order of first words, with the newest name
    names: dict[str, str] = {}
    taken: set[str] = set()
    for who, name in latest.items():
        base = " ".join(without_invisible(name).translate(_COLONS).split()) or "someone"
        label, n = base, 1
        while label.casefold() in taken:
            n += 1
            label = f"{base} ({n})"
        taken.add(label.casefold())
        names[who] = label
    return names
