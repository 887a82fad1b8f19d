"""Character channels on the loopback Discord (the real discord.py client in this process):
answers go through one channel webhook the bot creates once and reuses, streamed edits
through the webhook's own endpoint, buttons on the webhook's messages still work, a reply
to them is a reply to the bot; without Manage Webhooks the name in bold, and a hint once."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import discord

from bot.commands import Invocation
from bot.core import Core
from bot.frontends.discord.persona import Speaker, webhook_name
from bot.frontends.discord.sink import ANSWER_FILE, FILE_ATTACHED, GREETING_NOTES, MAX_MESSAGES
from bot.types import Actor, Attachment, ChannelRef, Greeting, Platform
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI, Script
from tests.discord.helpers import running
from tests.integration.test_characters import CARD
from tests.unit.characters.samples import png_with

GREETING_FILE, GREETING_ATTACHED = GREETING_NOTES.file, GREETING_NOTES.attached

TOKEN = "loopback.bot.token-persona-0123456789"
ADMIN = Actor("300000000000000002", "Ada", is_channel_admin=True, is_server_admin=True)


async def _fake(manage_webhooks: bool) -> FakeDiscord:
    fake = FakeDiscord(TOKEN, manage_webhooks=manage_webhooks)
    await fake.start()
    return fake


def _ref(fake: FakeDiscord) -> ChannelRef:
    return ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))


async def _import(core: Core, fake: FakeDiscord) -> None:
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})

    async def fetch(limit: int) -> bytes:
        return image

    file = Attachment("aurelia.png", "image/png", len(image), fetch)
    inv = Invocation(("character", "import"), {"file": file})
    reply = await core.run_command(_ref(fake), ADMIN, inv)
    assert reply.ok, reply.text


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [
        str(b["custom_id"])
        for row in message.get("components", [])
        for b in row.get("components", [])
        if "custom_id" in b
    ]


def _by_webhook(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m.get("webhook_id")]


async def test_answers_come_from_one_reused_webhook_with_working_buttons(
    core: Core, endpoint: FakeOpenAI
) -> None:
    endpoint.script.chunks = [f"w{i} " for i in range(30)]
    endpoint.script.interval = 0.02
    fake = await _fake(manage_webhooks=True)
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> hello captain")
            await fake.wait_until(
                lambda: any("cc:regen:" in str(_custom_ids(m)) for m in _by_webhook(fake)), 30
            )
            [answer] = _by_webhook(fake)
            assert answer["content"] == endpoint.script.answer.strip()
            assert answer["author"]["username"] == "Aurelia"
            [hook] = fake.webhooks.values()
            assert hook["name"] == "Aurelia"
            assert fake.webhook_avatars[int(hook["id"])].startswith("data:image/png;base64,")
            # Streamed: posted once with ⏹, then edited through the webhook's endpoint.
            executes = fake.bot_calls("POST", f"/webhooks/{hook['id']}/")
            edits = fake.bot_calls("PATCH", f"/webhooks/{hook['id']}/{hook['token']}/messages/")
            assert len(executes) == 1 and len(edits) >= 2
            assert "cc:stop:" in json.dumps(executes[0].body)
            assert not fake.bot_calls("PATCH", f"/channels/{fake.channel_id}/messages")

            # A reply to the character is a reply to the bot; the same webhook answers.
            before = len(endpoint.requests)
            await fake.user_says("and the engine?", mention_bot=False, reply_to=int(answer["id"]))
            await fake.wait_until(lambda: len(_by_webhook(fake)) == 2, 30)
            await fake.wait_until(
                lambda: all("cc:regen:" in str(_custom_ids(m)) for m in _by_webhook(fake)), 30
            )
            assert len(endpoint.requests) == before + 1
            assert len(fake.webhooks) == 1
            assert len(fake.bot_calls("POST", f"/channels/{fake.channel_id}/webhooks")) == 1

            # 🔄 on the character's answer: a new answer in place, through the webhook.
            newest = _by_webhook(fake)[-1]
            regen = next(i for i in _custom_ids(newest) if i.startswith("cc:regen:"))
            endpoint.script.chunks = ["Another ", "answer."]
            await fake.click(int(newest["id"]), regen)
            await fake.wait_until(lambda: "2/2" in json.dumps(newest.get("components")), 30)
            assert newest["content"] == "Another answer."
    finally:
        await fake.stop()


async def test_without_manage_webhooks_the_name_is_bold_and_the_hint_said_once(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = await _fake(manage_webhooks=False)
    try:
        await _import(core, fake)
        async with running(core, fake):
            for n in (1, 2):
                await fake.user_says(f"<@{fake.bot_id}> question {n}")
                await fake.wait_until(
                    lambda n=n: (  # type: ignore[misc]
                        sum("cc:regen:" in str(_custom_ids(m)) for m in fake.messages.values()) == n
                    ),
                    30,
                )
        texts = [m["content"] for m in fake.messages.values()]
        answers = [t for t in texts if t.startswith("**Aurelia**\n")]
        assert answers == ["**Aurelia**\nHello there!"] * 2
        hints = [t for t in texts if "Manage Webhooks" in t]
        assert len(hints) == 1 and "Aurelia" in hints[0]
        assert not fake.webhooks and not _by_webhook(fake)
    finally:
        await fake.stop()


async def test_the_greeting_is_posted_by_the_character_with_its_swipes(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = await _fake(manage_webhooks=True)
    try:
        async with running(core, fake) as client:
            await _import(core, fake)
            greeting = (await core.store.history(_ref(fake), 5))[0]
            assert greeting.id is not None
            channel = client.get_channel(fake.channel_id)
            assert isinstance(channel, discord.TextChannel)
            await client.controls.greet(
                channel, _ref(fake), Greeting(greeting.content, "Aurelia", greeting.id, 3)
            )
            [posted] = _by_webhook(fake)
            assert posted["content"] == "Welcome aboard, Ada."
            ids = _custom_ids(posted)
            assert [i.split(":")[1] for i in ids] == ["prev", "count", "next"]
            # A member may not change how everyone's conversation starts; an admin may.
            await fake.click(int(posted["id"]), f"cc:next:{greeting.id}")
            await fake.wait_until(
                lambda: "change the character's greeting" in str(fake.followups), 30
            )
            assert posted["content"] == "Welcome aboard, Ada."
            await fake.click(int(posted["id"]), f"cc:next:{greeting.id}", manager=True)
            await fake.wait_until(lambda: posted["content"].startswith("Another stowaway"), 30)
            assert "2/3" in json.dumps(posted["components"])
            # Swiped, it is still a greeting: 🔄 and ⏩ came with the swipe, and could not work.
            assert [i.split(":")[1] for i in _custom_ids(posted)] == ["prev", "count", "next"]
    finally:
        await fake.stop()


def test_a_long_webhook_name_is_cut_between_graphemes() -> None:
    """Phone probe: a name cut at 80 code points split a flag in two."""
    flag = "\U0001f1ef\U0001f1f5"
    name = webhook_name("x" * 79 + flag)
    assert name == "x" * 79 and len(name) <= 80


def test_webhook_names_discord_refuses_are_cleaned() -> None:
    assert webhook_name("Discord Clyde Bot") == "Bot"
    assert webhook_name("discord") == "Character"
    assert webhook_name("disclydecord") == "Character"  # one pass left `discord`
    assert webhook_name("Dis clyde cord") == "Dis cord"
    assert len(webhook_name("x" * 200)) == 80


def test_a_cards_name_in_bold_carries_no_formatting_or_mention_of_its_own() -> None:
    """Cards come from public sites: the name `a** @everyone [x](https://…) **b` put a
    live link and a role pill on every answer without Manage Webhooks."""
    name = "a** @everyone <@&200000000000000001> [x](https://evil.example) **b"
    prefix = Speaker(name).prefix
    assert prefix.startswith("**") and prefix.endswith("**\n")
    inner = prefix[2:-3]
    assert "**" not in inner.replace("\\*\\*", "")  # the name's own are escaped
    assert "\\[x\\]" in inner and "@\u200beveryone" in inner and "\\<@\u200b&" in inner


def _answered(fake: FakeDiscord, n: int) -> bool:
    """`n` answers have ended (each carries its buttons at the end)."""
    return sum("cc:regen:" in str(_custom_ids(m)) for m in fake.messages.values()) == n


async def test_a_deleted_webhook_is_replaced(core: Core, endpoint: FakeOpenAI) -> None:
    fake = await _fake(manage_webhooks=True)
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> one")
            await fake.wait_until(lambda: _answered(fake, 1), 30)
            fake.webhooks.clear()  # an admin deleted it in the channel settings
            await fake.user_says(f"<@{fake.bot_id}> two")
            await fake.wait_until(lambda: _answered(fake, 2), 30)
            await fake.user_says(f"<@{fake.bot_id}> three")
            await fake.wait_until(lambda: _answered(fake, 3), 30)
        texts = [m["content"] for m in fake.messages.values() if "cc:regen:" in str(m)]
        assert texts[1] == "**Aurelia**\nHello there!"  # nothing lost meanwhile
        assert len(fake.webhooks) == 1 and texts[2] == "Hello there!"
        assert len(fake.bot_calls("POST", f"/channels/{fake.channel_id}/webhooks")) == 2
    finally:
        await fake.stop()


async def test_a_webhook_set_up_whose_connection_drops_still_answers(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A reset connection while the character's webhook was set up escaped as an aiohttp
    error (only a refusal was caught): the mention got no answer at all."""
    fake = await _fake(manage_webhooks=True)
    try:
        await _import(core, fake)
        async with running(core, fake):
            fake.drop_webhooks = 5  # every try of the look-up
            await fake.user_says(f"<@{fake.bot_id}> one")
            await fake.wait_until(lambda: _answered(fake, 1), 30)
            assert fake.drop_webhooks < 5
            fake.drop_webhooks = 0  # the network is back: the next answer is the character's
            await fake.user_says(f"<@{fake.bot_id}> two")
            await fake.wait_until(lambda: _answered(fake, 2), 30)
        texts = [m["content"] for m in fake.messages.values() if "cc:regen:" in str(m)]
        assert texts == ["**Aurelia**\nHello there!", "Hello there!"]
        assert len(_by_webhook(fake)) == 1
    finally:
        await fake.stop()


async def test_a_long_answer_after_the_webhook_went_keeps_every_page_in_discords_limit(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """With the webhook gone, the name goes in front of page 1 (`**Aurelia**`): pages were
    still cut to 2,000 characters, so page 1's edit came to 2,003 (Discord refuses it)."""
    fake = await _fake(manage_webhooks=True)
    long = " ".join(f"w{i:04d}" for i in range(750))  # 4,499 characters: three pages
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> one")
            await fake.wait_until(lambda: _answered(fake, 1), 30)
            fake.webhooks.clear()  # an admin deleted it in the channel settings
            before = set(fake.messages)
            endpoint.script = Script(chunks=[long[i : i + 500] for i in range(0, len(long), 500)])
            await fake.user_says(f"<@{fake.bot_id}> a long one")
            await fake.wait_until(
                lambda: (
                    _answered(fake, 2)
                    and any("w0749" in m["content"] for m in fake.messages.values())
                ),
                30,
            )
        edits = [c for c in fake.calls if c.method == "PATCH" and "/messages/" in c.path]
        sent = [m["content"] for k, m in fake.messages.items() if k not in before]
        sent = [text for text in sent if not text.startswith("a long one")]
        assert all(len(text) <= 2000 for text in sent), [len(t) for t in sent]
        assert all(
            len(str(c.body.get("content", ""))) <= 2000 for c in edits if isinstance(c.body, dict)
        )
        assert sent[0].startswith("**Aurelia**\n"), [t[:20] + "…" + t[-20:] for t in sent]
        joined = " ".join(sent).replace("**Aurelia**\n", "").split()
        assert joined == long.split(), [(t[:12], t[-12:], len(t)) for t in sent]
    finally:
        await fake.stop()


async def test_a_new_card_renames_the_same_webhook(core: Core, endpoint: FakeOpenAI) -> None:
    fake = await _fake(manage_webhooks=True)
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> one")
            await fake.wait_until(lambda: len(_by_webhook(fake)) == 1, 30)
            other = json.loads(json.dumps(CARD))
            other["data"]["nickname"] = "Bosun"

            async def fetch(limit: int) -> bytes:
                return json.dumps(other).encode()

            file = Attachment("bosun.json", "", 10, fetch)
            inv = Invocation(("character", "import"), {"file": file})
            assert (await core.run_command(_ref(fake), ADMIN, inv)).ok
            await fake.user_says(f"<@{fake.bot_id}> two")
            await fake.wait_until(lambda: len(_by_webhook(fake)) == 2, 30)
        [hook] = fake.webhooks.values()
        assert hook["name"] == "Bosun"
        assert _by_webhook(fake)[-1]["author"]["username"] == "Bosun"
        assert len(fake.bot_calls("POST", f"/channels/{fake.channel_id}/webhooks")) == 1
        renames = [
            c for c in fake.calls if (c.method, c.path) == ("PATCH", f"/webhooks/{hook['id']}")
        ]
        assert len(renames) == 1 and renames[0].body["name"] == "Bosun"
    finally:
        await fake.stop()


async def test_a_character_answer_changes_without_send_messages(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Permissions probe: 🔄 on an answer a character's webhook shows was refused for
    want of Send Messages, which changing it through the webhook does not use; the
    permission it does use, Manage Webhooks, is the one named when missing."""
    endpoint.script.chunks = ["Aye."]
    fake = await _fake(manage_webhooks=True)
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> hello captain")
            await fake.wait_until(
                lambda: any("cc:regen:" in str(_custom_ids(m)) for m in _by_webhook(fake)), 30
            )
            [answer] = _by_webhook(fake)
            regen = next(i for i in _custom_ids(answer) if i.startswith("cc:regen:"))
            fake.bot_denied = 1 << 11  # Send Messages
            endpoint.script.chunks = ["Another ", "answer."]
            await fake.click(int(answer["id"]), regen)
            await fake.wait_until(lambda: "2/2" in json.dumps(answer.get("components")), 30)
            assert answer["content"] == "Another answer."
            assert not any(r.get("type") == 4 for r in fake.responses), fake.responses

            fake.bot_denied = 1 << 29  # Manage Webhooks
            asked = len(endpoint.requests)
            regen = next(i for i in _custom_ids(answer) if i.startswith("cc:regen:"))
            await fake.click(int(answer["id"]), regen)
            for _ in range(500):
                if any(r.get("type") == 4 for r in fake.responses):
                    break
                await asyncio.sleep(0.02)
            said = next(r for r in fake.responses if r.get("type") == 4)["data"]["content"]
            assert said == (
                "I can't change this answer: I'm missing the Manage Webhooks permission "
                "there. A server admin grants it in the channel's permissions."
            )
            assert len(endpoint.requests) == asked
    finally:
        await fake.stop()


async def test_a_character_answers_through_its_webhook_without_send_messages(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Permissions probe: with Manage Webhooks but not Send Messages the greeting was
    posted, but every question was refused for want of Send Messages, which an answer
    posted through the webhook does not use (nor its ⏹ and buttons, nor a notice)."""
    endpoint.script.chunks = ["Aye, ", "captain."]
    fake = FakeDiscord(TOKEN, manage_webhooks=True, bot_denied=1 << 11)  # Send Messages
    await fake.start()
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> hello captain")
            await fake.wait_until(
                lambda: any("cc:regen:" in str(_custom_ids(m)) for m in _by_webhook(fake)), 30
            )
            [answer] = _by_webhook(fake)
            assert answer["content"] == "Aye, captain."
            assert not fake.dms
    finally:
        await fake.stop()


async def test_a_long_answer_through_the_webhook_comes_as_a_file_and_a_regenerate_clears_it(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A character's answer longer than MAX_MESSAGES messages: posted and edited through
    the webhook as any answer is, its file too; 🔄 to one that fits in as many messages
    takes the earlier answer's file off the last of them."""
    endpoint.script.chunks = [f"Line {i}: the character goes on and on.\n" for i in range(600)]
    fake = await _fake(manage_webhooks=True)
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me everything")
            await fake.wait_until(lambda: any(m["attachments"] for m in _by_webhook(fake)), 30)
            # The file may come with the last message, before the answer settles: pressed
            # then, 🔄 would find its messages not yet stored.
            for _ in range(500):
                found = await core.newest_answer_posts(_ref(fake))
                if found is not None and len(found[1]) == MAX_MESSAGES:
                    break
                await asyncio.sleep(0.02)
            pages = _by_webhook(fake)
            last = pages[-1]
            assert len(pages) == MAX_MESSAGES
            assert last["content"].endswith(FILE_ATTACHED)
            whole = endpoint.script.answer  # as it came, stored so
            assert fake.attached(last) == {ANSWER_FILE: whole.encode()}
            [hook] = fake.webhooks.values()
            hooked = f"/webhooks/{hook['id']}/{hook['token']}"
            # Through the webhook: with its last message, or by an edit once it settled.
            attached = [*fake.bot_calls("POST", hooked), *fake.bot_calls("PATCH", hooked)]
            assert [c for c in attached if c.body.get("files")]
            *_, stored = await core.store.history(_ref(fake), 5)  # after the greeting
            assert stored.content == whole

            # Five paragraphs, a message each: no file, and the old one is taken off.
            endpoint.script.chunks = [f"{n}" * 1900 + "\n\n" for n in range(MAX_MESSAGES)]
            regen = next(i for i in _custom_ids(last) if i.startswith("cc:regen:"))
            await fake.click(int(last["id"]), regen)
            await fake.wait_until(lambda: "2/2" in json.dumps(last.get("components")), 30)
            assert _by_webhook(fake) == pages  # the same messages, rewritten in place
            assert last["content"] == f"{MAX_MESSAGES - 1}" * 1900
            assert [m["attachments"] for m in pages] == [[]] * MAX_MESSAGES
    finally:
        await fake.stop()


def _long(what: str, lines: int) -> str:
    return "\n".join(f"{what} {i}: the sky is wide and the engine is loud." for i in range(lines))


def _next_id(message: dict[str, Any]) -> str:
    return next(i for i in _custom_ids(message) if i.startswith("cc:next:"))


async def _long_greetings(core: Core, fake: FakeDiscord, card: dict[str, Any]) -> str:
    """/character import of `card` by a manager, as Discord sends it; once its greeting is
    posted (with its swipe buttons), the first greeting as stored."""
    image = png_with({"ccv3": base64.b64encode(json.dumps(card).encode()).decode()})
    files = {"file": ("long.png", "image/png", image)}
    await fake.slash("character", "import", manager=True, files=files)
    await fake.wait_until(
        lambda: any("cc:next:" in str(_custom_ids(m)) for m in fake.messages.values()), 30
    )
    [first] = await core.store.history(_ref(fake), 5)
    return first.content


async def test_a_long_greeting_takes_a_few_messages_and_comes_whole_as_a_file(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A card's greeting of 30,000 characters was posted as 15 messages, past the cap an
    answer keeps to. Now it takes MAX_MESSAGES, the whole of it on the last as greeting.md,
    through the character's webhook; swipes between greetings keep to the same, and
    deleting its message forgets it as before."""
    card = json.loads(json.dumps(CARD))
    card["data"]["first_mes"] = _long("First", 600)  # about 30,000 characters
    card["data"]["alternate_greetings"] = ["Short hello.", _long("Third", 300)]
    fake = await _fake(manage_webhooks=True)
    try:
        async with running(core, fake):
            first = await _long_greetings(core, fake, card)
            assert first == card["data"]["first_mes"] and len(first) > 29_000
            short, third = card["data"]["alternate_greetings"]
            pages = _by_webhook(fake)
            last = pages[-1]
            assert len(pages) == MAX_MESSAGES, len(pages)
            assert pages[0]["content"].startswith("First 0: ")
            assert last["content"].endswith(f"\n\n{GREETING_ATTACHED}")
            assert fake.attached(last) == {GREETING_FILE: first.encode()}
            assert [m for m in pages if m["attachments"] or _custom_ids(m)] == [last]
            [hook] = fake.webhooks.values()
            # Posted through the webhook with its last message (all of it went at once).
            posts = fake.bot_calls("POST", f"/webhooks/{hook['id']}/{hook['token']}")
            assert [c for c in posts[-1:] if c.body.get("files")]
            assert not fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")

            # ▶ to the short one: its first message shows it, the others go, the file too.
            await fake.click(int(last["id"]), _next_id(last), manager=True)
            await fake.wait_until(lambda: len(_by_webhook(fake)) == 1, 30)
            [shown] = _by_webhook(fake)
            await fake.wait_until(lambda: "2/3" in json.dumps(shown["components"]), 30)
            assert shown["content"] == short and not shown["attachments"]

            # ▶ to the long third: five messages again, the file its whole text.
            await fake.click(int(shown["id"]), _next_id(shown), manager=True)
            await fake.wait_until(lambda: len(_by_webhook(fake)) == MAX_MESSAGES, 30)

            def settled() -> bool:  # the file and the buttons on the last message alone
                pages = _by_webhook(fake)
                return [m for m in pages if m["attachments"] or _custom_ids(m)] == pages[-1:]

            await fake.wait_until(settled, 30)
            pages = _by_webhook(fake)
            assert pages[0] is shown and "3/3" in json.dumps(pages[-1]["components"])
            assert fake.attached(pages[-1]) == {GREETING_FILE: third.encode()}
            assert [m for m in pages if m["attachments"] or _custom_ids(m)] == [pages[-1]]

            # A moderator deletes the message with the file: the greeting is forgotten.
            await fake.delete_message(int(pages[-1]["id"]))
            for _ in range(500):
                if not await core.store.history(_ref(fake), 5):
                    break
                await asyncio.sleep(0.02)
            assert await core.store.history(_ref(fake), 5) == []
    finally:
        await fake.stop()


async def test_a_long_greeting_whose_file_discord_refuses_says_so(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A greeting goes out at once, its last message posted with its file: Discord
    refusing the file (413) is said on that message, posted without it, and the other
    messages stand (it was not taken for a page that could not be posted)."""
    card = json.loads(json.dumps(CARD))
    card["data"]["first_mes"] = _long("First", 600)
    fake = FakeDiscord(TOKEN, refuse_files=True)
    await fake.start()
    try:
        async with running(core, fake):
            await _long_greetings(core, fake, card)
            await fake.wait_until(
                lambda: any("Manage Webhooks" in m["content"] for m in fake.messages.values()), 30
            )
        *pages, _ = fake.messages.values()
        assert len(pages) == MAX_MESSAGES, len(pages)
        assert pages[-1]["content"].endswith(f"\n\n{GREETING_NOTES.failed}")
        assert not any(m["attachments"] for m in pages)
        assert [c for c in fake.calls if isinstance(c.body, dict) and c.body.get("files")]
    finally:
        await fake.stop()


async def test_a_long_greeting_without_a_webhook_comes_as_a_file_from_the_bot(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Without Manage Webhooks the bot posts the greeting (the name in bold on its first
    message): at most MAX_MESSAGES of them, the whole greeting on the last as greeting.md."""
    card = json.loads(json.dumps(CARD))
    card["data"]["first_mes"] = _long("First", 600)
    fake = await _fake(manage_webhooks=False)
    try:
        async with running(core, fake):
            first = await _long_greetings(core, fake, card)
            await fake.wait_until(
                lambda: any("Manage Webhooks" in m["content"] for m in fake.messages.values()), 30
            )
        *pages, hint = fake.messages.values()
        assert len(pages) == MAX_MESSAGES, len(pages)
        assert pages[0]["content"].startswith("**Aurelia**\nFirst 0: ")
        assert pages[-1]["content"].endswith(f"\n\n{GREETING_ATTACHED}")
        assert fake.attached(pages[-1]) == {GREETING_FILE: first.encode()}
        assert [m for m in pages if m["attachments"] or _custom_ids(m)] == [pages[-1]]
        assert not hint["attachments"] and not _by_webhook(fake)
    finally:
        await fake.stop()
