"""`chatbot run` against the loopback Discord: a question that replies to someone else's
picture or file sends it with the question, as if attached to it; one that replies to a
question the conversation holds does not send its images twice."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from tests.bot_process import BotProcess
from tests.discord.fake_discord import READ_MESSAGE_HISTORY, FakeDiscord
from tests.discord.fake_openai import Script, fake_openai

TOKEN = "loopback.bot.token-0123456789"
ALICE = (777_000_000_000_000_001, "alice")


def _png(color: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def _answered(fake: FakeDiscord, count: int) -> bool:
    answers: list[dict[str, Any]] = list(fake.messages.values())
    return len(answers) >= count and all(m["content"] == "Seen." for m in answers)


def _sizes(content: Any) -> list[tuple[int, int]]:
    """The sizes of the images in one message's content, in order."""
    if not isinstance(content, list):
        return []
    urls = [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
    return [
        PILImage.open(io.BytesIO(base64.b64decode(u.partition(";base64,")[2]))).size for u in urls
    ]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if p["type"] == "text")


async def test_a_question_replying_to_a_picture_or_file_sends_it_with_the_question(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(TOKEN)
    await fake.start()
    code = b"def hello():\n    return 'hi'\n"
    async with fake_openai(Script(chunks=["Seen."])) as model:
        env = await fake.bot_env(tmp_path / "data", model.url_v1, ADMIN_IDS=str(fake.user_id))
        bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
        try:
            await bot.wait_ready()
            await fake.wait_until(lambda: bool(fake.command_ids), 30)
            await fake.slash("params", name="vision", value="on")
            await fake.wait_until(lambda: fake.answered("vision set to on"), 30)
            # Alice posts a picture, not to the bot; Bob asks about it with a file of his own.
            red = ("red.png", "image/png", _png("red", (40, 30)))
            picture = await fake.user_says("look", mention_bot=False, files=[red], by=ALICE)
            own = ("hello.py", "text/x-python", code)
            await fake.user_says(f"<@{fake.bot_id}> what is this?", files=[own], reply_to=picture)
            await fake.wait_until(lambda: _answered(fake, 1), 60)
            # Bob asks with a picture, then replies to that question: it is held already.
            blue = ("blue.png", "image/png", _png("blue", (50, 20)))
            asked = await fake.user_says(f"<@{fake.bot_id}> and this?", files=[blue])
            await fake.wait_until(lambda: _answered(fake, 2), 60)
            await fake.user_says(f"<@{fake.bot_id}> bigger?", reply_to=asked)
            await fake.wait_until(lambda: _answered(fake, 3), 60)
            # A reply Discord did not resolve, to a picture posted while the bot was away:
            # the bot reads the message it refers to.
            green = ("green.png", "image/png", _png("green", (30, 60)))
            later = await fake.user_says("", files=[green], by=ALICE, seen=False)
            await fake.user_says(f"<@{fake.bot_id}>", reply_to=later, resolved=False)
            await fake.wait_until(lambda: _answered(fake, 4), 60)
            # Without Read Message History it cannot: the question goes alone, as before.
            fake.bot_denied |= READ_MESSAGE_HISTORY
            await fake.user_says(f"<@{fake.bot_id}> hm?", reply_to=later, resolved=False)
            await fake.wait_until(lambda: _answered(fake, 5), 60)
            exit_code = await bot.stop()
        finally:
            await bot.close()
            await fake.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log
    first, second, third, fourth, fifth = (r["messages"] for r in model.requests)  # type: ignore[misc]
    # The question's own file first, then the picture it replies to.
    asked_first = first[-1]["content"]
    assert _text(asked_first).startswith("what is this?\nhello.py\n```python\ndef hello():")
    assert _sizes(asked_first) == [(40, 30)]
    assert _sizes(second[-1]["content"]) == [(50, 20)]
    # The question replied to is in the history with its picture: sent there, once.
    assert _text(third[-1]["content"]) == "bigger?" and _sizes(third[-1]["content"]) == []
    assert [s for m in third for s in _sizes(m["content"])] == [(40, 30), (50, 20)]
    assert _sizes(fourth[-1]["content"]) == [(30, 60)]
    assert _text(fifth[-1]["content"]) == "hm?" and _sizes(fifth[-1]["content"]) == []
    fetched = fake.bot_calls("GET", f"/channels/{fake.channel_id}/messages/{later}")
    assert len(fetched) == 2  # read once; refused the second time
    # Each file was downloaded once per question that sent it.
    names = [p.rsplit("/", 1)[1] for p in fake.downloads]
    assert names == ["hello.py", "red.png", "blue.png", "green.png"]
