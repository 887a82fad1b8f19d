"""Turn controls racing each other on `chatbot run` against the loopback Discord: a typed
control waits its turn and acts on the answer newest then, an admin's 🔄 leaves ⏹ to the
asker, and a ⏩ pressed twice finds the pages the first one left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-races-0123456789"


def _ids(message: dict[str, Any]) -> list[str]:
    return [
        str(b["custom_id"])
        for row in message.get("components", [])
        for b in row.get("components", [])
        if "custom_id" in b
    ]


def _answers(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]


def _button(message: dict[str, Any], press: str) -> str:
    return next(i for i in _ids(message) if i.startswith(f"cc:{press}:"))


async def _answered(fake: FakeDiscord, by: tuple[int, str] | None = None) -> dict[str, Any]:
    await fake.user_says(f"<@{fake.bot_id}> hello", by=by)
    await fake.wait_until(lambda: "cc:regen:" in str([_ids(m) for m in _answers(fake)]), 30)
    [answer] = _answers(fake)
    return answer


async def test_a_continue_typed_while_a_regenerate_runs_continues_the_new_answer(
    tmp_path: Path,
) -> None:
    """Probe: /continue typed within ~2 s of a 🔄 was refused "Only the newest answer can
    change": the typed control named the answer newest as it was typed (the one the 🔄
    replaced) before it waited its turn. It now acts on the answer newest when its turn
    comes, in the answer's own message."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["first answer"])) as (bot, model):
        answer = await _answered(fake)
        model.script = Script(chunks=[f"w{i} " for i in range(60)], interval=0.05)
        await fake.click(int(answer["id"]), _button(answer, "regen"))
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        model.script = Script(chunks=[" and more"])  # for the next request: the /continue
        await fake.slash("continue")  # before the 🔄's answer is first saved
        await fake.wait_until(lambda: len(model.requests) == 3, 30)
        await fake.wait_until(lambda: "Done: the answer above" in str(fake.followups), 30)
        assert await bot.stop() == 0
    assert not fake.answered("Only the newest answer"), fake.followups
    assert [m["id"] for m in _answers(fake)] == [answer["id"]]
    assert answer["content"].startswith("w0 ") and answer["content"].endswith(" and more")
    assert "Done: the answer above changed (answer 2 of 2)." in str(fake.followups)


async def test_an_admins_regenerate_leaves_the_stop_button_to_the_asker(tmp_path: Path) -> None:
    """Probe: an admin's 🔄 on a member's answer showed ⏹ as the admin's: the member who
    asked could not stop it (the button, and the core, named the admin). The asker of
    the question, or an admin, may stop it, whoever pressed."""
    fake = FakeDiscord(TOKEN)
    carol = (fake.user_id + 7, "carol")
    async with chatbot_run(tmp_path, fake, Script(chunks=["carol's answer"])) as (bot, model):
        answer = await _answered(fake, by=carol)
        model.script = Script(chunks=[f"w{i} " for i in range(60)], interval=0.05)
        await fake.click(int(answer["id"]), _button(answer, "regen"), manager=True)  # bob, admin
        await fake.wait_until(lambda: "cc:stop:" in str(_ids(answer)), 30)
        stop = _ids(answer)
        await fake.click(int(answer["id"]), stop[0], manager=True)  # an admin may stop it
        await fake.wait_until(lambda: "cc:regen:" in str(_ids(answer)), 30)
        assert await bot.stop() == 0
    assert stop == [f"cc:stop:{carol[0]}"]
    assert "Stopped" in answer["content"], answer["content"]


async def test_a_continue_pressed_twice_finds_the_pages_the_first_left(tmp_path: Path) -> None:
    """Probe: ⏩ pressed twice on a one-message answer, the first continuing it onto a
    second message. The second found the pages at the press (one), and before the first
    had tied its new page: its answer went into the first message and a new third one,
    and the first's second message kept its end, with live buttons, for good."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Short."])) as (bot, model):
        answer = await _answered(fake)
        long = [f" w{i:04d}" for i in range(500)]
        model.script = Script(chunks=long, first_token=1.5)
        await fake.click(int(answer["id"]), _button(answer, "cont"))
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        await fake.click(int(answer["id"]), _button(answer, "cont"))  # while the first runs
        model.script = Script(chunks=[" end."])
        await fake.wait_until(lambda: len(model.requests) == 3, 30)

        def settled() -> bool:
            pages = _answers(fake)
            return pages[-1]["content"].endswith(" end.") and bool(_ids(pages[-1]))

        await fake.wait_until(settled, 30)
        assert await bot.stop() == 0
    pages = _answers(fake)
    assert len(pages) == 2, [p["content"][-40:] for p in pages]
    assert [bool(_ids(p)) for p in pages] == [False, True]
    words = " ".join(p["content"] for p in pages).split()
    assert words == ("Short." + "".join(long) + " end.").split(), words[-5:]


async def test_a_refused_press_between_two_controls_does_not_hide_the_first_ones_pages(
    tmp_path: Path,
) -> None:
    """Probe: 🔄 rewriting a one-message answer onto two, a ⏩ pressed on the old buttons
    meanwhile (a double click: refused, the answer it names was replaced), then /continue
    typed. The refused press, its turn over, stood in for the 🔄 as the control whose
    pages the next one waits for: the /continue found the pages before the 🔄 had tied
    its second one."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Short."])) as (bot, model):
        answer = await _answered(fake)
        regen, cont = _button(answer, "regen"), _button(answer, "cont")
        long = [f" w{i:04d}" for i in range(500)]
        model.script = Script(chunks=long, first_token=1.5)
        fake.edit_delay = 0.5  # the 🔄's pages take a while to settle after its turn
        await fake.click(int(answer["id"]), regen)
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        answered = len(fake.responses)
        await fake.click(int(answer["id"]), cont)  # on the answer the 🔄 replaces
        await fake.wait_until(lambda: len(fake.responses) > answered, 30)
        model.script = Script(chunks=[" end."])
        await fake.slash("continue")
        await fake.wait_until(lambda: len(model.requests) == 3, 30)

        def settled() -> bool:
            pages = _answers(fake)
            return pages[-1]["content"].endswith(" end.") and bool(_ids(pages[-1]))

        await fake.wait_until(settled, 30)
        await fake.wait_until(lambda: "Done: the answer above" in str(fake.followups), 30)
        assert await bot.stop() == 0
    assert fake.answered("Only the newest answer")  # the ⏩ on the replaced answer
    pages = _answers(fake)
    assert len(pages) == 2, [p["content"][-40:] for p in pages]
    assert [bool(_ids(p)) for p in pages] == [False, True]
    words = " ".join(p["content"] for p in pages).split()
    assert words == ("".join(long) + " end.").split(), words[-5:]


async def test_a_question_after_a_regenerate_waits_for_its_end_to_show(tmp_path: Path) -> None:
    """Probe: a question sent while 🔄 rewrote the answer was answered as soon as the
    🔄's turn ended, before its last edit (its buttons for how it ended, slow when
    Discord is) was made: the rewritten answer still showed ⏹ while the next answer was
    written, and pressing it stopped that one. The 🔄's answer now shows its end and is
    tied to its pages within its turn; the question is answered after."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["first answer"])) as (bot, model):
        answer = await _answered(fake)
        model.script = Script(chunks=[f"r{i} " for i in range(10)], interval=0.1)
        await fake.click(int(answer["id"]), _button(answer, "regen"))
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        await fake.user_says(f"<@{fake.bot_id}> next question")  # waits for the 🔄
        model.script = Script(chunks=[f"q{i} " for i in range(30)], interval=0.1)
        fake.edit_delay = 1.5  # Discord slow to take edits: the 🔄's last one waits
        await fake.wait_until(lambda: len(_answers(fake)) == 2, 30)
        fake.edit_delay = 0.0
        regenerated = _ids(answer)
        stop = [i for i in regenerated if i.startswith("cc:stop:")]
        if stop:  # what a member reading the finished answer may press
            await fake.click(int(answer["id"]), stop[0])
        following = _answers(fake)[1]
        await fake.wait_until(lambda: "cc:regen:" in str(_ids(following)), 30)
        assert await bot.stop() == 0
    assert stop == [], regenerated
    assert answer["content"].strip() == "".join(f"r{i} " for i in range(10)).strip()
    assert "Stopped" not in following["content"], following["content"]
    assert following["content"].strip().endswith("q29")
