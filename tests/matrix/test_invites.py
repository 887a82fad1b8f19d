"""An invite arrives once: a join that fails for a passing reason is tried again.

The homeserver's side is stood in for by replacing the nio client's `join` (nio is not
our code); nothing here touches the network.
"""

from __future__ import annotations

from typing import Any

import nio
import pytest

from bot.frontends.matrix import decide
from bot.frontends.matrix.client import MatrixBot


def bot_with_joins(
    monkeypatch: pytest.MonkeyPatch, answers: list[Any]
) -> tuple[MatrixBot, list[str]]:
    client = nio.AsyncClient("http://127.0.0.1:9", "@bot:test.local")
    calls: list[str] = []

    async def join(room_id: str) -> Any:
        calls.append(room_id)
        return answers.pop(0)

    monkeypatch.setattr(client, "join", join)
    monkeypatch.setattr(decide, "JOIN_RETRY_PAUSES", (0.0, 0.0, 0.0))
    bot = MatrixBot(client, handler=None, api=None, allowed_inviters=())  # type: ignore[arg-type]
    return bot, calls


async def test_a_join_that_fails_for_a_passing_reason_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [
        nio.JoinError("try later", "M_UNKNOWN"),
        nio.JoinError("busy", "M_LIMIT_EXCEEDED"),
        nio.JoinResponse("!room:test.local"),
    ]
    bot, calls = bot_with_joins(monkeypatch, answers)
    await bot._on_invite("!room:test.local")
    assert calls == ["!room:test.local"] * 3 and answers == []


async def test_a_refused_join_is_not_tried_again_and_attempts_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot, calls = bot_with_joins(monkeypatch, [nio.JoinError("no", "M_FORBIDDEN")])
    await bot._on_invite("!closed:test.local")
    assert calls == ["!closed:test.local"]

    failing = [nio.JoinError("down", "M_UNKNOWN") for _ in range(10)]
    bot, calls = bot_with_joins(monkeypatch, failing)
    await bot._on_invite("!flaky:test.local")
    assert len(calls) == len(decide.JOIN_RETRY_PAUSES) + 1
