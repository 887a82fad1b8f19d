"""`chatbot run` while Discord's gateway drops, resumes, or starts a new session.

Discord closes a bot's gateway several times a day: it asks for a reconnect (op 7),
closes with a code (4000 …), cuts the connection, or invalidates the session (op 9), and
discord.py resumes (the events missed are replayed) or identifies anew (READY and the
guilds again): https://discord.com/developers/docs/topics/gateway. Answers go over REST:
none of this may cut one, lose a question, or answer one twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI, Script

TOKEN = "loopback.bot.token-0123456789"
WORDS = [f"w{i} " for i in range(29)] + ["w29"]  # a few seconds of answer


def _posts(fake: FakeDiscord) -> list[dict[str, object]]:
    """The bot's own messages in #general, oldest first."""
    return [
        m
        for m in fake.messages.values()
        if m["channel_id"] == str(fake.channel_id) and m["author"]["id"] == str(fake.bot_id)
    ]


def _shown(fake: FakeDiscord, text: str) -> bool:
    return any(m["content"] == text for m in _posts(fake))


async def _reconnect(fake: FakeDiscord) -> None:
    await fake.ask_reconnect()


async def _cut(fake: FakeDiscord) -> None:
    fake.cut_gateway()


async def _close_4000(fake: FakeDiscord) -> None:
    await fake.close_gateway(4000)


async def _invalid_resumable(fake: FakeDiscord) -> None:
    await fake.invalidate_session(resumable=True)


async def _invalid(fake: FakeDiscord) -> None:
    await fake.invalidate_session(resumable=False)


GATEWAY_FAULTS: dict[str, tuple[Callable[[FakeDiscord], Awaitable[None]], bool]] = {
    # name: (what Discord does, whether the session is resumed after it)
    "op 7 reconnect": (_reconnect, True),
    "connection cut": (_cut, True),
    "close 4000": (_close_4000, True),
    "op 9 resumable": (_invalid_resumable, True),
    "op 9 not resumable": (_invalid, False),
}


@pytest.mark.parametrize("fault", list(GATEWAY_FAULTS))
async def test_an_answer_streaming_while_the_gateway_drops_is_shown_whole_and_once(
    tmp_path: Path, fault: str
) -> None:
    do, resumes = GATEWAY_FAULTS[fault]
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=WORDS, interval=0.1)
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> count for me")
        await fake.wait_until(lambda: bool(_posts(fake)), 60)  # streaming now
        await do(fake)
        await fake.wait_until(lambda: _shown(fake, script.answer), 60)
        if resumes:
            await fake.wait_until(lambda: bool(fake.resumes), 60)
        else:
            await fake.wait_until(lambda: fake.identifies == 2, 60)
        # Back on the gateway: the next question is heard and answered.
        script.chunks = ["Still ", "here."]
        await fake.user_says(f"<@{fake.bot_id}> still there?")
        await fake.wait_until(lambda: _shown(fake, "Still here."), 60)
        assert bot.proc.returncode is None, bot.log[-3000:]
        assert await bot.stop() == 0
    assert [m["content"] for m in _posts(fake)] == ["".join(WORDS), "Still here."]
    assert len(model.requests) == 2, model.requests  # each question asked once
    assert fake.identifies == (1 if resumes else 2), (fake.identifies, fake.resumes)
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_mention_sent_while_the_gateway_is_down_is_answered_once_on_resume(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, model):
        async with fake.gateway_down():
            await fake.user_says(f"<@{fake.bot_id}> are you there?")
        await fake.wait_until(lambda: _shown(fake, "Hello there!"), 60)
        await fake.wait_until(lambda: bool(fake.resumes), 60)
        model.script.chunks = ["Still ", "here."]
        await fake.user_says(f"<@{fake.bot_id}> still there?")
        await fake.wait_until(lambda: _shown(fake, "Still here."), 60)
        assert await bot.stop() == 0
    assert fake.resumes == [1]  # the mention came with the RESUME, not live
    assert [m["content"] for m in _posts(fake)] == ["Hello there!", "Still here."]
    assert len(model.requests) == 2, model.requests
    assert "Traceback" not in bot.log, bot.log[-3000:]


@pytest.mark.parametrize("streaming", [False, True], ids=["answered", "while answering"])
async def test_a_mention_discord_sends_again_after_a_resume_is_answered_once(
    tmp_path: Path, streaming: bool
) -> None:
    """Discord may send an event again after a resume (the same message id): the bot
    answered the question twice, the second time as a new turn of the conversation."""
    fake = FakeDiscord(TOKEN, replay_again=1)
    script = Script(chunks=WORDS, interval=0.1 if streaming else 0.0)
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> count for me")
        if streaming:
            await fake.wait_until(lambda: bool(_posts(fake)), 60)
        else:
            await fake.wait_until(lambda: _shown(fake, script.answer), 60)
        await fake.close_gateway(4000)
        await fake.wait_until(lambda: bool(fake.resumes), 60)
        await fake.wait_until(lambda: _shown(fake, script.answer), 60)
        script.chunks, script.interval = ["Still ", "here."], 0.0
        await fake.user_says(f"<@{fake.bot_id}> still there?")  # after the copy, in order
        await fake.wait_until(lambda: _shown(fake, "Still here."), 60)
        assert await bot.stop() == 0
    assert [m["content"] for m in _posts(fake)] == ["".join(WORDS), "Still here."]
    assert len(model.requests) == 2, model.requests
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_slash_command_discord_sends_again_after_a_resume_runs_once(
    tmp_path: Path,
) -> None:
    """An interaction sent again after a resume (the same interaction id) ran its command
    again: a /reset replayed after the next question had been answered forgot that turn
    too (Discord then refused the second response, so nobody was told)."""
    fake = FakeDiscord(TOKEN, replay_again=4)  # from before the /reset (posts are events too)
    admin = str(fake.user_id)
    script = Script(chunks=["Hello ", "there!"])
    async with chatbot_run(tmp_path, fake, script, ADMIN_IDS=admin) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> hello")
        await fake.wait_until(lambda: _shown(fake, "Hello there!"), 60)
        await fake.slash("reset")
        await fake.wait_until(lambda: len(fake.responses) == 1, 60)
        model.script.chunks = ["Noted."]
        await fake.user_says(f"<@{fake.bot_id}> my name is Bob")
        await fake.wait_until(lambda: _shown(fake, "Noted."), 60)
        await _resumed_and_asked(fake, model)
        model.script.chunks = ["Bob."]
        await fake.user_says(f"<@{fake.bot_id}> what is my name?")
        await fake.wait_until(lambda: _shown(fake, "Bob."), 60)
        assert await bot.stop() == 0
    asked = [m["content"] for m in model.requests[-1]["messages"]]
    assert asked == ["my name is Bob", "Noted.", "still there?", "Yes.", "what is my name?"]
    assert len(fake.responses) == 1 and fake.refused_responses == 0  # the /reset's, once
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_button_press_discord_sends_again_after_a_resume_runs_once(
    tmp_path: Path,
) -> None:
    """A 🔄 press sent again after a resume (the same interaction id) is not run again: a
    guard (it was not, before slash commands were deduplicated too)."""
    fake = FakeDiscord(TOKEN, replay_again=4)  # from before the press (posts are events too)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Hello ", "there!"])) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> hello")
        await fake.wait_until(lambda: _regenerate_button(fake) is not None, 60)
        message_id, regenerate = _regenerate_button(fake) or (0, "")
        model.script.chunks = ["Hi ", "again!"]
        await fake.click(message_id, regenerate)
        await fake.wait_until(lambda: _shown_in_part(fake, "Hi again!"), 60)
        await _resumed_and_asked(fake, model)
        assert await bot.stop() == 0
    assert len(model.requests) == 3, [r["messages"][-1] for r in model.requests]
    assert fake.refused_responses == 0
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def _resumed_and_asked(fake: FakeDiscord, model: FakeOpenAI) -> None:
    """The gateway closed (4000) and resumed, the events before it sent again; then a
    question answered "Yes.": a copy of an event has run by the end of that turn."""
    await fake.close_gateway(4000)
    await fake.wait_until(lambda: bool(fake.resumes), 60)
    model.script.chunks = ["Yes."]
    await fake.user_says(f"<@{fake.bot_id}> still there?")
    await fake.wait_until(lambda: _shown(fake, "Yes."), 60)


def _regenerate_button(fake: FakeDiscord) -> tuple[int, str] | None:
    for m in _posts(fake):
        for row in m.get("components") or []:
            for button in row.get("components", []):
                if str(button.get("custom_id", "")).startswith("cc:regen:"):
                    return int(m["id"]), str(button["custom_id"])
    return None


def _shown_in_part(fake: FakeDiscord, text: str) -> bool:
    return any(text in str(m["content"]) for m in _posts(fake))


# What Discord answers the start's command registration with, and two parts of what the
# log must then say.
SYNC_FAULTS: dict[str, tuple[list[int | tuple[str, float]], str, str]] = {
    "503": (
        [503],
        "could not register the slash commands globally: Discord answered 503 "
        "(DiscordServerError). Meanwhile the bot chats, and its slash commands stay as "
        "Discord last registered them; restart the bot later to register them.",
        "",
    ),
    "400 50035": (
        [400],
        "Discord refused the slash commands globally: Failed to upload commands to Discord "
        "(HTTP status 400, error code 50035) / In ",
        "description: Must be 100 or fewer in length. Meanwhile the bot chats, and its "
        "slash commands stay as Discord last registered them. This is a fault in the bot's "
        "command table (or a new Discord rule): report this line.",
    ),
    "429 for an hour": (
        [("429", 3600.0)],
        "Discord has not taken the slash commands yet (it asked the bot to wait",
        "responded with 429. Retrying in 3600.00 seconds.",
    ),
}


@pytest.mark.parametrize("fault", list(SYNC_FAULTS))
async def test_a_start_whose_command_sync_fails_still_chats_and_says_why(
    tmp_path: Path, fault: str
) -> None:
    """A 5xx or a 400 from the start's command sync stopped the bot ("Discord answered 503
    while logging in; try again later": a crash loop, and for a 400 no word of which
    command Discord refused); a 429 asking to wait an hour kept it from connecting for
    that hour."""
    faults, said, also = SYNC_FAULTS[fault]
    fake = FakeDiscord(TOKEN, sync_faults=list(faults))
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _):
        await fake.user_says(f"<@{fake.bot_id}> are you there?")
        await fake.wait_until(lambda: _shown(fake, "Hello there!"), 60)
        assert bot.proc.returncode is None, bot.log[-3000:]
        assert await bot.stop() == 0  # a sync still waiting out its rate limit too
    assert said in bot.log, bot.log[-3000:]
    assert also in bot.log, bot.log[-3000:]
    assert not fake.command_ids  # nothing was registered
    assert "Traceback" not in bot.log and "Task was destroyed" not in bot.log, bot.log[-3000:]


async def test_a_guild_whose_command_sync_fails_leaves_the_others_registered(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(TOKEN, sync_faults=[503])
    first, second = fake.guild_id, fake.guild_id + 100
    async with chatbot_run(
        tmp_path, fake, Script(), DISCORD_COMMAND_GUILDS=f"{first},{second}"
    ) as (bot, _):
        await fake.wait_until(lambda: bool(fake.command_ids), 60)
        await fake.slash("help")
        await fake.wait_until(lambda: bool(fake.responses), 60)
        assert await bot.stop() == 0
    puts = [c.path for c in fake.bot_calls("PUT", f"/applications/{fake.app_id}/")]
    assert puts == [
        f"/applications/{fake.app_id}/guilds/{first}/commands",
        f"/applications/{fake.app_id}/guilds/{second}/commands",
    ]
    assert f"could not register the slash commands in guild {first}: Discord answered 503" in (
        bot.log
    )
    assert f"synced {len(fake.command_ids)} slash commands to guild {second}" in bot.log
    assert "Traceback" not in bot.log, bot.log[-3000:]
