"""Which buttons an answer carries and how a custom id reads back: pure, no client."""

from __future__ import annotations

import re

import pytest

from bot.core import TurnResult
from bot.frontends.discord.buttons import (
    TEMPLATE,
    ButtonSpec,
    PageFacts,
    Press,
    answer_buttons,
    buttons_after,
    earlier_pages,
    invocation,
    may_stop,
    parse_custom_id,
    press_for,
    streaming_buttons,
)


@pytest.mark.parametrize("press", list(Press))
def test_custom_ids_read_back_and_fit_discord(press: Press) -> None:
    spec = ButtonSpec(press, 2**63 - 1)
    assert len(spec.custom_id) <= 100  # Discord's limit
    assert re.fullmatch(TEMPLATE, spec.custom_id)
    assert parse_custom_id(spec.custom_id) == (press, 2**63 - 1)


@pytest.mark.parametrize("custom_id", ["cc:regen:", "cc:nope:1", "secret:key", "cc:regen:1:2", ""])
def test_foreign_ids_are_not_ours(custom_id: str) -> None:
    assert parse_custom_id(custom_id) is None


def test_one_answer_gets_regenerate_and_continue() -> None:
    assert [(s.press, s.target) for s in answer_buttons(7)] == [
        (Press.REGENERATE, 7),
        (Press.CONTINUE, 7),
    ]


def test_alternatives_get_swipes_with_the_count_and_the_edges_disabled() -> None:
    specs = answer_buttons(9, 1, 3)
    assert [(s.press, s.label, s.disabled) for s in specs[2:]] == [
        (Press.PREVIOUS, "", True),
        (Press.COUNT, "1/3", True),
        (Press.NEXT, "", False),
    ]
    last = answer_buttons(9, 3, 3)
    assert [s.disabled for s in last[2:]] == [False, True, True]
    assert len({s.custom_id for s in specs}) == len(specs)  # unique per message


def test_how_the_turn_ended_decides_the_buttons() -> None:
    answered = TurnResult("hi", None, True, answer_id=5, alternative=(2, 2), question_id=4)
    assert [s.press for s in buttons_after(answered)] == [
        Press.REGENERATE,
        Press.CONTINUE,
        Press.PREVIOUS,
        Press.COUNT,
        Press.NEXT,
    ]
    stopped = TurnResult("half", "Stopped.", True, answer_id=5, question_id=4)
    assert [s.press for s in buttons_after(stopped)] == [Press.REGENERATE, Press.CONTINUE]
    failed = TurnResult("", "the model is overloaded", True, question_id=4)
    assert [(s.press, s.target) for s in buttons_after(failed)] == [(Press.RETRY, 4)]
    notice = TurnResult("Ask me something with your message.", None, False)
    assert notice.notice and buttons_after(notice) == []


def test_presses_run_the_table_commands_and_the_count_runs_nothing() -> None:
    assert invocation(Press.NEXT) is not None
    assert invocation(Press.NEXT).path == ("swipe",)  # type: ignore[union-attr]
    assert dict(invocation(Press.PREVIOUS).raw) == {"direction": "prev"}  # type: ignore[union-attr]
    assert invocation(Press.COUNT) is None


def test_stop_is_for_the_asker_or_an_admin() -> None:
    [stop] = streaming_buttons(42)
    assert stop.press is Press.STOP and stop.target == 42
    assert may_stop("42", 42, admin=False)
    assert not may_stop("43", 42, admin=False)
    assert may_stop("43", 42, admin=True)


def _page(
    by_bot: bool = True, buttons: bool = False, reply: bool = False, command: bool = False
) -> PageFacts:
    return PageFacts(by_bot, buttons, reply, command)


def test_the_earlier_pages_of_a_long_answer_reach_back_to_its_first() -> None:
    # Newest first: two plain pages, then the first page replying to the question.
    assert earlier_pages([_page(), _page(), _page(reply=True), _page(buttons=True)]) == 3
    # Never into another answer, someone's message or a slash command's reply.
    assert earlier_pages([_page(), _page(buttons=True), _page()]) == 1
    assert earlier_pages([_page(by_bot=False), _page(reply=True)]) == 0
    assert earlier_pages([_page(command=True), _page(reply=True)]) == 0
    assert earlier_pages([]) == 0


def test_a_typed_turn_control_is_the_button_it_matches() -> None:
    assert press_for(("regenerate",), {}) is Press.REGENERATE
    assert press_for(("continue",), {}) is Press.CONTINUE
    assert press_for(("retry",), {}) is Press.RETRY
    assert press_for(("swipe",), {"direction": "prev"}) is Press.PREVIOUS
    assert press_for(("swipe",), {"direction": "next"}) is Press.NEXT
    # Stop is never run in place; a wrong direction is left to the command to refuse.
    assert press_for(("stop",), {}) is None
    assert press_for(("swipe",), {"direction": "previous"}) is None
    assert press_for(("model",), {}) is None
