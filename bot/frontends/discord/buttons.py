"""Which buttons an answer carries and what a pressed one means: pure, no discord.py.

A button's custom id names its action and the stored row it acts on, so a press is
understood without any memory of the message (it works after a restart):
`cc:regen:<answer row>`, `cc:retry:<question row>`, `cc:stop:<asker's user id>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.commands import Invocation
from bot.core import TurnResult


class Press(StrEnum):
    REGENERATE = "regen"
    CONTINUE = "cont"
    PREVIOUS = "prev"
    COUNT = "count"  # the disabled "2/3" between ◀ and ▶
    NEXT = "next"
    RETRY = "retry"
    STOP = "stop"


TEMPLATE = r"cc:(?P<press>regen|cont|prev|count|next|retry|stop):(?P<target>[0-9]{1,20})"
_PATTERN = re.compile(TEMPLATE)

# What each press runs: the same command table entries the slash commands use.
_INVOCATIONS: dict[Press, Invocation] = {
    Press.REGENERATE: Invocation(("regenerate",), {}),
    Press.CONTINUE: Invocation(("continue",), {}),
    Press.PREVIOUS: Invocation(("swipe",), {"direction": "prev"}),
    Press.NEXT: Invocation(("swipe",), {"direction": "next"}),
    Press.RETRY: Invocation(("retry",), {}),
    Press.STOP: Invocation(("stop",), {}),
}


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    press: Press
    target: int  # a stored row id, or for stop the asker's user id
    label: str = ""
    emoji: str = ""
    disabled: bool = False
    danger: bool = False

    @property
    def custom_id(self) -> str:
        return f"cc:{self.press.value}:{self.target}"


def parse_custom_id(custom_id: str) -> tuple[Press, int] | None:
    """The press and its target, or None for an id that is not one of ours."""
    match = _PATTERN.fullmatch(custom_id)
    if match is None:
        return None
    return Press(match["press"]), int(match["target"])


def press_for(path: tuple[str, ...], raw: dict[str, Any]) -> Press | None:
    """The button a typed turn control is (/swipe by its direction); None for /stop and
    for a value no button has (the command then says what is wrong)."""
    for press, inv in _INVOCATIONS.items():
        same = inv.path == path and all(raw.get(k) == v for k, v in inv.raw.items())
        if same and press is not Press.STOP:
            return press
    return None


def invocation(press: Press) -> Invocation | None:
    """The command a press runs (None for the count, which is only a label)."""
    return _INVOCATIONS.get(press)


def answer_buttons(
    answer_id: int, shown: int = 1, total: int = 1, *, greeting: bool = False
) -> list[ButtonSpec]:
    """🔄 ⏩ for any answer but a character's greeting; ◀ n/m ▶ once there is more than
    one (a greeting's alternates are its swipes)."""
    specs = []
    if not greeting:
        specs += [
            ButtonSpec(Press.REGENERATE, answer_id, emoji="🔄"),
            ButtonSpec(Press.CONTINUE, answer_id, emoji="⏩"),
        ]
    if total > 1:
        specs += [
            ButtonSpec(Press.PREVIOUS, answer_id, emoji="◀", disabled=shown <= 1),
            ButtonSpec(Press.COUNT, answer_id, label=f"{shown}/{total}", disabled=True),
            ButtonSpec(Press.NEXT, answer_id, emoji="▶", disabled=shown >= total),
        ]
    return specs


def streaming_buttons(asker_id: int) -> list[ButtonSpec]:
    """⏹ while the answer is written; the asker (or an admin) may stop it."""
    return [ButtonSpec(Press.STOP, asker_id, label="Stop", emoji="⏹", danger=True)]


def buttons_after(result: TurnResult) -> list[ButtonSpec]:
    """What the answer's last message carries once the turn has ended.

    An answer (whole, stopped or cut by an error) can be regenerated, continued and
    swiped; a question the model failed to answer gets retry; a notice gets nothing.
    """
    if result.answer_id is not None:
        return answer_buttons(result.answer_id, *result.alternative, greeting=result.greeting)
    if result.called_provider and result.question_id is not None:
        return [ButtonSpec(Press.RETRY, result.question_id, label="Retry", emoji="🔁")]
    return []


def may_stop(actor_id: str, asker_id: int, *, admin: bool) -> bool:
    """Stopping is the asker's or an admin's (the core checks the other controls)."""
    return admin or actor_id == str(asker_id)


def stop_refusal(asker_id: int) -> str:
    return f"Only <@{asker_id}> or an admin of this channel can stop this answer."


# An answer longer than one message is several pages; 100,000 characters make 50.
MAX_PAGES = 50


@dataclass(frozen=True, slots=True)
class PageFacts:
    """One message before a pressed one, as far as telling its answer's pages goes."""

    by_bot: bool
    has_buttons: bool  # the last page of an answer (an earlier one, then)
    is_reply: bool  # the first page of an answer replies to the question
    is_command_reply: bool  # a slash command's response, not an answer


def earlier_pages(before: Iterable[PageFacts]) -> int:
    """How many of the messages before a pressed page that is not the first (newest
    first) are earlier pages of its answer: the bot's plain messages back to the one that
    replies to the question, never past another answer's buttons or a command's reply."""
    count = 0
    for page in before:
        if not page.by_bot or page.has_buttons or page.is_command_reply:
            break
        count += 1
        if page.is_reply:
            break
    return count
