"""Which lorebook entries the recent messages bring into the prompt, within a token budget."""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from bot.characters.macros import Macros
from bot.characters.model import (
    AUTHORS_NOTE_RANK,
    DEFAULT_NOTE_DEPTH,
    Card,
    CharacterBook,
    DepthNote,
    LoreEntry,
    depth_of,
    js_number,
    role_of,
)
from bot.characters.saferegex import MAX_STEPS, Unsafe, compile_key, is_delimited

DEFAULT_SCAN_DEPTH = 2  # SillyTavern's world_info_depth
MAX_SCAN_DEPTH = 1000  # SillyTavern's MAX_SCAN_DEPTH
RECURSION_PASSES = 3
MAX_SCAN_CHARS = 50_000  # the newest text scanned (and as much again of inserted entries)
MAX_NOTES = 20
REGEX_BUDGET = 5 * MAX_STEPS  # all regex searches of one prompt: ~0.1–0.3 s at worst
MAX_REGEX_SEARCHES = 2_000  # each reads a whole message (~20 ns a character ignoring case)
# Places looked at for whole-word keys with characters other than ASCII letters, digits
# and `_` (those are looked up among the text's words): ~0.1 s of one prompt at worst.
WHOLE_WORD_STEPS = 200_000
# An entry's place in an inclusion group, of all a prompt's scan sorts out: ~0.15 s at
# worst. A card may put each entry in thousands of groups (10,000 names fit in 60 KB).
GROUP_STEPS = 100_000
# SillyTavern's selectiveLogic (extensions.selectiveLogic): how secondary keys combine.
AND_ANY, NOT_ALL, NOT_ANY, AND_ALL = 0, 1, 2, 3
_DECORATOR = re.compile(r"@@@?[A-Za-z_]+[^\n]*")
DEFAULT_WEIGHT = 100  # SillyTavern's DEFAULT_WEIGHT: an entry's group_weight ?? 100
# Where a scan's rolls come from when it is given none (tests pass a seeded Random).
_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class LoreHits:
    """Inserted entries' texts by position (insertion order), and what was left out why."""

    before: tuple[str, ...] = ()  # before the description ("before_char")
    after: tuple[str, ...] = ()  # after the scenario ("after_char" and the rest)
    at_depth: tuple[DepthNote, ...] = ()  # among the chat messages (SillyTavern's @D)
    entries: tuple[LoreEntry, ...] = ()
    notes: tuple[str, ...] = ()  # regex keys not used, entries over the budget
    # The book's entries (by index) brought in, those of no content too, not those over
    # the budget: SillyTavern's allActivatedEntries, whose sticky and cooldown begin.
    activated: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Texts:
    """Entries' texts found by earlier passes (scanned again when recursive), lower-cased
    once."""

    texts: tuple[str, ...] = ()
    lowered: tuple[str, ...] = ()


@dataclass
class _Work:
    """What one prompt's scan may still spend, and what it found out once: shared by
    all its windows, so entries of many `scan_depth`s (a window each, up to 1,001) get
    one budget between them, not one each (a card of 2,000 regex keys, a depth each,
    had run for minutes a prompt)."""

    regex_budget: int = REGEX_BUDGET
    searches: int = MAX_REGEX_SEARCHES
    word_steps: int = WHOLE_WORD_STEPS
    group_steps: int = GROUP_STEPS
    notes: list[str] = field(default_factory=list)
    words: dict[str, frozenset[str]] = field(default_factory=dict)  # a text → its words
    lowered: dict[str, str] = field(default_factory=dict)  # a text → lower-cased
    # An entry's `group` → its names, split once a prompt and not kept past it: a card's
    # group text may be 1 MB (~10 MB split), which a cache for the process held on to.
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def lower(self, text: str) -> str:
        found = self.lowered.get(text)
        if found is None:
            found = self.lowered[text] = text.lower()
        return found


@dataclass
class _Scan:
    """The text one window looks in, lower-cased, and the prompt's work it draws on."""

    texts: list[str]
    lowered: list[str]
    work: _Work = field(default_factory=_Work)
    # A scan depth of 0 (or less): SillyTavern's WorldInfoBuffer.get gives such an entry
    # no text at all (`depth <= startDepth`), not even what recursion found.
    blind: bool = False

    def with_found(self, recursion: _Texts) -> _Texts:
        """What recursion found, as this window's entries see it."""
        return _Texts() if self.blind else recursion


def scan(
    book: CharacterBook | None,
    messages: Sequence[str],
    *,
    macros: Macros,
    estimate: Callable[[str], int],
    budget: int | None = None,
    rng: random.Random | None = None,
    chat_length: int | None = None,
    sticky: Collection[int] = (),
    cooldown: Collection[int] = (),
) -> LoreHits:
    """The entries the last `scan_depth` of `messages` (oldest first) bring in, with
    constant and recursively found ones; the most important that fit the budgets.

    As SillyTavern's checkWorldInfo (public/scripts/world-info.js): an entry with a
    `delay` waits until the chat has that many messages (`chat_length`, all of them, not
    only those scanned; `len(messages)` when not given); one delayed until recursion
    (`delay_until_recursion`) is left out of the first pass and of recursion passes
    below its level (passes go on at a level while they bring text in, when recursive,
    then at the next level entries wait at, recursive or not); each pass's matches go through
    their inclusion groups (one of a group kept), then each rolls its chance
    (`probability`), and one that fails is not tried again in this scan's later passes,
    only at the next prompt. The rolls come from one draw of `rng`, each roll derived
    from it and the entry (or group): two scans given generators seeded alike roll alike
    for the entries both match, however many else each matched (a turn's prompt is
    built twice, a draft to count it and the one sent).

    `sticky` and `cooldown`: the entries (by index) SillyTavern's timed effects hold
    (bot.characters.timed), as checkWorldInfo reads them: one on cooldown is left out
    unless sticky too; a sticky one comes in without its keys (unless disabled, delayed
    or `@@dont_activate`), in the first pass too (`delay_until_recursion` and
    `exclude_recursion` do not hold it back), with no roll of its chance, and is never
    left out by its inclusion groups, whose other entries it leaves out."""
    if book is None or not book.entries:
        return LoreHits()
    depth = DEFAULT_SCAN_DEPTH if book.scan_depth is None else book.scan_depth
    length = len(messages) if chat_length is None else chat_length
    seed = (rng or _RNG).getrandbits(64)
    windows: dict[int, _Scan] = {}
    work = _Work()

    def window(entry: LoreEntry) -> _Scan:
        own = entry.extension_values.get("scan_depth")
        size = own if isinstance(own, int) and not isinstance(own, bool) else depth
        size = max(0, min(size, MAX_SCAN_DEPTH))
        if size not in windows:
            texts = _newest(messages[-size:] if size else [], MAX_SCAN_CHARS)
            windows[size] = _Scan(texts, [work.lower(t) for t in texts], work, blind=not size)
        return windows[size]

    active: dict[int, str] = {}
    taken: set[int] = set()  # activated, those of no content too (one can win a group)
    failed: set[int] = set()  # lost their roll: not again in this scan (failedProbabilityChecks)
    recursion = _Texts()
    decorated: dict[int, tuple[str, set[str]]] = {}  # an entry's, read once a scan
    waits = [_recursion_level(entry) for entry in book.entries]
    levels = _levels(waits)
    level = levels.pop(0) if levels else 0.0
    for step in range(1 + RECURSION_PASSES):
        matched: dict[int, str] = {}
        for index, entry in enumerate(book.entries):
            if index in taken or index in failed or _delayed(entry, length):
                continue
            held = index in sticky
            if index in cooldown and not held:
                continue
            wait = waits[index]
            # NaN > level is false
            if wait is not None and not held and (not step or wait > level):
                continue
            if (
                step
                and not held
                and book.recursive_scanning
                and entry.extension_values.get("exclude_recursion") is True
            ):
                continue
            if index not in decorated:
                decorated[index] = _decorated(entry.content)
            content, decorators = decorated[index]
            # An empty entry adds nothing, but in a group it is one of the outcomes.
            if not content and not _groups(entry, work):
                continue
            seen = window(entry)
            if _activates(entry, decorators, seen, seen.with_found(recursion), macros, sticky=held):
                matched[index] = content

        def score(index: int, recursion: _Texts = recursion) -> int:
            seen = window(book.entries[index])
            return _score(book.entries[index], seen, seen.with_found(recursion), macros)

        found: list[str] = []  # joins the scanned text after this pass, not during it
        for index in _grouped(book, list(matched), taken, seed, score, work, sticky):
            entry = book.entries[index]
            if index not in sticky and not _rolls(entry, seed, index):
                failed.add(index)
                continue
            taken.add(index)
            content = matched[index]
            if not content:
                continue
            active[index] = macros(content)
            if entry.extension_values.get("prevent_recursion") is not True:
                # As SillyTavern's scan, later passes read the entry's text with its
                # macros replaced (`{{char}}'s sword` is the character's sword there).
                found.append(active[index])
        # Another pass when recursive and this one brought text in; else, when entries
        # wait at a higher recursion level, a pass at the next level (recursive or not,
        # as SillyTavern's scan goes on).
        if not (book.recursive_scanning and found):
            if not levels:
                break
            level = levels.pop(0)
        texts = tuple(_newest([*recursion.texts, *found], MAX_SCAN_CHARS))
        recursion = _Texts(texts, tuple(t.lower() for t in texts))
    notes = list(work.notes)
    kept = _within_budget(book, active, estimate, budget, notes)
    kept.sort(key=lambda i: (book.entries[i].insertion_order, i))
    if len(notes) > MAX_NOTES:
        notes[MAX_NOTES:] = [f"… and {len(notes) - MAX_NOTES} more."]
    places = {i: _place(book.entries[i]) for i in kept}
    before = tuple(active[i] for i in kept if places[i] == _BEFORE)
    after = tuple(active[i] for i in kept if places[i] == _AFTER)
    placed = [_depth_note(book.entries[i], active[i]) for i in kept if places[i] == _AT_DEPTH]
    deep = tuple(note for note in placed if note is not None)
    # SillyTavern's author's note with its lore around it: `${top}\n${note}\n${bottom}`,
    # the note itself empty here.
    top = "\n".join(active[i] for i in kept if places[i] == _AUTHORS_TOP)
    bottom = "\n".join(active[i] for i in kept if places[i] == _AUTHORS_BOTTOM)
    if top or bottom:
        authors = f"{top}\n\n{bottom}".strip()
        deep += (DepthNote(authors, DEFAULT_NOTE_DEPTH, "system", AUTHORS_NOTE_RANK),)
    entries = tuple(book.entries[i] for i in kept)
    over = set(active) - set(kept)
    activated = tuple(sorted(i for i in taken if i not in over))
    return LoreHits(before, after, deep, entries, tuple(notes), activated)


def _newest(texts: Sequence[str], limit: int) -> list[str]:
    """The newest texts up to `limit` characters in all (the oldest one kept cut short)."""
    kept: list[str] = []
    for text in reversed(texts):
        if limit <= 0:
            break
        kept.append(text[-limit:])
        limit -= len(text)
    kept.reverse()
    return kept


def _decorated(content: str) -> tuple[str, set[str]]:
    """Content without its leading V3 decorator lines, and the decorators' names."""
    names: set[str] = set()
    lines = content.split("\n")
    # Counted, not popped from the front: each pop moved all the lines after it (an
    # entry of 25,000 decorator lines took 50 ms, every entry at every prompt).
    first = 0
    while first < len(lines) and _DECORATOR.fullmatch(lines[first].strip()):
        names.add(lines[first].strip().lstrip("@").split(" ", 1)[0].lower())
        first += 1
    return "\n".join(lines[first:]).strip(), names


def _activates(
    entry: LoreEntry,
    decorators: set[str],
    scan: _Scan,
    recursion: _Texts,
    macros: Macros,
    *,
    sticky: bool = False,
) -> bool:
    if not entry.enabled:
        return False
    if "activate" in decorators:
        return True
    if "dont_activate" in decorators:
        return False
    if entry.constant or sticky:
        return True
    if not any(_matches(entry, macros(k), scan, recursion) for k in entry.keys):
        return False
    if not entry.selective or not entry.secondary_keys:
        return True
    logic = _logic(entry)
    if logic is None:  # SillyTavern compares it with each of its four: none is true
        return False
    hits = [_matches(entry, macros(k), scan, recursion) for k in entry.secondary_keys]
    if logic == NOT_ALL:
        return not all(hits)
    if logic == NOT_ANY:
        return not any(hits)
    if logic == AND_ALL:
        return all(hits)
    return any(hits)


def _logic(entry: LoreEntry) -> int | None:
    """The entry's selectiveLogic as SillyTavern reads it (world-info.js checkWorldInfo:
    `entry.selectiveLogic ?? 0`, then `===` each of AND_ANY … AND_ALL): null or absent is
    AND ANY; anything but one of those four numbers (4, "1", true) is None, which
    matches no logic, so SillyTavern never activates the entry by its keys."""
    logic = entry.extension_values.get("selectiveLogic")
    if logic is None:
        return AND_ANY
    if isinstance(logic, bool) or not isinstance(logic, int | float):
        return None
    return int(logic) if logic in (AND_ANY, NOT_ALL, NOT_ANY, AND_ALL) else None


def _delayed(entry: LoreEntry, chat_length: int) -> bool:
    """SillyTavern's delay (#checkDelayEffect: `!entry.delay` skips it, else `chat.length
    < entry.delay` holds the entry back, constant and `@@activate` ones too): not until
    the chat has that many messages. Not a number (NaN to JavaScript), 0 or negative: no
    delay."""
    delay = js_number(entry.extension_values.get("delay"))
    return delay is not None and chat_length < delay


def _recursion_level(entry: LoreEntry) -> float | None:
    """SillyTavern's "delay until recursion" (`extensions.delay_until_recursion`): None
    when the entry does not wait (the value falsy to JavaScript), else the recursion
    level from which it may come in (`true` is 1, else Number() of it). NaN, from a
    value that is no number (`"abc"`), is above no level: any recursion pass, as
    JavaScript's `NaN > level` is false."""
    value = entry.extension_values.get("delay_until_recursion")
    if not _truthy(value):
        return None
    if value is True:
        return 1.0
    if isinstance(value, int | float):  # Infinity to JavaScript is a level too
        try:
            return float(value)
        except OverflowError:  # a JSON integer of 400 digits
            return math.inf if value > 0 else -math.inf
    number = js_number(value)
    return math.nan if number is None else number


def _levels(waits: Sequence[float | None]) -> list[float]:
    """The recursion levels entries wait at, lowest first (getRecursionDelayLevels; a
    level that is no number is left out, sorting nowhere in particular there)."""
    return sorted({w for w in waits if w is not None and not math.isnan(w)})


def _truthy(value: object) -> bool:
    """JavaScript's truthiness of a JSON value (`[]` and `{}` are true there)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0 and value == value  # NaN is false too
    if isinstance(value, str):
        return value != ""
    return value is not None


_GROUP_SPLIT = re.compile(r",\s*")


def _groups(entry: LoreEntry, work: _Work) -> tuple[str, ...]:
    r"""An entry's inclusion groups as filterByInclusionGroups splits them
    (`group.split(/,\s*/)`, empty names dropped), each once."""
    group = entry.extension_values.get("group")
    if not isinstance(group, str) or not group:  # SillyTavern would fail on a number
        return ()
    names = work.groups.get(group)
    if names is None:
        split = _GROUP_SPLIT.split(group)
        names = work.groups[group] = tuple(dict.fromkeys(name for name in split if name))
    return names


def _chance(entry: LoreEntry) -> float | None:
    """The percent chance an entry is used when it matches; None when it is not rolled
    for. As convertCharacterBook reads it (`useProbability ?? true`, `probability ??
    100`) and checkWorldInfo rolls (not when `!useProbability || probability === 100`),
    with the value as SillyTavern's entry editor keeps it: Number() of it, kept within
    0–100, and 100 when it is not a number ("abc" is used every time, -5 never, 150
    every time)."""
    ext = entry.extension_values
    uses = ext.get("useProbability")
    if uses is not None and not _truthy(uses):
        return None
    value = ext.get("probability")
    number = None if value is None else js_number(value)
    if number is None or number >= 100:
        return None
    return max(0.0, number)


def _rolls(entry: LoreEntry, seed: int, index: int) -> bool:
    """Whether an entry passes its chance: SillyTavern's `Math.random() * 100 <=
    probability` (so 0 is never, bar a roll of exactly 0)."""
    chance = _chance(entry)
    return chance is None or _roll(seed, "chance", str(index)) * 100 <= chance


def _roll(seed: int, kind: str, key: str) -> float:
    """A number in [0, 1), the same for the same seed, kind and key."""
    digest = hashlib.blake2b(f"{seed}\0{kind}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / (1 << 53)


def _weight(entry: LoreEntry) -> float:
    """An entry's chance within its group (`group_weight ?? 100`): not a number is the
    default, a negative one 0 (it wins only when no other has any weight). SillyTavern
    reads neither: its editor would save 1 and the value's absolute; its scan adds a
    text to the total as text and lets a negative weight shrink it."""
    value = entry.extension_values.get("group_weight")
    number = None if value is None else js_number(value)
    return DEFAULT_WEIGHT if number is None else max(0.0, number)


def _grouped(
    book: CharacterBook,
    matched: list[int],
    taken: set[int],
    seed: int,
    score: Callable[[int], int],
    work: _Work,
    sticky: Collection[int] = (),
) -> list[int]:
    """`matched` less the entries their inclusion groups leave out, as SillyTavern's
    filterByInclusionGroups does: an entry may be in several groups (`a, b`) and stays
    only if no group leaves it out. In each group of entries matched in this pass: a
    group that an entry taken in an earlier pass belongs to keeps none of them; with
    group scoring (an entry's `use_group_scoring`), the scored entries that match fewer
    keys than the best are left out; a lone entry stays; one with `group_override` is
    the pick, the highest `insertion_order` first; else one is drawn by `group_weight`
    (SillyTavern's order: the highest `insertion_order` first, each taking its weight's
    share of the roll). The draw comes before the pick's own chance, so a group whose
    pick then fails its roll brings nothing in. A group with `sticky` entries among them
    keeps those and only those (filterGroupsByTimedEffects). Past the prompt's
    GROUP_STEPS, an entry's further groups are not read (and a note says so)."""
    groups: dict[str, list[int]] = {}
    # The order SillyTavern's entries have (by `order`, highest first), ties as written.
    for index in sorted(matched, key=lambda i: (-book.entries[i].insertion_order, i)):
        names = _groups(book.entries[index], work)
        if len(names) > work.group_steps:
            names = names[: work.group_steps]
            note = (
                f"Lorebook: entries are in more than {GROUP_STEPS:,} inclusion groups in all; "
                "the rest of their groups were not used."
            )
            if note not in work.notes:
                work.notes.append(note)
        work.group_steps -= len(names)
        for name in names:
            groups.setdefault(name, []).append(index)
    if not groups:
        return matched
    won = {name for i in taken for name in _groups(book.entries[i], work)}
    # What each entry says, read once: an entry can be in thousands of groups.
    scored, overriding, weights = set(), set(), {}
    for index in matched:
        ext = book.entries[index].extension_values
        if _truthy(ext.get("use_group_scoring")):
            scored.add(index)
        if _truthy(ext.get("group_override")):
            overriding.add(index)
        weights[index] = _weight(book.entries[index])
    out: set[int] = set()
    scores: dict[int, int] = {}
    for name, members in groups.items():
        held = [i for i in members if i in sticky]
        if held:
            out.update(i for i in members if i not in sticky)
            continue
        if name in won:
            out.update(members)
            continue
        if len(members) <= 1:
            continue
        if any(i in scored for i in members):  # filterGroupsByScoring
            for i in members:
                if i not in scores:
                    scores[i] = score(i)
            best = max(scores[i] for i in members)
            losers = {i for i in members if i in scored and scores[i] < best}
            out.update(losers)
            members = [i for i in members if i not in losers]
            if len(members) <= 1:
                continue
        # Members are in SillyTavern's order: the first overriding one has the highest.
        winner = next((i for i in members if i in overriding), None)
        if winner is None:
            roll = _roll(seed, "group", name) * sum(weights[i] for i in members)
            winner, total = members[-1], 0.0
            for i in members:
                total += weights[i]
                if roll <= total:
                    winner = i
                    break
        out.update(i for i in members if i != winner)
    return [i for i in matched if i not in out or i in sticky]


def _score(entry: LoreEntry, scan: _Scan, recursion: _Texts, macros: Macros) -> int:
    """SillyTavern's group score (WorldInfoBuffer.getScore): how many of the entry's
    primary keys are found, with its secondary ones found added under AND ANY, and under
    AND ALL when all are found. (Its keys' macros replaced, as when they activate.)"""
    if not entry.keys:
        return 0
    primary = sum(_matches(entry, macros(k), scan, recursion) for k in entry.keys)
    if not entry.secondary_keys:
        return primary
    secondary = sum(_matches(entry, macros(k), scan, recursion) for k in entry.secondary_keys)
    logic = _logic(entry)
    if logic == AND_ANY:
        return primary + secondary
    if logic == AND_ALL and secondary == len(entry.secondary_keys):
        return primary + secondary
    return primary


def _matches(entry: LoreEntry, key: str, scan: _Scan, recursion: _Texts) -> bool:
    key = key.strip()
    if not key:
        return False
    bare = _bare_patterns(entry)
    if bare or is_delimited(key):  # SillyTavern reads `/…/flags` keys as patterns anywhere
        return _regex(entry, key, scan, recursion, bare=bare)
    ext = entry.extension_values
    sensitive = _case_sensitive(entry)
    texts = [*scan.texts, *recursion.texts] if sensitive else [*scan.lowered, *recursion.lowered]
    needle = key if sensitive else key.lower()
    if ext.get("match_whole_words") is True and not any(c.isspace() for c in needle):
        return any(_whole_word(needle, text, scan) for text in texts)
    return any(needle in text for text in texts)


def _whole_word(needle: str, text: str, scan: _Scan | None = None) -> bool:
    """`needle` in `text` with no word character either side, as SillyTavern's
    `(?:^|\\W)key(?:$|\\W)`, a JavaScript pattern without the `u` flag: only ASCII
    letters, digits and `_` are word characters (`魔法` is found in `魔法使い`, `caf` in
    `café`).

    A key of such characters alone is one of the text's words (split once per text and
    scan). Any other is looked for by `str.find`, at most WHOLE_WORD_STEPS places per
    scan: short keys that come up everywhere but never alone (`a` in `abab…`) took
    seconds for a card of many entries. (The pattern itself cannot skip ahead to the
    key: it walked every text in full, 12 s for 2,000 entries over a long history.)"""
    scan = scan or _Scan([], [])
    if _ASCII_WORD.fullmatch(needle):
        words = scan.work.words.get(text)
        if words is None:
            words = scan.work.words[text] = frozenset(_ASCII_WORD.findall(text))
        return needle in words
    start = text.find(needle)
    while start >= 0:
        if scan.work.word_steps <= 0:
            _note(scan, "Lorebook: whole-word keys took too long to look for; the rest skipped.")
            return False
        scan.work.word_steps -= 1
        end = start + len(needle)
        if not (start and _in_word(text[start - 1])) and not (
            end < len(text) and _in_word(text[end])
        ):
            return True
        start = text.find(needle, start + 1)
    return False


_ASCII_WORD = re.compile(r"[0-9A-Za-z_]+")


def _in_word(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


# Extensions SillyTavern writes on every lorebook entry it exports.
_SILLYTAVERN_ENTRY = ("selectiveLogic", "display_index")


def _bare_patterns(entry: LoreEntry) -> bool:
    """Whether keys not written `/…/` are patterns too: V3's `use_regex`, except in the
    entries SillyTavern exports. It sets the flag on every one ("ST keys are always
    regex") but reads only `/…/` keys as patterns, its importer ignoring the flag: there
    `C++` is text, not a pattern matching any "c"."""
    ext = entry.extension_values
    return entry.use_regex and not any(k in ext for k in _SILLYTAVERN_ENTRY)


def _case_sensitive(entry: LoreEntry) -> bool:
    return entry.case_sensitive is True or entry.extension_values.get("case_sensitive") is True


def _regex(entry: LoreEntry, key: str, scan: _Scan, recursion: _Texts, *, bare: bool) -> bool:
    key = key.strip()
    if not key:
        return False
    label = entry.comment or entry.name or (entry.keys[0] if entry.keys else "?")
    try:
        pattern = compile_key(key, not _case_sensitive(entry), not bare)
    except Unsafe as err:
        _note(scan, f"Lorebook entry “{label}”: the key {key[:60]} is not used: {err}.")
        return False
    for text in [*scan.texts, *recursion.texts]:
        cost = pattern.steps(len(text))
        if cost > MAX_STEPS or cost > scan.work.regex_budget:
            _note(scan, f"Lorebook entry “{label}”: the key {key[:60]} could take too long.")
            return False
        if scan.work.searches <= 0:
            _note(
                scan,
                f"Lorebook: more than {MAX_REGEX_SEARCHES:,} regex searches; the rest skipped.",
            )
            return False
        scan.work.regex_budget -= cost
        scan.work.searches -= 1
        if pattern.search(text):
            return True
    return False


def _note(scan: _Scan, text: str) -> None:
    if text not in scan.work.notes:
        scan.work.notes.append(text)


def _within_budget(
    book: CharacterBook,
    active: dict[int, str],
    estimate: Callable[[str], int],
    budget: int | None,
    notes: list[str],
) -> list[int]:
    """The active entries that fit, the most important first: by `priority`, else by
    `insertion_order` (the V3 spec drops the lowest first)."""
    limits = [b for b in (budget, book.token_budget or None) if b is not None]
    left = min(limits) if limits else None

    def importance(i: int) -> tuple[float, int]:
        entry = book.entries[i]
        rank = entry.priority if entry.priority is not None else entry.insertion_order
        return (-rank, i)

    kept = []
    for i in sorted(active, key=importance):
        cost = estimate(active[i])
        if left is not None:
            if cost > left:
                entry = book.entries[i]
                label = entry.comment or entry.name or ", ".join(entry.keys[:3])
                notes.append(f"Lorebook entry “{label[:60]}” left out: over the token budget.")
                continue
            left -= cost
        kept.append(i)
    return kept


# Where an entry goes, by SillyTavern's extensions.position: 0 before the character; 4 among
# the chat messages at extensions.depth as extensions.role; 2 and 3 around the author's
# note, which SillyTavern puts among the messages at depth 4 as system even when it has
# no text (there is none here: the entries alone go there, those of 2 first); 5, 6 (around
# the examples) and 1 after the scenario.
_BEFORE, _AFTER, _AUTHORS_TOP, _AUTHORS_BOTTOM, _AT_DEPTH = 0, 1, 2, 3, 4
_AMONG = (_AUTHORS_TOP, _AUTHORS_BOTTOM, _AT_DEPTH)


def _place(entry: LoreEntry) -> int:
    # Without extensions.position, "before_char" is before and anything else (even
    # nothing) after.
    position = entry.extension_values.get("position")
    if isinstance(position, int) and not isinstance(position, bool):
        return position if position in (_BEFORE, *_AMONG) else _AFTER
    return _BEFORE if entry.position == "before_char" else _AFTER


def _depth_note(entry: LoreEntry, text: str) -> DepthNote | None:
    ext = entry.extension_values
    depth = depth_of(ext.get("depth"))
    return None if depth is None else DepthNote(text, depth, role_of(ext.get("role")))


# V3 decorators this scan reads (_activates); SillyTavern's reader knows no others either.
_READ_DECORATORS = frozenset({"activate", "dont_activate"})
_DECORATOR_NAME = re.compile(r"[a-z_]+")


def not_used(card: Card) -> tuple[str, ...]:
    """What SillyTavern would do with this card that is not done here, one phrase each
    (world-info.js: recursion levels past what RECURSION_PASSES reaches; V3 decorators
    it reads that this scan does not; the card's own regex scripts): the import says so
    rather than the lorebook acting otherwise unsaid."""
    book = card.character_book
    entries = [e for e in (book.entries if book else ()) if e.enabled]
    decorators: dict[str, None] = {}
    # A pass opens one recursion level at most, the second at the first recursion pass:
    # entries waiting past the level RECURSION_PASSES + 1 (of all entries, as the scan
    # counts them) never come in here.
    levels = _levels([_recursion_level(e) for e in (book.entries if book else ())])
    unreached = levels[RECURSION_PASSES + 1 :]
    waits = [_recursion_level(e) for e in entries] if unreached else []
    late = sum(1 for wait in waits if wait is not None and wait >= unreached[0])
    for entry in entries:
        for name in sorted(_decorated(entry.content)[1] - _READ_DECORATORS):
            word = _DECORATOR_NAME.match(name)  # the name alone, as markup cannot read it
            if word:
                decorators[f"`@@{word.group()[:40]}`"] = None
    said = []
    if late:
        said.append(
            f"the delay until recursion {_entries(late)} "
            f"(levels past the {RECURSION_PASSES + 1} lowest)"
        )
    if decorators:
        shown = ", ".join(list(decorators)[:5]) + (" …" if len(decorators) > 5 else "")
        said.append(f"the lorebook decorators {shown}")
    scripts = card.extension_values.get("regex_scripts")
    scripts = scripts if isinstance(scripts, list) else []
    count = sum(1 for s in scripts if isinstance(s, dict) and s.get("disabled") is not True)
    if count:
        said.append(f"its {count} regex script{'s' * (count != 1)}")
    return tuple(said)


def unknown_logic(card: Card) -> int:
    """How many of the card's lorebook entries its keys would bring in but for a
    `selectiveLogic` SillyTavern does not know (_logic): never brought in by their keys
    there, nor here; the import says so, as nothing else would."""
    book = card.character_book
    return sum(
        1
        for e in (book.entries if book else ())
        if e.enabled
        and not e.constant
        and e.selective
        and e.secondary_keys
        and e.keys
        and _logic(e) is None
    )


def _entries(count: int) -> str:
    return "of 1 lorebook entry" if count == 1 else f"of {count:,} lorebook entries"
