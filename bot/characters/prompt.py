"""A card's prompt in SillyTavern's default Chat Completion order, and its greetings."""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from bot.characters.lorebook import LoreHits, scan
from bot.characters.macros import Macros
from bot.characters.model import Card, DepthNote
from bot.characters.timed import Active
from bot.types import ChatMessage, HistoryEntry, Role

# SillyTavern's defaults (public/scripts/openai.js, default/content/presets/openai). The
# three formats are a preset's `wi_format`, `scenario_format` and `personality_format`
# (openai.js default_wi_format and the next, lines 102-110 of 2024-09).
WI_FORMAT = "{0}"
PERSONALITY_FORMAT = "[{{char}}'s personality: {{personality}}]"
SCENARIO_FORMAT = "[Circumstances and context of the dialogue: {{scenario}}]"
FORMATS = {
    "wi_format": WI_FORMAT,
    "scenario_format": SCENARIO_FORMAT,
    "personality_format": PERSONALITY_FORMAT,
}
NEW_EXAMPLE_CHAT = "[Example Chat]"
NEW_CHAT = "[Start a new Chat]"
EXAMPLE_USER, EXAMPLE_ASSISTANT = "example_user", "example_assistant"
DEFAULT_USER = "User"
NO_CHARACTER = "Assistant"  # {{char}} with no card: SillyTavern's neutralCharacterName
_START = re.compile(r"<START>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CharacterPrompt:
    """What a turn sends with a card: the system text, then `messages` in order."""

    system: str  # main → lore before → description → personality → scenario → lore after
    before_history: tuple[ChatMessage, ...]  # example dialogues, then the new-chat marker
    history: tuple[ChatMessage, ...]  # the turns given, macros resolved
    after_history: tuple[ChatMessage, ...]  # post-history instructions (0 or 1 message)
    lore: LoreHits = field(default_factory=LoreHits)
    # Among the history: the Character's Note and lore placed at a depth.
    in_chat: tuple[DepthNote, ...] = ()

    @property
    def messages(self) -> tuple[ChatMessage, ...]:
        return self.chat(continuing=False)

    @property
    def notes(self) -> tuple[ChatMessage, ...]:
        """The messages the card adds among the history (counted with what it adds
        around it)."""
        return tuple(m for _, messages in _at_depths(self.in_chat) for m in messages)

    def chat(self, *, continuing: bool) -> tuple[ChatMessage, ...]:
        """What the model is sent after the system text: examples, the history with the
        notes at their depths as SillyTavern puts them (populationInjectionPrompts: on
        the history newest first, each depth's messages go in `depth` original messages
        from the end, after those put in for lower depths, and a depth past the start
        goes at the start; at one depth one message a role, assistant, user, system in
        the order read, its notes joined by lines), then post-history instructions.

        Continuing an answer, nothing comes after the answer: no post-history
        instructions, and a note of depth 0 goes before it. (SillyTavern puts that note
        after it, before its "continue" nudge; here the answer stays last, so a model
        that continues the last message, as Claude's prefill does, continues the
        answer and not the note.)"""
        newest_first = list(reversed(self.history))
        floor = 1 if continuing and newest_first else 0
        inserted = 0
        for depth, messages in _at_depths(self.in_chat):  # the shallowest first
            at = max(depth, floor) + inserted
            newest_first[at:at] = messages  # past the end: at the end, as JS splice does
            inserted += len(messages)
        after = () if continuing else self.after_history
        return (*self.before_history, *reversed(newest_first), *after)


# At one depth, newest first: system, user, assistant (read in order: assistant first).
_ROLE_ORDER = ("system", "user", "assistant")


def _at_depths(notes: Sequence[DepthNote]) -> list[tuple[int, list[ChatMessage]]]:
    """(depth, messages newest first) for `notes`, the shallowest depth first: one
    message a role, in _ROLE_ORDER, its notes by rank joined by lines."""
    groups: dict[int, dict[str, list[DepthNote]]] = {}
    for note in sorted(notes, key=lambda n: n.rank):  # stable: a rank keeps its order
        groups.setdefault(note.depth, {}).setdefault(note.role, []).append(note)
    return [
        (
            depth,
            [
                ChatMessage(Role(role), "\n".join(n.text for n in roles[role]))
                for role in _ROLE_ORDER
                if role in roles
            ],
        )
        for depth, roles in sorted(groups.items())
    ]


def macros_for(card: Card, user: str, rng: random.Random | None = None) -> Macros:
    """The macros of `card` spoken to `user` ({{char}} is the V3 nickname if any)."""
    return Macros(card.display_name, user.strip() or DEFAULT_USER, rng or random.Random())


def macros_without_card(user: str | None, char: str = NO_CHARACTER) -> Macros:
    """The macros of a turn with no card, as SillyTavern's with no character: {{char}},
    {{charIfNotGroup}} and {{group}} are `char`, {{user}} whoever asked."""
    return Macros(char, (user or "").strip() or DEFAULT_USER)


def system_without_card(text: str | None, user: str | None, char: str = NO_CHARACTER) -> str | None:
    """A channel's own system prompt (a preset's main prompt, say) for a turn with no card,
    its macros replaced (macros_without_card); None when nothing is left."""
    if not text:
        return None
    resolved = macros_without_card(user, char)(text)
    return resolved if resolved.strip() else None


def build_prompt(
    card: Card,
    history: Sequence[ChatMessage | HistoryEntry],
    *,
    user: str,
    estimate: Callable[[str], int],
    default_system: str = "",
    default_post_history: str = "",
    auxiliary: str = "",
    lore_budget: int | None = None,
    examples_budget: int | None = None,
    rng: random.Random | None = None,
    lore_rng: random.Random | None = None,
    chat_length: int | None = None,
    timed: Active | None = None,
    wi_format: str | None = None,
    scenario_format: str | None = None,
    personality_format: str | None = None,
    post_history_off: bool = False,
) -> CharacterPrompt:
    """The prompt for `card` over `history` (oldest first, already trimmed to the context);
    `estimate` counts tokens for the lorebook's and the examples' budgets. `rng` draws
    the macros' chances, `lore_rng` the lorebook's (its entries' `probability` and
    inclusion groups); `chat_length` is how many messages the whole chat has, for the
    entries' `delay` (`len(history)` when not given); `timed` the entries sticky or on
    cooldown (bot.characters.timed.check). The formats wrap the lorebook's entries
    before and after the character, the personality and the scenario (None: FORMATS).
    `post_history_off`: the post-history prompt switched off, so the card's
    post_history_instructions are not sent either, as in SillyTavern."""
    # default_system is our system prompt: the card's {{original}}, and the main prompt
    # when the card has none; default_post_history the same for post_history_instructions;
    # auxiliary a preset's nsfw prompt (placed after the scenario, as ST does).
    macros = macros_for(card, user, rng)
    turns = tuple(_resolved(m, macros) for m in history)
    lore = scan(
        card.character_book,
        [_scanned(t, macros) for t in turns],
        macros=macros,
        estimate=estimate,
        budget=lore_budget,
        rng=lore_rng,
        chat_length=chat_length,
        sticky=timed.sticky if timed else (),
        cooldown=timed.cooldown if timed else (),
    )
    if card.system_prompt.strip():
        main = macros(card.system_prompt, original=default_system)
    else:
        main = macros(default_system)
    personality = macros(card.personality).strip()
    scenario = macros(card.scenario).strip()
    fields = {"personality": personality, "scenario": scenario}
    wi = macros(WI_FORMAT if wi_format is None else wi_format)
    personality_format = PERSONALITY_FORMAT if personality_format is None else personality_format
    scenario_format = SCENARIO_FORMAT if scenario_format is None else scenario_format
    parts = [
        main,
        _world_info(wi, "\n".join(lore.before)),
        macros(card.description),
        _card_format(personality_format, macros, fields) if personality else "",
        _card_format(scenario_format, macros, fields) if scenario else "",
        macros(auxiliary),
        _world_info(wi, "\n".join(lore.after)),
    ]
    system = "\n\n".join(p.strip() for p in parts if p.strip())
    examples = example_messages(card, macros, estimate, examples_budget)
    before = (*examples, ChatMessage(Role.SYSTEM, NEW_CHAT))
    if post_history_off:
        # SillyTavern replaces only a post-history prompt its order sends (openai.js
        # preparePromptsForChatCompletion, line 1255: prompts.get('jailbreak') is null
        # when switched off); an empty one it sends is replaced.
        post = ""
    elif card.post_history_instructions.strip():
        post = macros(card.post_history_instructions, original=default_post_history)
    else:
        post = macros(default_post_history)
    after = (ChatMessage(Role.SYSTEM, post.strip()),) if post.strip() else ()
    notes = [*lore.at_depth]
    if card.depth_prompt is not None:
        note = card.depth_prompt
        notes.append(replace(note, text=macros(note.text)))
    in_chat = tuple(replace(n, text=n.text.strip()) for n in notes if n.text.strip())
    return CharacterPrompt(system, before, turns, after, lore, in_chat)


def _scanned(turn: ChatMessage, macros: Macros) -> str:
    """A turn as the lorebook looks for keys in it: after its speaker's name, `Ada: hi`,
    as SillyTavern's scan reads the chat with "Include Names" on, its default
    (script.js: `${x.name}: ${x.mes}`), so a key that is the character's name or the
    person's finds the messages they wrote."""
    if turn.role is Role.USER:
        speaker = (turn.name or "").strip() or macros.user
    elif turn.role is Role.ASSISTANT:
        speaker = macros.char
    else:
        return turn.content
    return f"{speaker}: {turn.content}"


# The card's fields a personality or scenario format names (SillyTavern's macros of
# them, in any case: macros.js evaluateMacros).
_CARD_FIELD = re.compile(r"\{\{(personality|scenario)\}\}", re.IGNORECASE)
# What SillyTavern's stringFormat replaces in `wi_format`: {0} is the entries' text, any
# other number is left as written (utils.js stringFormat).
_WI_ARGUMENT = re.compile(r"\{(\d+)\}")


def _card_format(form: str, macros: Macros, fields: dict[str, str]) -> str:
    """A personality or scenario format as SillyTavern sends it (openai.js
    preparePromptsForChatCompletion, substituteParams of the format): its macros
    replaced, {{personality}} and {{scenario}} the card's (their macros replaced already);
    an empty format sends nothing. Each field at its first place only, as {{original}}:
    a format of 8,000 characters naming a long field 600 times made a prompt of
    hundreds of megabytes on the bot's one event loop."""
    used: set[str] = set()

    def field(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        first = name not in used
        used.add(name)
        return fields[name] if first else ""

    return _CARD_FIELD.sub(field, macros(form))


def _world_info(form: str, text: str) -> str:
    """Lorebook entries' text in `wi_format` as SillyTavern's formatWorldInfo puts it:
    none stays none, and a blank format leaves the text as it is. {0} at its first place
    only (as _card_format's fields: the entries' text is long)."""
    if not text or not form.strip():
        return text
    used = False

    def argument(match: re.Match[str]) -> str:
        nonlocal used
        if match.group(1) != "0":
            return match.group(0)
        first, used = not used, True
        return text if first else ""

    return _WI_ARGUMENT.sub(argument, form)


# What may draw on a turn's random source: {{random}} and {{roll}}, in any case.
_CHANCE = re.compile(r"random|roll", re.IGNORECASE)


def _resolved(message: ChatMessage | HistoryEntry, macros: Macros) -> ChatMessage:
    """A turn's macros as SillyTavern resolved them once, when it was sent: a person's
    `{{user}}` is that person (the name the turn goes under), not whoever asks now, and
    its `{{random}}` and `{{roll}}` come out the same at every build (seeded by the
    turn: its words and the stored turn it follows), so a roll stays what the answer
    after it was given, and the same words sent again roll again."""
    name = message.author if isinstance(message, HistoryEntry) else message.name
    content = message.content
    if "{" in content or "<" in content:
        user = name.strip() if message.role is Role.USER and name and name.strip() else ""
        rng = macros.rng
        if _CHANCE.search(content):  # seeded only where used: a Random costs more than the rest
            # By its words and the stored turn it follows: the same words sent again
            # (`{{roll:d20}}`) are another roll, not the first one's number again. Not by
            # its name, which is the asker's newest (a nickname changed, `Bob (2)`).
            follows = message.follows if isinstance(message, ChatMessage) else None
            turn = f"{message.role.value}\0{follows}\0{content}"
            rng = random.Random(zlib.crc32(turn.encode()))
        content = Macros(macros.char, user or macros.user, rng)(content)
    if isinstance(message, HistoryEntry):
        return ChatMessage(message.role, content, message.author)
    return replace(message, content=content)


def example_dialogues(card: Card, macros: Macros) -> list[list[tuple[Role, str]]]:
    """mes_example as `<START>` blocks of (role, text) turns, read as SillyTavern's
    parseExampleIntoIndividual does: a line `Name:` starts that speaker's turn."""
    # A block with no speaker lines is kept whole as one system turn (ST drops it).
    text = macros(card.mes_example).strip()
    if not text or text.upper() == "<START>":
        return []
    if not text[:7].upper() == "<START>":
        text = "<START>\n" + text
    user, char = f"{macros.user}:", f"{macros.char}:"
    dialogues = []
    for block in _START.split(text)[1:]:
        turns: list[tuple[Role, str]] = []
        lines: list[str] = []
        speaker: Role | None = None
        for line in block.strip().split("\n"):
            role = Role.USER if line.startswith(user) else None
            role = Role.ASSISTANT if role is None and line.startswith(char) else role
            if role is not None and speaker is not None and role is not speaker:
                turns.append(_turn(speaker, lines, user, char))
                lines = []
            speaker = role or speaker
            lines.append(line)
        if speaker is not None:
            turns.append(_turn(speaker, lines, user, char))
        if not turns and block.strip():
            turns.append((Role.SYSTEM, block.strip()))
        if turns:
            dialogues.append(turns)
    return dialogues


def _turn(speaker: Role, lines: list[str], user: str, char: str) -> tuple[Role, str]:
    label = user if speaker is Role.USER else char
    return speaker, "\n".join(lines).replace(label, "", 1).strip()


def example_messages(
    card: Card, macros: Macros, estimate: Callable[[str], int], budget: int | None = None
) -> tuple[ChatMessage, ...]:
    """The example dialogues as system turns, each block opened by `[Example Chat]` and each
    turn named and prefixed with its speaker; whole blocks while they fit `budget`."""
    out: list[ChatMessage] = []
    left = budget
    for turns in example_dialogues(card, macros):
        block = [ChatMessage(Role.SYSTEM, NEW_EXAMPLE_CHAT)]
        for role, text in turns:
            if role is Role.USER:
                block.append(ChatMessage(Role.SYSTEM, f"{macros.user}: {text}", EXAMPLE_USER))
            elif role is Role.ASSISTANT:
                block.append(ChatMessage(Role.SYSTEM, f"{macros.char}: {text}", EXAMPLE_ASSISTANT))
            else:
                block.append(ChatMessage(Role.SYSTEM, text))
        if left is not None:
            cost = sum(estimate(m.content) for m in block)
            if cost > left:
                break
            left -= cost
        out += block
    return tuple(out)


def greetings(card: Card, user: str, rng: random.Random | None = None) -> tuple[str, ...]:
    """first_mes then the alternate greetings (the greeting's swipes), macros resolved;
    empty ones left out, so the tuple is empty when the card has none."""
    macros = macros_for(card, user, rng)
    texts = (macros(t).strip() for t in (card.first_mes, *card.alternate_greetings))
    return tuple(t for t in texts if t)
