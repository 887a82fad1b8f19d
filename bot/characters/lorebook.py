"""Which lorebook entries the recent messages bring into the prompt, within a token budget."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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
# SillyTavern's selectiveLogic (extensions.selectiveLogic): how secondary keys combine.
AND_ANY, NOT_ALL, NOT_ANY, AND_ALL = 0, 1, 2, 3
_DECORATOR = re.compile(r"@@@?[A-Za-z_]+[^\n]*")


@dataclass(frozen=True, slots=True)
class LoreHits:
    """Inserted entries' texts by position (insertion order), and what was left out why."""

    before: tuple[str, ...] = ()  # before the description ("before_char")
    after: tuple[str, ...] = ()  # after the scenario ("after_char" and the rest)
    at_depth: tuple[DepthNote, ...] = ()  # among the chat messages (SillyTavern's @D)
    entries: tuple[LoreEntry, ...] = ()
    notes: tuple[str, ...] = ()  # regex keys not used, entries over the budget


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
    notes: list[str] = field(default_factory=list)
    words: dict[str, frozenset[str]] = field(default_factory=dict)  # a text → its words
    lowered: dict[str, str] = field(default_factory=dict)  # a text → lower-cased

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


def scan(
    book: CharacterBook | None,
    messages: Sequence[str],
    *,
    macros: Macros,
    estimate: Callable[[str], int],
    budget: int | None = None,
) -> LoreHits:
    """The entries the last `scan_depth` of `messages` (oldest first) bring in, with
    constant and recursively found ones; the most important that fit the budgets."""
    if book is None or not book.entries:
        return LoreHits()
    depth = DEFAULT_SCAN_DEPTH if book.scan_depth is None else book.scan_depth
    windows: dict[int, _Scan] = {}
    work = _Work()

    def window(entry: LoreEntry) -> _Scan:
        own = entry.extension_values.get("scan_depth")
        size = own if isinstance(own, int) and not isinstance(own, bool) else depth
        size = max(0, min(size, MAX_SCAN_DEPTH))
        if size not in windows:
            texts = _newest(messages[-size:] if size else [], MAX_SCAN_CHARS)
            windows[size] = _Scan(texts, [work.lower(t) for t in texts], work)
        return windows[size]

    active: dict[int, str] = {}
    recursion = _Texts()
    for step in range(1 + (RECURSION_PASSES if book.recursive_scanning else 0)):
        found: list[str] = []  # joins the scanned text after this pass, not during it
        for index, entry in enumerate(book.entries):
            if index in active:
                continue
            ext = entry.extension_values
            if step and ext.get("exclude_recursion") is True:
                continue
            content, decorators = _decorated(entry.content)
            if not content or not _activates(entry, decorators, window(entry), recursion, macros):
                continue
            active[index] = macros(content)
            if ext.get("prevent_recursion") is not True:
                found.append(content)
        if not found:
            break
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
    return LoreHits(before, after, deep, entries, tuple(notes))


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
    while lines and _DECORATOR.fullmatch(lines[0].strip()):
        names.add(lines.pop(0).strip().lstrip("@").split(" ", 1)[0].lower())
    return "\n".join(lines).strip(), names


def _activates(
    entry: LoreEntry, decorators: set[str], scan: _Scan, recursion: _Texts, macros: Macros
) -> bool:
    if not entry.enabled:
        return False
    if "activate" in decorators:
        return True
    if "dont_activate" in decorators:
        return False
    if entry.constant:
        return True
    if not any(_matches(entry, macros(k), scan, recursion) for k in entry.keys):
        return False
    if not entry.selective or not entry.secondary_keys:
        return True
    hits = [_matches(entry, macros(k), scan, recursion) for k in entry.secondary_keys]
    logic = entry.extension_values.get("selectiveLogic", AND_ANY)
    if logic == NOT_ALL:
        return not all(hits)
    if logic == NOT_ANY:
        return not any(hits)
    if logic == AND_ALL:
        return all(hits)
    return any(hits)


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
    (world-info.js: an entry's chance, inclusion groups, timed effects; the card's own
    regex scripts): the import says so rather than the lorebook acting otherwise unsaid."""
    book = card.character_book
    entries = [e for e in (book.entries if book else ()) if e.enabled]
    chance = timed = 0
    groups: dict[str, int] = {}
    decorators: dict[str, None] = {}
    for entry in entries:
        ext = entry.extension_values
        # As convertCharacterBook reads them: useProbability ?? true, probability ?? 100,
        # then `!useProbability || probability === 100` is used every time.
        uses = ext.get("useProbability")
        probability = js_number(100 if ext.get("probability") is None else ext["probability"])
        if (uses is None or bool(uses)) and probability is not None and probability < 100:
            chance += 1
        if any((js_number(ext.get(k)) or 0) > 0 for k in ("sticky", "cooldown", "delay")):
            timed += 1
        group = ext.get("group")
        if isinstance(group, str):
            for name in {g for g in re.split(r",\s*", group) if g}:
                groups[name] = groups.get(name, 0) + 1
        for name in sorted(_decorated(entry.content)[1] - _READ_DECORATORS):
            word = _DECORATOR_NAME.match(name)  # the name alone, as markup cannot read it
            if word:
                decorators[f"`@@{word.group()[:40]}`"] = None
    said = []
    if chance:
        said.append(f"the chance {_entries(chance)} to be used (here always used when matched)")
    shared = sum(1 for count in groups.values() if count > 1)
    if shared:
        groups_said = f"{shared} inclusion group{'s' * (shared != 1)}"
        said.append(f"{groups_said} (here every entry of a group that matches is used)")
    if timed:
        said.append(f"the sticky, cooldown or delay {_entries(timed)}")
    if decorators:
        shown = ", ".join(list(decorators)[:5]) + (" …" if len(decorators) > 5 else "")
        said.append(f"the lorebook decorators {shown}")
    scripts = card.extension_values.get("regex_scripts")
    scripts = scripts if isinstance(scripts, list) else []
    count = sum(1 for s in scripts if isinstance(s, dict) and s.get("disabled") is not True)
    if count:
        said.append(f"its {count} regex script{'s' * (count != 1)}")
    return tuple(said)


def _entries(count: int) -> str:
    return "of 1 lorebook entry" if count == 1 else f"of {count:,} lorebook entries"
