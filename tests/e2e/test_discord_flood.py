"""`chatbot run` against a loopback Discord while one member floods a channel: the bot
answers within the limits, and does not flood the channel back."""

from __future__ import annotations

from pathlib import Path

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-flood-0123456789"
FLOOD = 30
CAROL = (300_000_000_000_000_003, "carol")


async def test_a_member_flooding_past_the_minute_limit_is_told_once_not_once_a_message(
    tmp_path: Path,
) -> None:
    """README: with `messages_per_user_minute`, a refused turn sends nothing to the model
    and tells the asker in a reply that deletes itself after 15 s. A member sending 30
    mentions at once gets one such reply, not 30 (each a post and a delete in the
    channel, which on Discord share its rate limit with everyone else's answers there);
    another member asking after them is answered, and the model is asked twice."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(), LIMIT_MESSAGES_PER_USER_MINUTE="1") as (
        bot,
        model,
    ):
        path = f"/channels/{fake.channel_id}/messages"
        await fake.user_says(f"<@{fake.bot_id}> hello")
        await fake.wait_until(
            lambda: any("cc:regen:" in repr(m["components"]) for m in fake.messages.values()), 60
        )
        flood = {await fake.user_says(f"<@{fake.bot_id}> again {i}") for i in range(FLOOD)}
        asked = await fake.user_says(f"<@{fake.bot_id}> my turn", by=CAROL)

        def replies_to(ids: set[int]) -> list[str]:
            return [
                str(c.body.get("content", ""))
                for c in fake.bot_calls("POST", path)
                if isinstance(c.body, dict)
                and int(c.body.get("message_reference", {}).get("message_id", 0)) in ids
            ]

        await fake.wait_until(lambda: bool(replies_to({asked})), 60)
        refused = "was refused by messages_per_user_minute"
        await fake.wait_until(lambda: bot.log.count(refused) == FLOOD, 60)
        code = await bot.stop()
    told = replies_to(flood)
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log
    assert len(model.requests) == 2  # Bob's first question and Carol's
    assert 1 <= len(told) <= 3, told  # once while it shows (a slow machine: again after 15 s)
    assert all("messages_per_user_minute" in text for text in told), told
