"""`chatbot run` as its own process against the loopback Discord: ⏹ pressed while an answer
streams stops it (what arrived is kept, the model's connection is closed) and the answer's
buttons replace ⏹."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bot_process import BotProcess
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script, fake_openai

TOKEN = "loopback.bot.token-buttons-0123456789"


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [
        str(button["custom_id"])
        for row in message.get("components", [])
        for button in row.get("components", [])
        if "custom_id" in button
    ]


async def test_stop_pressed_while_streaming_ends_the_answer(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    await fake.start()
    script = Script(chunks=[f"w{i} " for i in range(300)], interval=0.05)  # ~15 s unstopped
    async with fake_openai(script) as endpoint:
        env = await fake.bot_env(tmp_path / "data", endpoint.url_v1)
        bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
        try:
            await bot.wait_ready()
            await fake.user_says(f"<@{fake.bot_id}> count for me")

            def streaming() -> dict[str, Any] | None:
                return next(
                    (m for m in fake.messages.values() if "cc:stop:" in str(_custom_ids(m))),
                    None,
                )

            await fake.wait_until(lambda: streaming() is not None, 60)
            answer = streaming()
            assert answer is not None
            [stop] = _custom_ids(answer)
            assert stop == f"cc:stop:{fake.user_id}"  # the asker's
            await fake.click(int(answer["id"]), stop)
            shown = fake.messages[int(answer["id"])]
            await fake.wait_until(lambda: "cc:regen:" in str(_custom_ids(shown)), 30)
            code = await bot.stop()
        finally:
            await bot.close()
            await fake.stop()
    assert code == 0
    assert [r["type"] for r in fake.responses] == [6]  # acknowledged, nothing said
    assert "Stopped" in shown["content"] and shown["content"].startswith("w0 ")
    assert len(shown["content"]) < len(script.answer)
    assert endpoint.cut_off  # the model's connection was closed
    assert not [i for i in _custom_ids(shown) if i.startswith("cc:stop:")]
