"""`chatbot run`'s log read as an operator reads it to find why the bot stopped answering
in a channel: every line about a turn or a command names its channel, and a channel that
cannot answer says so once, not with every message."""

from __future__ import annotations

from pathlib import Path

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-0123456789"


def _bot_posts(fake: FakeDiscord) -> int:
    return sum(m["author"]["id"] == str(fake.bot_id) for m in fake.messages.values())


async def test_a_channel_that_cannot_answer_is_logged_once_then_when_it_answers_again(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=["back again"], models_status=503)  # overloaded: retried
    async with chatbot_run(tmp_path, fake, script, ADMIN_IDS=str(fake.user_id)) as (bot, _):
        await fake.slash("connect")
        await fake.wait_until(lambda: fake.answered("Status check"), 60)
        for i in range(4):  # a busy channel: each message refused with the same reason
            await fake.user_says(f"<@{fake.bot_id}> hello {i}")
            await fake.wait_until(lambda n=i: _bot_posts(fake) == n + 1, 30)
        # An admin finds the endpoint answers all the same (its model list is what fails).
        await fake.slash("connect", bypass="on")
        await fake.wait_until(lambda: fake.answered("Bypass API status check: on"), 60)
        await fake.user_says(f"<@{fake.bot_id}> and now?")
        await fake.wait_until(
            lambda: any(m["content"] == "back again" for m in fake.messages.values()), 30
        )
        assert await bot.stop() == 0
    where = f"discord:{fake.guild_id}:{fake.channel_id}"
    lines = bot.lines
    refused = [line for line in lines if "turn in " in line and " not sent: " in line]
    assert len(refused) == 1, refused
    assert where in refused[0] and "overloaded" in refused[0]
    # Each line on one line: the reason's own line break would start a line of its own.
    assert not any(line.startswith("I'll check again") for line in lines)
    assert [line for line in lines if "can answer again" in line] == [
        next(line for line in lines if "can answer again" in line)
    ]
    assert where in next(line for line in lines if "can answer again" in line)
    # The status check's request and its retries, made for the channel's /connect.
    retries = [line for line in lines if ", retry " in line]
    requests = [line for line in lines if "/v1/models → 503" in line]
    assert retries and requests
    assert all(where in line for line in retries + requests), retries + requests


async def test_a_refused_slash_command_names_where_it_was_run(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _):
        await fake.slash("settings", where="other_server")
        await fake.wait_until(lambda: fake.answered("I'm not in this conversation"), 30)
        assert await bot.stop() == 0
    [line] = [line for line in bot.lines if "a user's own install" in line]
    assert f"(in discord:{fake.other_guild_id}:" in line, line


async def test_a_password_or_key_in_a_pasted_url_stays_out_of_the_debug_log(
    tmp_path: Path,
) -> None:
    """Operator-log probe: `/proxy set url:http://bob:PW@host/v1?api_key=K` is refused
    (user info is not taken), but at LOG_LEVEL=DEBUG discord.py's dump of the incoming
    command held the password and the key whole, plain and JSON-escaped; both too short
    and too plain for a key's shape, and no secret the bot had seen. A URL's user info
    and its query values named as credentials leave every log line."""
    fake = FakeDiscord(TOKEN)
    password, key = "hunter2pw", "q9w8e7r6"
    url = f"http://bob:{password}@models.example/v1?api_key={key}&sig={key}x"
    async with chatbot_run(
        tmp_path, fake, Script(), ADMIN_IDS=str(fake.user_id), LOG_LEVEL="DEBUG"
    ) as (bot, _):
        await fake.slash("proxy", "set", url=url)
        await fake.wait_until(lambda: fake.answered("user name or password"), 30)
        assert await bot.stop() == 0
    log = "\n".join(bot.lines)
    assert "models.example" in log  # the command's dump is in the log, without them
    assert password not in log and key not in log, [
        line for line in bot.lines if password in line or key in line
    ]
