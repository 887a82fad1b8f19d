"""/usage on Discord: the text and the chart PNG as an attachment of the ephemeral reply."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core import Core
from bot.types import UsageRecord
from tests.discord.conftest import World
from tests.discord.helpers import ref_of, reply_text

pytestmark = pytest.mark.simcord(settle_timeout=30)


async def test_usage_reply_carries_the_chart(world: World, core: Core) -> None:
    ref = ref_of(world.channel, world.guild)
    for user, tokens in ((str(world.admin.id), 300), (str(world.member.id), 1200)):
        await core.store.record_usage(
            UsageRecord(
                at=datetime.now(UTC),
                platform=ref.platform.value,
                server_id=ref.server_id,
                channel_id=ref.channel_id,
                thread_id="",
                user_id=user,
                source="openai",
                model="gpt-4o",
                input_tokens=tokens,
                output_tokens=tokens // 2,
            )
        )
    result = await world.admin.slash(world.channel, "usage", period="week")
    assert result.ephemeral and result.response is not None
    text = reply_text(result)
    assert "This channel's usage" in text and "Total: 2,250 tokens" in text
    [chart] = result.response.attachments
    assert chart.filename == "usage-channel-week.png"
    assert (await chart.read()).startswith(b"\x89PNG\r\n\x1a\n")
    # A member gets only their own, still with a chart.
    mine = await world.member.slash(world.channel, "usage")
    assert "Your usage on Discord" in reply_text(mine) and "1,800 tokens" in reply_text(mine)
    assert str(world.admin.id) not in reply_text(mine)
    assert mine.response is not None and len(mine.response.attachments) == 1
