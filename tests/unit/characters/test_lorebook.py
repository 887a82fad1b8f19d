"""Lorebook key matching on its own (the whole prompt's use of it: test_prompt.py)."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.characters import build_prompt
from bot.characters.card import card_from_object
from bot.characters.lorebook import _decorated, _whole_word, not_used
from bot.characters.model import Card
from bot.types import ChatMessage, Role
from tests.unit.characters.samples import v2

# Word and non-word characters, ASCII and not, so both sides of every boundary come up.
_CHARS = st.sampled_from([*"ab_1 .+-\n", "é", "ß", "٣", "漢", "😀", "\u0301"])


@given(st.text(_CHARS, min_size=1, max_size=4), st.text(_CHARS, max_size=40))
def test_whole_word_is_sillytaverns_pattern(needle: str, text: str) -> None:
    """SillyTavern's pattern is JavaScript's without the `u` flag: `\\W` is any
    character but ASCII letters, digits and `_` (Python's re.ASCII)."""
    pattern = re.compile(rf"(?:^|\W){re.escape(needle)}(?:$|\W)", re.ASCII)
    assert _whole_word(needle, text) == bool(pattern.search(text))


def test_whole_words_next_to_letters_outside_ascii_as_sillytavern_finds_them() -> None:
    assert _whole_word("魔法", "魔法使いの弟子")  # no spaces in Japanese: found, as in ST
    assert _whole_word("caf", "un café")  # é is no word character to JavaScript's \W
    assert not _whole_word("caf", "cafe")


def test_whole_word_finds_a_later_standalone_one() -> None:
    assert _whole_word("cat", "concatenated cats, then a cat.")
    assert not _whole_word("cat", "concatenated cats")
    assert _whole_word("C++", "I write C++ daily")
    assert not _whole_word("C++", "xC++")


def _entry(content: str, **extensions: object) -> dict[str, object]:
    return {"keys": ["k"], "content": content, "enabled": True, "extensions": extensions}


def test_what_sillytavern_does_with_a_card_that_is_not_done_here_is_named() -> None:
    """Features probe: a card whose lorebook entries have V3 decorators, or that carries
    regex scripts, was imported without a word: here the scripts never run. An entry's
    chance, its inclusion groups, its delay, sticky and cooldown are done here, so not
    named."""
    card = v2()
    assert not_used(card_from_object(card)) == ()  # SillyTavern's own export: 100%
    data = card["data"]
    data["extensions"]["regex_scripts"] = [
        {"scriptName": "a", "findRegex": "/x/g"},
        {"scriptName": "b", "disabled": True},
    ]
    data["character_book"]["entries"] = [
        _entry("chance", probability=30, useProbability=True),
        _entry("chance, by default", probability="50"),  # useProbability ?? true
        _entry("not used by chance", probability=30, useProbability=False),
        _entry("sure", probability=None),  # null ?? 100
        _entry("rain", group="weather, mood"),
        _entry("sun", group="weather"),
        _entry("alone", group="lonely"),  # a group of one picks nothing
        _entry("stays", sticky=2, cooldown=0),
        _entry("waits", cooldown=3),
        _entry("delayed", delay=3),  # done here
        _entry("@@depth 3\n@@activate\n@@role<b>x\nText."),
        {**_entry("off", probability=1, sticky=3), "enabled": False},
    ]
    assert not_used(card_from_object(card)) == (
        "the lorebook decorators `@@depth`, `@@role`",
        "its 1 regex script",
    )


def test_an_entrys_decorator_lines_are_read_in_linear_time() -> None:
    """Review: an entry's leading decorator lines (`@@depth 3`) were each taken off the
    front of its list of lines, moving all the lines after it: an entry of 100,000
    characters of `@@x` lines took 50 ms, read again at each pass of each prompt (a
    2 MB card of 16 such, scanned recursively, 2.8 s a prompt, built twice a turn).
    A million lines here: a minute without the rule (the lines counted, not popped)."""
    assert _decorated("@@depth 3\n" + "@@x\n" * 1_000_000 + "Text.") == ("Text.", {"depth", "x"})
    assert _decorated("@@activate\n\n@@depth 3\nText.") == ("@@depth 3\nText.", {"activate"})


# -- chance, inclusion groups, delay (SillyTavern's world-info.js checkWorldInfo) ------------

TRIALS = 2_000


def _book(*entries: dict[str, Any], **book: Any) -> Card:
    card = v2()
    base = {"extensions": {}, "enabled": True, "insertion_order": 10}
    card["data"]["character_book"] = {
        "extensions": {},
        "entries": [{**base, **e} for e in entries],
        **book,
    }
    return card_from_object(card)


def _lore(
    card: Card,
    *texts: str,
    rng: random.Random | None = None,
    chat_length: int | None = None,
) -> list[str]:
    history = [ChatMessage(Role.USER, t, "Bob") for t in texts or ("x",)]
    prompt = build_prompt(
        card,
        history,
        user="Bob",
        estimate=lambda t: len(t) // 4 + 1,
        lore_rng=rng or random.Random(0),
        chat_length=chat_length,
    )
    return [*prompt.lore.before, *prompt.lore.after]


def _counts(card: Card, *texts: str, seed: int = 1, trials: int = TRIALS) -> Counter[str]:
    """How often each entry comes in over `trials` prompts, one random source for all."""
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for _ in range(trials):
        counts.update(_lore(card, *texts, rng=rng))
    return counts


def _chance(content: str, **ext: Any) -> dict[str, Any]:
    return {"keys": ["x"], "content": content, "extensions": ext}


def test_an_entrys_chance_is_rolled_at_each_prompt() -> None:
    """Features probe: an entry SillyTavern uses one time in four (probability 25) was
    used at every prompt here. A failed roll is tried again at the next prompt (its
    failedProbabilityChecks last one scan)."""
    counts = _counts(_book(_chance("Q", probability=25)))
    assert 0.20 * TRIALS <= counts["Q"] <= 0.30 * TRIALS, counts
    counts = _counts(_book(_chance("H", probability=50, useProbability=True)), seed=2)
    assert 0.45 * TRIALS <= counts["H"] <= 0.55 * TRIALS, counts


def test_chances_that_are_certain_are_not_rolled() -> None:
    card = _book(
        _chance("always", probability=100),
        _chance("never", probability=0),
        _chance("not rolled", probability=0, useProbability=False),
        _chance("not rolled either", probability=0, useProbability=0),  # falsy to JS
        _chance("unset"),
        _chance("null", probability=None),  # probability ?? 100
    )
    counts = _counts(card)
    assert counts == {
        "always": TRIALS,
        "not rolled": TRIALS,
        "not rolled either": TRIALS,
        "unset": TRIALS,
        "null": TRIALS,
    }


@pytest.mark.parametrize(
    ("probability", "low", "high"),
    [
        ("abc", 1.0, 1.0),  # not a number: SillyTavern's editor keeps the default, 100
        (-5, 0.0, 0.0),  # kept within 0–100
        (150, 1.0, 1.0),
        (1e300, 1.0, 1.0),
        (math.nan, 1.0, 1.0),
        ([], 1.0, 1.0),
        ({"a": 1}, 1.0, 1.0),
        (True, 0.0, 0.03),  # Number(true) is 1
        ("25", 0.20, 0.30),  # Number("25")
        (" 75 ", 0.70, 0.80),
        ("", 0.0, 0.0),  # Number("") is 0
    ],
)
def test_a_chance_that_is_not_a_sensible_number_is_read_as_sillytavern_reads_it(
    probability: object, low: float, high: float
) -> None:
    counts = _counts(_book(_chance("E", probability=probability)))
    assert low * TRIALS <= counts["E"] <= high * TRIALS, counts


def test_an_entry_that_fails_its_roll_is_not_tried_again_by_the_scans_recursion() -> None:
    """SillyTavern skips an entry that failed its roll for the rest of the scan: here
    `castle` (50%) is brought up again by the constant entry's text, and rolled once."""
    card = _book(
        {"keys": ["castle"], "content": "C", "extensions": {"probability": 50}},
        {"keys": ["never"], "constant": True, "content": "the castle stands."},
        recursive_scanning=True,
    )
    counts = _counts(card, "a castle")
    assert 0.45 * TRIALS <= counts["C"] <= 0.55 * TRIALS, counts


def test_an_entry_that_failed_its_roll_is_no_member_of_its_group_in_later_passes() -> None:
    """Review: the test above cannot fail without the skip, since an entry rolls alike in
    every pass of one scan; it shows in a group. `tower` comes in by recursion after
    `castle` (its group's only match then) failed its roll: in SillyTavern `castle` is
    not tried again, so `tower` stands alone and is used each time `castle` failed (half
    the prompts). Were `castle` tried again it would be drawn against `tower` and fail
    again: `tower` one prompt in four."""
    card = _book(
        {"keys": ["castle"], "content": "C", "extensions": {"probability": 50, "group": "g"}},
        {"keys": ["tower"], "content": "T", "extensions": {"group": "g"}},
        {"keys": ["never"], "constant": True, "content": "the tower stands."},
        recursive_scanning=True,
    )
    counts = _counts(card, "a castle")
    assert 0.45 * TRIALS <= counts["C"] <= 0.55 * TRIALS, counts
    assert counts["C"] + counts["T"] == TRIALS, counts


def _member(content: str, group: object = "g", order: float = 10, **ext: Any) -> dict[str, Any]:
    return {
        "keys": ["x"],
        "content": content,
        "insertion_order": order,
        "extensions": {"group": group, **ext},
    }


def test_one_entry_of_an_inclusion_group_is_used_drawn_by_weight() -> None:
    """Features probe: SillyTavern uses one entry of an inclusion group, drawn by
    group_weight (100 by default); here every entry of the group came in."""
    card = _book(_member("A"), _member("B"), _member("C", group_weight=200), _member("other", "h"))
    rng = random.Random(3)
    counts: Counter[str] = Counter()
    for _ in range(TRIALS):
        lore = _lore(card, rng=rng)
        assert len([t for t in lore if t in "ABC"]) == 1, lore
        assert "other" in lore  # a group of one keeps its entry
        counts.update(lore)
    assert 0.20 * TRIALS <= counts["A"] <= 0.30 * TRIALS, counts
    assert 0.20 * TRIALS <= counts["B"] <= 0.30 * TRIALS, counts
    assert 0.45 * TRIALS <= counts["C"] <= 0.55 * TRIALS, counts


def test_group_override_picks_the_highest_insertion_order() -> None:
    card = _book(
        _member("low", order=1, group_override=True),
        _member("high", order=9, group_override=True),
        _member("plain", order=50),
        _member("heavy", order=5, group_weight=1_000_000),
    )
    assert _counts(card) == {"high": TRIALS}
    # Of the same order, the first written.
    card = _book(_member("first", group_override=True), _member("second", group_override=True))
    assert _counts(card) == {"first": TRIALS}


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((0, 100), {"B": TRIALS}),
        ((100, 0), {"A": TRIALS}),
        ((-50, 100), {"B": TRIALS}),  # a negative weight is none
        ((100, -1e300), {"A": TRIALS}),
        ((0, 0), {"A": TRIALS}),  # nothing to draw by: the first in SillyTavern's order
    ],
)
def test_a_weight_of_zero_never_wins_over_a_positive_one(
    weights: tuple[float, float], expected: dict[str, int]
) -> None:
    card = _book(_member("A", group_weight=weights[0]), _member("B", group_weight=weights[1]))
    assert _counts(card) == expected


@pytest.mark.parametrize("weight", ["abc", None, [], math.nan, "100"])
def test_a_weight_that_is_no_number_is_the_default(weight: object) -> None:
    card = _book(_member("A", group_weight=weight), _member("B"))
    counts = _counts(card)
    assert 0.45 * TRIALS <= counts["A"] <= 0.55 * TRIALS, counts
    assert counts["A"] + counts["B"] == TRIALS


def test_groups_are_split_on_commas_and_an_entry_stays_only_if_each_of_its_groups_keeps_it() -> (
    None
):
    card = _book(
        _member("both", "g, h", group_override=True),
        _member("g only", "g"),
        _member("h only", "h,,"),
        _member("elsewhere", "i"),
    )
    assert sorted(_counts(card)) == ["both", "elsewhere"]
    # Not text (SillyTavern's split would fail): no group.
    assert sorted(_counts(_book(_member("A", 5), _member("B", 5)))) == ["A", "B"]
    assert sorted(_counts(_book(_member("A", ""), _member("B", "")))) == ["A", "B"]


def test_the_pick_then_rolls_its_own_chance() -> None:
    """The group is drawn before the chances are rolled: a pick that fails its roll
    leaves the group with nothing (SillyTavern's order)."""
    card = _book(_member("A", group_override=True, probability=0), _member("B"))
    assert _counts(card) == {}


def test_an_entry_with_no_content_can_be_a_groups_pick() -> None:
    """An empty entry in a group makes "nothing" one of its outcomes, as in SillyTavern."""
    counts = _counts(_book(_member(""), _member("B")))
    assert 0.45 * TRIALS <= counts["B"] <= 0.55 * TRIALS, counts


def test_a_group_used_in_an_earlier_pass_takes_no_more_entries() -> None:
    card = _book(
        _member("The gate is shut.", "door"),
        {"keys": ["gate"], "content": "G", "extensions": {"group": "door"}},
        {"keys": ["never"], "content": "G2", "extensions": {"group": "door"}},
        recursive_scanning=True,
    )
    assert _counts(card) == {"The gate is shut.": TRIALS}


def test_group_scoring_keeps_the_entries_that_match_the_most_keys() -> None:
    scored = {"use_group_scoring": True}
    card = _book(
        {"keys": ["dragon", "fire"], "content": "both", "extensions": {"group": "g", **scored}},
        {"keys": ["dragon"], "content": "one", "extensions": {"group": "g", **scored}},
        {
            "keys": ["dragon"],
            "secondary_keys": ["fire", "smoke"],
            "selective": True,
            "content": "one and a secondary",
            "extensions": {"group": "g", **scored},
        },
    )
    counts = _counts(card, "the dragon breathes fire")
    assert sorted(counts) == ["both", "one and a secondary"]  # two keys each
    assert counts.total() == TRIALS
    counts = _counts(card, "the dragon sleeps")
    assert sorted(counts) == ["both", "one"] and counts.total() == TRIALS
    # An entry not scored is drawn whatever its score.
    card = _book(
        {"keys": ["dragon", "fire"], "content": "both", "extensions": {"group": "g", **scored}},
        {"keys": ["dragon"], "content": "one", "extensions": {"group": "g"}},
    )
    assert sorted(_counts(card, "the dragon breathes fire")) == ["both", "one"]


def test_huge_and_many_group_names_are_read_whole() -> None:
    many = ", ".join(f"g{i}" for i in range(10_000))
    card = _book(_member("A", many), _member("C", "g9999"))
    counts = _counts(card, trials=200)
    assert counts.total() == 200 and 70 <= counts["A"] <= 130, counts
    card = _book(_member("A", many), _member("C", "g9999"), _member("D", many + ", d"))
    for _ in range(20):
        lore = _lore(card)
        # Each shared group draws on its own (as in SillyTavern): A and D, together in
        # 10,000 of them, each lose one or another; C can lose only g9999.
        assert lore in (["C"], []) or len(lore) == 1, lore
    long_name = "n" * 200_000
    card = _book(_member("A", long_name), _member("B", long_name + "x"), _member("C", long_name))
    lore = _lore(card)
    assert "B" in lore and len(lore) == 2


def test_a_cards_group_names_are_not_kept_once_its_prompt_is_built() -> None:
    """Review: the names each entry's `group` splits into were cached for the process
    (4,096 texts): a card's 1 MB group text kept ~10 MB after its prompt was built, and
    after the card was gone; a 2 MB card can hold two, and each card imported and
    chatted with kept as much again. They are read once a prompt now, not kept: a card
    with its group text keeps no more than one with the same text under another name."""
    import gc
    import tracemalloc

    many = ",".join(f"g{i}" for i in range(150_000))  # 1 MB of names

    def kept(name: str) -> int:
        before = tracemalloc.get_traced_memory()[0]
        card = _book({**_member("", "g0"), "extensions": {name: many + name}}, _member("B", "g0"))
        assert _lore(card) in (["B"], [])
        del card
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before

    tracemalloc.start()
    try:
        plain, grouped = kept("note"), kept("group")
    finally:
        tracemalloc.stop()
    assert grouped - plain < 1_000_000, f"{plain:,} bytes kept, {grouped:,} with the groups"


def test_the_groups_one_prompt_sorts_out_are_bounded() -> None:
    """A card of entries each in 10,000 groups (60 KB apiece) would take seconds a
    prompt to sort out: past GROUP_STEPS places in groups, the rest are not read (those
    entries are used as if in no group), and a note says so."""
    many = ", ".join(f"g{i}" for i in range(10_000))
    card = _book(*[_member(f"E{n}", many) for n in range(30)], _member("F", "g0, f"))
    prompt = build_prompt(
        card, [ChatMessage(Role.USER, "x")], user="B", estimate=len, lore_rng=random.Random(0)
    )
    assert prompt.lore.notes == (
        "Lorebook: entries are in more than 100,000 inclusion groups in all; the rest of "
        "their groups were not used.",
    )
    used = [e.content for e in prompt.lore.entries]
    # The first ten are each in 10,000 groups, each group drawn alone: one at most stays.
    assert len(used) in (21, 22), used
    assert used[-21:] == [*(f"E{n}" for n in range(10, 30)), "F"]


def test_a_delayed_entry_waits_for_that_many_messages_in_the_chat() -> None:
    """Features probe: SillyTavern holds an entry with `delay: 3` back until the chat
    has 3 messages (constant ones too); here it came in from the first."""
    card = _book(
        {"keys": ["x"], "content": "D", "extensions": {"delay": 3}},
        {"keys": ["y"], "constant": True, "content": "K", "extensions": {"delay": "3"}},
    )
    assert _lore(card, "x") == []
    assert _lore(card, "x", "x") == []
    assert _lore(card, "x", "x", "x") == ["D", "K"]
    # The whole chat counts, not only what the prompt is given of it.
    assert _lore(card, "x", chat_length=3) == ["D", "K"]
    assert _lore(card, "x", "x", "x", "x", chat_length=2) == []


@pytest.mark.parametrize("delay", ["abc", -5, 0, None, [], math.nan, ""])
def test_a_delay_that_is_not_a_positive_number_holds_nothing_back(delay: object) -> None:
    assert _lore(_book(_chance("D", delay=delay)), "x") == ["D"]


def _waits(content: str, level: object, key: str = "dragon", **ext: Any) -> dict[str, Any]:
    return {
        "keys": [key],
        "content": content,
        "extensions": {"delay_until_recursion": level, **ext},
    }


def test_an_entry_delayed_until_recursion_waits_for_another_entrys_text() -> None:
    """Features probe: SillyTavern's "delay until recursion" keeps an entry out of the
    scan's first pass (constant ones too); it may come in only on a recursion pass, one
    that another entry's text brings about (it is then found in that text or the chat).
    Here it came in at the first pass, its key in the chat."""
    card = _book(
        {"keys": ["dragon"], "content": "A dragon guards the castle."},
        _waits("Castle", True, key="castle"),
        _waits("Lair", True),  # its key in the chat: in on the recursion pass
        {**_waits("Always", 1), "constant": True},
        recursive_scanning=True,
    )
    assert _lore(card, "a dragon") == ["A dragon guards the castle.", "Castle", "Lair", "Always"]
    # Nothing else comes in: no recursion pass, so none of them, the keys in the chat.
    assert _lore(card, "the castle and its lair") == []


def test_an_entry_waits_until_the_recursion_reaches_its_level() -> None:
    """A number is a level: the entry comes in on recursion passes from that level on.
    The scan goes on at a level while passes bring text in, then at the next level up
    where entries wait (SillyTavern's availableRecursionDelayLevels). `Late` (level 2)
    comes in after `Early` (level 1), so their group is already used: without levels
    both match in one pass, and `Late` overrides."""
    card = _book(
        {"keys": ["dragon"], "content": "Dragon."},
        _waits("Early", True, group="g"),
        _waits("Late", "2", group="g", group_override=True),
        _waits("Tower", 2, key="Early"),  # found in `Early`'s text, at level 2
        recursive_scanning=True,
    )
    assert _lore(card, "a dragon") == ["Dragon.", "Early", "Tower"]


def test_recursion_levels_need_a_pass_each() -> None:
    """Each level opens with a pass of its own, within RECURSION_PASSES (SillyTavern's
    passes are not bounded by default): entries of a fifth level never come in here, and
    the import names them."""
    levels = [_waits(f"L{n}", n) for n in (1, 2, 3, 4, 5)]
    card = _book(*levels, recursive_scanning=True)
    # Nothing at the first pass, so the second level opens (the first with it); a pass
    # more, its text found, then the third.
    assert _lore(card, "a dragon") == ["L1", "L2", "L3"]
    named = ("the delay until recursion of 1 lorebook entry (levels past the 4 lowest)",)
    assert not_used(card) == named
    # Not recursive: no pass for text found, a level a pass.
    assert _lore(_book(*levels), "a dragon") == ["L1", "L2", "L3", "L4"]
    assert not_used(_book(*levels[:4])) == ()


def test_without_recursive_scanning_a_delayed_entry_needs_a_level_above_it() -> None:
    """As SillyTavern: without recursive scanning there is no recursion pass, and
    entries delayed until recursion never come in; unless entries wait at more than one
    level: its scan then goes on to the next level (entries up to it in), as it does."""
    trigger = {"keys": ["dragon"], "content": "A castle."}
    card = _book(trigger, _waits("Lair", True), _waits("Keep", True, key="castle"))
    assert _lore(card, "a dragon") == ["A castle."]
    card = _book(
        trigger,
        _waits("Lair", True),
        _waits("Keep", 2, key="castle", exclude_recursion=True),  # read only when recursive
        _waits("Hall", 3, key="Keep"),
    )
    assert _lore(card, "a dragon") == ["A castle.", "Lair", "Keep", "Hall"]


@pytest.mark.parametrize(
    ("level", "waits"),
    [
        (0, False),
        ("", False),
        (None, False),
        (False, False),
        (math.nan, False),
        ("abc", True),  # truthy; NaN is above no level: any recursion pass
        ("0", True),  # a non-empty text is truthy: level 0
        (-5, True),
        ("2", True),
        (1.5, True),
        (1e300, True),
        (math.inf, True),
        (10**400, True),
        ([], True),
        ({"a": 1}, True),
    ],
)
def test_a_recursion_level_that_is_no_sensible_number_is_read_as_sillytavern_reads_it(
    level: object, waits: bool
) -> None:
    alone = _book(_chance("D", delay_until_recursion=level), recursive_scanning=True)
    assert _lore(alone, "x") == ([] if waits else ["D"])
    card = _book(
        _chance("D", delay_until_recursion=level),
        {"keys": ["x"], "content": "T", "insertion_order": 20},
        recursive_scanning=True,
    )
    assert _lore(card, "x") == ["D", "T"]
    assert not_used(card) == ()


@pytest.mark.parametrize("field", ["delay", "probability", "sticky"])
def test_a_number_too_big_for_a_float_is_read_as_infinity_is(field: object) -> None:
    """An entry's `delay` (or chance, or sticky) of a JSON integer of 400 digits raised
    OverflowError at every prompt (float() of it): read as 1e400 is, Infinity to
    JavaScript, which these readings take as no number."""
    card = _book(_chance("D", **{field: 10**400}), _chance("E", **{field: 1e400}))
    assert _lore(card, "x") == ["D", "E"]
    assert not_used(card) == ()


def test_prompts_given_the_same_seed_roll_the_same_whatever_else_they_match() -> None:
    """A turn's prompt is built twice (a draft over the whole history, to count the
    card's part; then the one sent, over what fits): seeded alike, they bring in the same
    entries, or the one sent could be longer than was counted."""
    entries = [_chance(f"E{i}", probability=50) for i in range(20)]
    card = _book(
        *entries,
        _member("A"),
        _member("B"),
        {"keys": ["old"], "content": "O", "extensions": {"probability": 50, "scan_depth": 50}},
    )
    for seed in range(20):
        whole = _lore(card, "old", *["…"] * 10, "x", rng=random.Random(seed))
        sent = _lore(card, "x", rng=random.Random(seed), chat_length=12)
        assert [t for t in whole if t != "O"] == sent
