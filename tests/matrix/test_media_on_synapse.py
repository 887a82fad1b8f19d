"""Images and files on a real Synapse: the bot downloads them with its own login (and
decrypts them in E2EE rooms), and the model request carries what was sent."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nio
import pytest
from PIL import Image as PILImage

from bot.core import Core
from bot.types import ChannelConfig, ChannelRef, Platform, Role, Source
from tests.integration.test_characters import CARD, ST_DEFAULT
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import MatrixUser, SynapseServer
from tests.unit.characters.samples import png_with

pytestmark = pytest.mark.synapse

SIZE = (48, 36)


def png(color: str) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", SIZE, color).save(out, "PNG")
    return out.getvalue()


@dataclass
class Rig:
    bot: MatrixUser
    core: Core
    endpoint: SSEEndpoint
    alice: UserClient
    bob: UserClient

    async def room(self, *, encrypted: bool = False, direct: bool = False) -> str:
        """A room alice made for the bot (and bob, unless direct); images shown to the model."""
        invite = [self.bot.user_id] if direct else [self.bot.user_id, self.bob.user.user_id]
        room_id = await self.alice.create_room(invite, encrypted=encrypted, direct=direct)
        await self.alice.wait_joined(room_id, self.bot.user_id)
        if not direct:
            await self.bob.join(room_id)
        answer = await self.alice.command(room_id, self.bot.user_id, "!params vision on")
        assert "vision set to on" in answer, answer
        return room_id

    async def send(self, room_id: str, content: dict[str, Any]) -> str:
        """Alice sends `content` and the bot answers: "" when it asked the model, else
        what it said instead."""
        asked = len(self.endpoint.bodies)
        after = time.monotonic()
        await self.alice.send_content(room_id, content)
        first = await self.alice.reply_to(room_id, self.bot.user_id, after, "the bot's answer")
        return "" if len(self.endpoint.bodies) > asked else str(first.content["body"])

    def last_question(self) -> Any:
        return self.endpoint.bodies[-1]["messages"][-1]["content"]


@pytest.fixture(scope="module")
async def rig(
    synapse_server: SynapseServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    base = tmp_path_factory.mktemp("matrix-media")
    server = synapse_server
    async with SSEEndpoint(chunks=4, span=0.2) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{base}/bot.db", defaults=defaults)
        bot = server.register("mediabot")
        alice = await UserClient.start(server, server.register("alice"), base / "alice")
        bob = await UserClient.start(server, server.register("bob"), base / "bob")
        try:
            async with running_bot(core, bot_options(server, bot, base / "store")):
                yield Rig(bot, core, endpoint, alice, bob)
        finally:
            await alice.close()
            await bob.close()
            await core.close()


def shown_image(content: Any) -> PILImage.Image:
    """The one image of a request's user message, decoded from its data URL."""
    assert isinstance(content, list), content
    [url] = [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
    kind, _, data = url.partition(";base64,")
    assert kind in ("data:image/png", "data:image/jpeg"), kind
    return PILImage.open(io.BytesIO(base64.b64decode(data)))


async def test_an_image_in_a_direct_room_reaches_the_model(rig: Rig) -> None:
    room_id = await rig.room(direct=True)
    content = await rig.alice.media_content("m.image", "red.png", png("red"), "image/png")
    refusal = await rig.send(room_id, content)
    assert not refusal
    image = shown_image(rig.last_question())
    assert image.size == SIZE and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    history = await rig.core.store.history(ChannelRef(Platform.MATRIX, room_id), 10)
    question = next(e for e in history if e.role is Role.USER and e.images)
    assert question.content == "" and [i.name for i in question.images] == ["red.png"]


async def test_an_encrypted_image_is_decrypted_with_its_own_key(rig: Rig) -> None:
    room_id = await rig.room(encrypted=True, direct=True)
    content = await rig.alice.media_content(
        "m.image", "blue.png", png("blue"), "image/png", encrypt=True, caption="What colour?"
    )
    assert "url" not in content and content["file"]["url"].startswith("mxc://")
    refusal = await rig.send(room_id, content)
    assert not refusal
    question = rig.last_question()
    assert question[0] == {"type": "text", "text": "What colour?"}  # the caption
    image = shown_image(question)
    assert image.size == SIZE and image.convert("RGB").getpixel((0, 0)) == (0, 0, 255)

    # A file that fails its hash check is refused, and the model is asked nothing.
    tampered = await rig.alice.media_content(
        "m.image", "green.png", png("green"), "image/png", encrypt=True
    )
    tampered["file"]["hashes"]["sha256"] = base64.b64encode(bytes(32)).decode().rstrip("=")
    refusal = await rig.send(room_id, tampered)
    assert refusal == "I could not download green.png; attach it again."


async def test_a_text_file_arrives_fenced(rig: Rig) -> None:
    room_id = await rig.room(direct=True)
    code = b"def hello():\n    return 'hi'\n"
    content = await rig.alice.media_content(
        "m.file", "hello.py", code, "text/x-python", caption="review this"
    )
    refusal = await rig.send(room_id, content)
    assert not refusal
    assert rig.last_question().startswith("review this\nhello.py\n```python\ndef hello():\n")


async def test_in_a_group_room_only_an_addressed_image_is_answered(rig: Rig) -> None:
    room_id = await rig.room()
    bot = rig.bot.user_id
    asked = len(rig.endpoint.bodies)
    name = f"{rig.bot.localpart}.png"  # holds the bot's display name: still no mention
    alone = await rig.alice.media_content("m.image", name, png("red"), "image/png")
    quiet_since = time.monotonic()
    await rig.alice.send_content(room_id, alone)
    mention = await rig.alice.media_content(
        "m.image", "cat.png", png("white"), "image/png", caption=f"{bot}: what is this?"
    )
    mention["m.mentions"] = {"user_ids": [bot]}
    refusal = await rig.send(room_id, mention)
    assert not refusal
    # Messages go in arrival order: had the first been answered, it would have been first.
    assert len(rig.endpoint.bodies) == asked + 1
    assert len(rig.alice.messages(room_id, bot, quiet_since)) == 1
    question = rig.last_question()
    assert question[0] == {"type": "text", "text": "what is this?"}
    assert shown_image(question).convert("RGB").getpixel((0, 0)) == (255, 255, 255)


async def test_a_file_with_a_lying_size_or_a_broken_link_is_answered_with_why(rig: Rig) -> None:
    """A file served larger than its event says was refused as "I could not download it;
    attach it again", which fails again the same way; a broken mxc link got no answer."""
    room_id = await rig.room(direct=True)
    content = await rig.alice.media_content(
        "m.file", "small.txt", b"hello world\n" * 20_000, "text/plain", caption="read this"
    )
    content["info"]["size"] = 100
    refusal = await rig.send(room_id, content)
    assert refusal.startswith("small.txt is larger than its message says (100 bytes)"), refusal
    for broken in ("mxc://", "mxc://a/../b"):
        content = {
            "msgtype": "m.image",
            "body": "what is this?",
            "filename": "x.png",
            "url": broken,
        }
        refusal = await rig.send(room_id, content)
        assert refusal == "I could not download x.png; attach it again.", refusal


async def test_a_voice_message_or_a_video_is_refused_with_why_not_passed_over(rig: Rig) -> None:
    """Matrix probe: a voice message (m.audio) or a video (m.video) in a direct chat got
    no answer at all; it is refused by its declared type, and never downloaded."""
    room_id = await rig.room(direct=True)
    for msgtype, name, mimetype in [
        ("m.audio", "Voice message.ogg", "audio/ogg"),
        ("m.video", "clip.mp4", "video/mp4"),
    ]:
        content = await rig.alice.media_content(msgtype, name, b"\x00" * 64, mimetype)
        refusal = await rig.send(room_id, content)
        assert refusal.startswith(f"{name} is "), refusal
        assert "which I do not read" in refusal, refusal


async def test_an_image_forwarded_from_a_room_of_the_other_kind_is_read(rig: Rig) -> None:
    """Matrix probe: an image whose content nio's own schema refuses went without a word,
    even in a direct chat: a plain `url` in an encrypted room (forwarded from a plain room:
    Element forwards the content as it was), a `file` in a plain room, and an encrypted
    file without its key. The first two are read; the last is said to be undownloadable."""
    encrypted = await rig.room(encrypted=True, direct=True)
    forwarded = await rig.alice.media_content(
        "m.image", "green.png", png("green"), "image/png", caption="What colour?"
    )
    assert "url" in forwarded and "file" not in forwarded
    assert not await rig.send(encrypted, forwarded)
    question = rig.last_question()
    assert question[0] == {"type": "text", "text": "What colour?"}
    assert shown_image(question).convert("RGB").getpixel((0, 0)) == (0, 128, 0)

    keyless = await rig.alice.media_content(
        "m.image", "red.png", png("red"), "image/png", encrypt=True
    )
    del keyless["file"]["key"]
    refusal = await rig.send(encrypted, keyless)
    assert refusal == "I could not download red.png; attach it again.", refusal

    plain = await rig.room(direct=True)
    from_encrypted = await rig.alice.media_content(
        "m.image", "blue.png", png("blue"), "image/png", encrypt=True
    )
    assert not await rig.send(plain, from_encrypted)
    assert shown_image(rig.last_question()).convert("RGB").getpixel((0, 0)) == (0, 0, 255)


async def test_a_sticker_is_read_as_an_image(rig: Rig) -> None:
    """Matrix probe: a sticker (an m.sticker event, not an m.room.message) in a direct
    chat got no answer at all, encrypted or not. It is an image the model sees, its
    description standing for its name."""
    for encrypted in (False, True):
        room_id = await rig.room(encrypted=encrypted, direct=True)
        url = await rig.alice.upload(png("yellow"), "image/png", "sticker.png")
        sticker = {
            "body": "A waving cat",
            "url": url,
            "info": {"mimetype": "image/png", "w": 48, "h": 36, "size": len(png("yellow"))},
        }
        asked = len(rig.endpoint.bodies)
        after = time.monotonic()
        response = await rig.alice.client.room_send(
            room_id, "m.sticker", sticker, ignore_unverified_devices=True
        )
        assert isinstance(response, nio.RoomSendResponse), response
        await rig.alice.reply_to(room_id, rig.bot.user_id, after, "the answer to a sticker")
        assert len(rig.endpoint.bodies) == asked + 1
        image = shown_image(rig.last_question())
        assert image.convert("RGB").getpixel((0, 0)) == (255, 255, 0)
    history = await rig.core.store.history(ChannelRef(Platform.MATRIX, room_id), 10)
    question = next(e for e in history if e.role is Role.USER and e.images)
    assert [i.name for i in question.images] == ["A waving cat"]


def images_sent(body: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The first pixel of every image one request carried, message by message."""
    found = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            for part in content:
                if part["type"] == "image_url":
                    data = part["image_url"]["url"].partition(";base64,")[2]
                    image = PILImage.open(io.BytesIO(base64.b64decode(data)))
                    found.append(image.convert("RGB").getpixel((0, 0)))
    return found


def reply(event_id: str, text: str, mention: str = "") -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": "m.text",
        "body": f"{mention}: {text}" if mention else text,
        "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
    }
    if mention:
        content["m.mentions"] = {"user_ids": [mention]}
    return content


async def test_a_question_replying_to_someone_elses_image_sends_it_with_the_question(
    rig: Rig,
) -> None:
    """Matrix probe: "@bot what is this?" in reply to bob's picture sent the model the
    text alone. The replied-to image (encrypted, or a sticker) goes after the question's
    own file, as if attached to it."""
    bot = rig.bot.user_id
    room_id = await rig.room(encrypted=True)
    picture = await rig.bob.media_content(
        "m.image", "red.png", png("red"), "image/png", encrypt=True
    )
    posted = await rig.bob.send_content(room_id, picture)
    assert not await rig.send(room_id, reply(posted, "what is this?", bot))
    question = rig.last_question()
    assert question[0] == {"type": "text", "text": "what is this?"}
    assert images_sent(rig.endpoint.bodies[-1]) == [(255, 0, 0)]

    # A reply with a file of its own: the question's file first, the replied one after.
    url = await rig.bob.upload(png("yellow"), "image/png", "sticker.png")
    sticker = {"body": "A waving cat", "url": url, "info": {"mimetype": "image/png"}}
    response = await rig.bob.client.room_send(
        room_id, "m.sticker", sticker, ignore_unverified_devices=True
    )
    assert isinstance(response, nio.RoomSendResponse), response
    own = await rig.alice.media_content(
        "m.image", "blue.png", png("blue"), "image/png", encrypt=True, caption=f"{bot}: and?"
    )
    own["m.mentions"] = {"user_ids": [bot]}
    own["m.relates_to"] = {"m.in_reply_to": {"event_id": response.event_id}}
    assert not await rig.send(room_id, own)
    assert shown_image_count(rig.last_question()) == 2
    # The turn before (red) is sent again as history; then blue, then the sticker.
    assert images_sent(rig.endpoint.bodies[-1]) == [(255, 0, 0), (0, 0, 255), (255, 255, 0)]
    history = await rig.core.store.history(ChannelRef(Platform.MATRIX, room_id), 10)
    asked = [e for e in history if e.role is Role.USER]
    assert [[i.name for i in e.images] for e in asked] == [
        ["red.png"],
        ["blue.png", "A waving cat"],
    ]


async def test_a_reply_to_a_question_held_or_to_the_bot_sends_no_image_twice(rig: Rig) -> None:
    """A reply to a question the conversation holds with its image (or to the bot's own
    answer) sends the question alone: the history carries that image already."""
    room_id = await rig.room(direct=True)
    content = await rig.alice.media_content("m.image", "green.png", png("green"), "image/png")
    after = time.monotonic()
    asked = await rig.alice.send_content(room_id, content)
    answer = await rig.alice.reply_to(room_id, rig.bot.user_id, after, "the first answer")
    assert not await rig.send(room_id, reply(asked, "bigger?"))
    assert rig.last_question() == "bigger?"
    assert images_sent(rig.endpoint.bodies[-1]) == [(0, 128, 0)]  # the history's, once
    assert not await rig.send(room_id, reply(answer.event.event_id, "and then?"))
    assert rig.last_question() == "and then?"
    assert images_sent(rig.endpoint.bodies[-1]) == [(0, 128, 0)]


def shown_image_count(content: Any) -> int:
    assert isinstance(content, list), content
    return sum(1 for p in content if p["type"] == "image_url")


async def test_a_file_that_cannot_be_downloaded_says_why_in_the_log(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The member is told "I could not download it"; the operator's log said only
    `DownloadFailed in bot/frontends/matrix/api.py:…`, or nothing at all for a file too
    large: not which file, nor whether the homeserver lost it or it failed its check."""
    caplog.set_level(logging.INFO)
    room_id = await rig.room(encrypted=True, direct=True)
    server = rig.bot.user_id.split(":", 1)[1]
    gone = {"msgtype": "m.image", "body": "gone.png", "url": f"mxc://{server}/NoSuchMedia"}
    assert await rig.send(room_id, gone) == "I could not download gone.png; attach it again."
    tampered = await rig.alice.media_content(
        "m.image", "green.png", png("green"), "image/png", encrypt=True
    )
    tampered["file"]["hashes"]["sha256"] = base64.b64encode(bytes(32)).decode().rstrip("=")
    assert await rig.send(room_id, tampered) == "I could not download green.png; attach it again."
    big = await rig.alice.media_content("m.file", "big.txt", b"x\n" * 100, "text/plain")
    big["info"]["size"] = 10**12
    refusal = await rig.send(room_id, big)
    assert refusal.startswith("big.txt is 953674.3 MB"), refusal
    said = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert any("gone.png" in m and "M_NOT_FOUND" in m for m in said), said
    assert any("green.png" in m and "failed its check" in m for m in said), said
    assert any(m.startswith("big.txt was not downloaded") for m in said), said


def edit(event_id: str, new: dict[str, Any]) -> dict[str, Any]:
    """An m.replace of `event_id` whose new content is `new`."""
    return {
        **new,
        "body": f"* {new['body']}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


async def test_an_edited_reply_to_someone_elses_file_keeps_the_files_text(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Matrix probe: a question replying to bob's text file, then edited, lost the file's
    text: the model read the edit alone from then on. It keeps its question as it was,
    as a question with a text file of its own does (its caption's edit changes nothing)."""
    caplog.set_level(logging.INFO, logger="bot.conversation")
    bot = rig.bot.user_id
    room_id = await rig.room()
    notes = await rig.bob.media_content("m.file", "notes.txt", b"the answer is 42", "text/plain")
    posted = await rig.bob.send_content(room_id, notes)
    asked = await rig.alice.send_content(room_id, reply(posted, "what does this say?", bot))
    await rig.alice.answer_to(room_id, bot, asked, 0, "the reply")
    ref = ChannelRef(Platform.MATRIX, room_id)

    async def questions() -> list[str]:
        return [e.content for e in await rig.core.store.history(ref, 10) if e.role is Role.USER]

    before = await questions()
    assert before == ["what does this say?\nnotes.txt\n```\nthe answer is 42\n```"], before
    await rig.alice.send_content(room_id, edit(asked, reply(posted, "what does it say?", bot)))
    await rig.alice.wait_for(
        lambda: any("kept as it was" in r.getMessage() for r in caplog.records),
        "the edit kept as it was",
    )
    assert await questions() == before


async def test_an_edited_caption_is_what_the_model_reads_next(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Matrix probe: a member who sent the bot a picture, then gave it a caption (or
    edited its caption, MSC2530 as Element X sends it) was never read: every edit of a
    file event was passed over. Its question reads as edited, its image kept; a text
    file's question keeps its text (the file's is folded into it)."""
    caplog.set_level(logging.INFO, logger="bot.conversation")
    room_id = await rig.room(direct=True)
    ref = ChannelRef(Platform.MATRIX, room_id)

    async def questions() -> list[tuple[str, int]]:
        history = await rig.core.store.history(ref, 10)
        return [(e.content, len(e.images)) for e in history if e.role is Role.USER]

    code = await rig.alice.media_content(
        "m.file", "hello.py", b"print('hi')\n", "text/x-python", caption="review this"
    )
    red = await rig.alice.media_content("m.image", "red.png", png("red"), "image/png")
    posted = []
    for content in (code, red):  # a direct chat's answers are plain: one at a time
        after = time.monotonic()
        posted.append(await rig.alice.send_content(room_id, content))
        await rig.alice.reply_to(room_id, rig.bot.user_id, after, "the bot's answer")
    filed, asked = posted
    before = await questions()
    assert before == [("review this\nhello.py\n```python\nprint('hi')\n```", 0), ("", 1)]

    await rig.alice.send_content(room_id, edit(asked, {**red, "body": "what colour is it?"}))
    deadline = time.monotonic() + 30
    while (now := await questions()) != [before[0], ("what colour is it?", 1)]:
        assert time.monotonic() < deadline, now
        await asyncio.sleep(0.2)
    await rig.alice.send_content(room_id, edit(filed, {**code, "body": "review this, please"}))
    await rig.alice.wait_for(
        lambda: any("kept as it was" in r.getMessage() for r in caplog.records),
        "the file's caption edit kept as it was",
    )
    assert await questions() == [before[0], ("what colour is it?", 1)]
    assert not await rig.send(room_id, {"msgtype": "m.text", "body": "thanks"})
    sent = [m["content"] for m in rig.endpoint.bodies[-1]["messages"] if m["role"] == "user"]
    assert sent[1][0] == {"type": "text", "text": "what colour is it?"}, sent[1]
    assert shown_image(sent[1]).convert("RGB").getpixel((0, 0)) == (255, 0, 0)


async def test_a_card_or_preset_sent_alone_is_not_asked_of_the_model(rig: Rig) -> None:
    """Matrix probe: in a direct chat a member sends a character card (PNG or JSON) before
    replying `!character import` to it, as people do; the bot asked the model about the
    bare file (a paid call) and kept the card's text in the history. Alone, a card or a
    preset is said what it is and how to import it; the model is not asked, nothing is
    kept, and a reply asking about it (or the card with a question) is a question."""
    room_id = await rig.room(direct=True)
    ref = ChannelRef(Platform.MATRIX, room_id)
    card = json.dumps(CARD).encode()
    image = png_with({"chara": base64.b64encode(card).decode()})
    sent = [
        ("m.file", "aurelia.png", image, "image/png"),
        ("m.image", "aurelia.png", image, "image/png"),
        ("m.file", "aurelia.json", card, "application/json"),
    ]
    for msgtype, name, data, mimetype in sent:
        content = await rig.alice.media_content(msgtype, name, data, mimetype)
        said = await rig.send(room_id, content)  # "" had the model been asked
        assert said.startswith("That is a SillyTavern character card, so I did not send it"), said
        assert "To make it this direct chat's character, reply `!character import` to it" in said
        assert "reply to it with your question" in said
    preset = await rig.alice.media_content(
        "m.file", "Default.json", json.dumps(ST_DEFAULT).encode(), "application/json"
    )
    said = await rig.send(room_id, preset)
    assert said.startswith("That is a SillyTavern Chat Completion preset"), said
    assert "reply `!preset import` to it" in said
    assert await rig.core.store.history(ref, 10) == []  # nothing kept

    # A reply asking about the card sends it with the question.
    after = time.monotonic()
    posted = await rig.alice.send_content(
        room_id, await rig.alice.media_content("m.file", "aurelia.json", card, "application/json")
    )
    await rig.alice.reply_to(room_id, rig.bot.user_id, after, "the hint")
    assert not await rig.send(room_id, reply(posted, "who is she?"))
    assert "Captain Aurelia Voss" in rig.last_question()
    # With a question of its own, a card is a question.
    asked = await rig.alice.media_content(
        "m.file", "aurelia.png", image, "image/png", caption="what do you think of her?"
    )
    assert not await rig.send(room_id, asked)


async def test_a_members_card_alone_is_said_without_the_admins_import(rig: Rig) -> None:
    """In a room answering every message, a member who may not import a card sends one:
    a short note, not the model, and no command that is not theirs."""
    room_id = await rig.room()
    bot = rig.bot.user_id
    assert "always" in await rig.alice.command(room_id, bot, "!reply mode always")
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    content = await rig.bob.media_content("m.file", "aurelia.png", image, "image/png")
    asked = len(rig.endpoint.bodies)
    after = time.monotonic()
    await rig.bob.send_content(room_id, content)
    said = await rig.bob.reply_to(room_id, bot, after, "the note")
    assert len(rig.endpoint.bodies) == asked
    assert str(said.content["body"]) == (
        "That is a SillyTavern character card, so I did not send it to the model.\n"
        "To ask me about it instead, reply to it with your question."
    )
