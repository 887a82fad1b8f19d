"""A turn control (🔄 ⏩, /regenerate) still prepared (its endpoint's status checked again,
slowly; the model not yet asked) when the question it answers, or the answer it changes,
is deleted: on the loopback Discord with the real discord.py client. Nothing is sent,
charged or shown; the deleted turn is forgotten, the answer's record untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.core import Core
from bot.store.models import ChannelConfigRow, UsageRow
from bot.types import ChannelRef, Platform, Role, StatusCheck
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI, Script
from tests.discord.helpers import running

TOKEN = "loopback.bot.token-ctrldel-0123456789"


def _ref(fake: FakeDiscord) -> ChannelRef:
    return ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [
        str(button["custom_id"])
        for row in message.get("components", [])
        for button in row.get("components", [])
        if "custom_id" in button
    ]


def _pressable(fake: FakeDiscord, press: str) -> tuple[int, str] | None:
    """The bot's message with a `press` button, and that button's custom id."""
    for mid, message in fake.messages.items():
        for custom_id in _custom_ids(message):
            if custom_id.startswith(f"cc:{press}:"):
                return mid, custom_id
    return None


async def _usage(core: Core) -> int:
    async with core.store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(UsageRow)) or 0)


async def _checked_again_slowly(
    core: Core, fake: FakeDiscord, endpoint: FakeOpenAI, delay: float = 2.0
) -> None:
    """The channel's endpoint is down on record, a check due again: the next turn checks it
    (its /v1/models answered after `delay` s), and is held there."""
    down = StatusCheck(False, "could not be reached", kind="unreachable")
    await core.store.record_status(_ref(fake), down, None)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with core.store.engine.begin() as conn:
        await conn.execute(update(ChannelConfigRow).values(status_checked_at=long_ago))
    endpoint.script = Script(chunks=["another answer"], models_delay=delay)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    served = FakeDiscord(TOKEN)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def _sent_while_checked(
    core: Core,
    fake: FakeDiscord,
    endpoint: FakeOpenAI,
    send: Callable[[], Awaitable[object]],
    delay: float = 2.0,
) -> None:
    """The control `send` sends is held in its endpoint's status check (_checked_again_slowly):
    back once that check has begun."""
    await _checked_again_slowly(core, fake, endpoint, delay=delay)
    checks = endpoint.models_asked
    await send()
    await _until(_checking(endpoint, checks), "the status check")


async def _press(fake: FakeDiscord, answer: int, press: str) -> None:
    found = _pressable(fake, press)
    assert found is not None
    await fake.click(answer, found[1])


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _checking(endpoint: FakeOpenAI, checks: int) -> Callable[[], Awaitable[bool]]:
    async def begun() -> bool:
        return endpoint.models_asked > checks

    return begun


async def _asked(core: Core, fake: FakeDiscord) -> tuple[int, int, str]:
    """Bob asks; his question's message, the answer's, and the answer's text."""
    question = await fake.user_says(f"<@{fake.bot_id}> tell me")
    await fake.wait_until(lambda: _pressable(fake, "regen") is not None, 30)
    found = _pressable(fake, "regen")
    assert found is not None
    answer = found[0]

    async def linked() -> bool:  # tied to its message once shown (a typed control finds it)
        return await core.newest_answer_posts(_ref(fake)) is not None

    await _until(linked, "the answer tied to its message")
    return question, answer, str(fake.messages[answer]["content"])


async def test_a_regenerate_whose_question_is_deleted_while_prepared_is_not_sent(
    core: Core, endpoint: FakeOpenAI, fake: FakeDiscord
) -> None:
    """Race probe: 🔄 pressed, then the question deleted while the press was prepared (its
    status check still running): the new answer was asked for, charged and shown in the
    old one's message, then forgotten with the question."""
    async with running(core, fake):
        question, answer, said = await _asked(core, fake)
        await _sent_while_checked(core, fake, endpoint, lambda: _press(fake, answer, "regen"))
        await fake.delete_message(question)

        async def forgotten() -> bool:
            return await core.store.history(_ref(fake), 10) == []

        await _until(forgotten, "the deleted turn forgotten")
        await asyncio.sleep(0.3)  # anything the press would still show, shown
    assert len(endpoint.requests) == 1  # the first answer's only
    assert fake.messages[answer]["content"] == said  # not replaced
    assert len(fake.messages) == 1  # nothing posted
    assert [r["type"] for r in fake.responses] == [6]  # acknowledged, nothing said
    assert fake.followups == []
    assert await _usage(core) == 1  # the first answer's only


async def test_a_typed_regenerate_whose_question_is_deleted_says_nothing(
    core: Core, endpoint: FakeOpenAI, fake: FakeDiscord
) -> None:
    """/regenerate typed, then the question deleted while it was prepared: its "thinking…"
    (the typer's alone) goes, and nothing is said or shown."""
    async with running(core, fake):
        question, answer, said = await _asked(core, fake)
        await _sent_while_checked(core, fake, endpoint, lambda: fake.slash("regenerate"))
        await fake.delete_message(question)

        async def gone() -> bool:
            history = await core.store.history(_ref(fake), 10)
            return history == [] and not fake.originals

        await _until(gone, "the turn forgotten and the thinking taken away")
        await asyncio.sleep(0.3)
    assert len(endpoint.requests) == 1
    assert fake.messages[answer]["content"] == said and len(fake.messages) == 1
    assert [r["type"] for r in fake.responses] == [5]  # "thinking…", then taken away
    assert fake.followups == []
    assert await _usage(core) == 1


async def test_a_continue_whose_answer_is_deleted_while_prepared_is_not_sent(
    core: Core, endpoint: FakeOpenAI, fake: FakeDiscord
) -> None:
    """⏩ pressed, then a moderator deletes the answer while the press is prepared: the
    continuation was asked for and charged, its message gone (forgotten all the same)."""
    async with running(core, fake):
        _, answer, _ = await _asked(core, fake)
        await _sent_while_checked(core, fake, endpoint, lambda: _press(fake, answer, "cont"))
        await fake.delete_message(answer)

        async def forgotten() -> bool:
            history = await core.store.history(_ref(fake), 10)
            return [e.role for e in history] == [Role.USER]

        await _until(forgotten, "the deleted answer forgotten")
        await asyncio.sleep(0.3)
    assert len(endpoint.requests) == 1
    assert fake.messages == {}  # nothing posted in its place
    assert [r["type"] for r in fake.responses] == [6]
    assert fake.followups == []
    assert await _usage(core) == 1
    [question] = await core.store.history(_ref(fake), 10)
    assert question.content.endswith("tell me")


async def test_a_typed_retry_whose_question_is_deleted_takes_its_thinking_away(
    core: Core, endpoint: FakeOpenAI, fake: FakeDiscord
) -> None:
    """/retry typed on a question that got only an error (no answer's message to change in
    place: the command's own reply is the answer), the question deleted while it was
    prepared: its "thinking…", shown to everyone, stayed and "Done." followed."""
    async with running(core, fake):
        endpoint.script = Script(chunks=["x"], fail_after=0)
        question = await fake.user_says(f"<@{fake.bot_id}> tell me")
        await fake.wait_until(lambda: _pressable(fake, "retry") is not None, 30)
        charged = await _usage(core)
        # Held past Discord's "thinking…".
        await _sent_while_checked(core, fake, endpoint, lambda: fake.slash("retry"), 4.0)
        await fake.delete_message(question)

        async def gone() -> bool:
            history = await core.store.history(_ref(fake), 10)
            return history == [] and bool(fake.responses) and not fake.originals

        await _until(gone, "the turn forgotten and the thinking taken away")
        await asyncio.sleep(0.3)
    assert len(endpoint.requests) == 1  # the failed first try's only
    assert [r["type"] for r in fake.responses] == [5]  # "thinking…", then taken away
    assert fake.followups == []
    assert await _usage(core) == charged
