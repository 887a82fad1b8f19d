"""Attachments through the real discord.py client: the bytes come from Discord's CDN
(simcord's), the core shows images to a model that sees, text files arrive fenced."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
import simcord
from PIL import Image as PILImage

from tests.discord.conftest import World
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages, ref_of, reply_text

pytestmark = pytest.mark.simcord(settle_timeout=30)


def png(color: str, size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def last_user_content(endpoint: FakeOpenAI) -> Any:
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    return messages[-1]["content"]


def image_urls(content: Any) -> list[str]:
    assert isinstance(content, list), content
    return [p["image_url"]["url"] for p in content if p["type"] == "image_url"]


async def vision_on(world: World) -> None:
    result = await world.admin.slash(world.channel, "params", name="vision", value="on")
    assert "vision set to on" in reply_text(result)


async def test_an_image_with_only_a_mention_reaches_a_model_that_sees(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    await vision_on(world)
    await world.member.send(
        world.channel, f"<@{world.bot_id}>", attachments=[("red.png", png("red"))]
    )
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]
    [url] = image_urls(last_user_content(endpoint))
    kind, _, data = url.partition(";base64,")
    assert kind in ("data:image/png", "data:image/jpeg")
    sent = PILImage.open(io.BytesIO(base64.b64decode(data)))
    assert sent.size == (40, 30)
    [question, _] = await core.store.history(ref_of(world.channel, world.guild), 10)
    assert question.content == "" and [i.name for i in question.images] == ["red.png"]


async def test_an_image_without_a_mention_is_not_answered(
    world: World, endpoint: FakeOpenAI
) -> None:
    await vision_on(world)
    await world.member.send(world.channel, attachments=[("red.png", png("red"))])
    assert bot_messages(world.channel, world.bot_id) == []
    assert endpoint.requests == []


async def test_a_code_file_arrives_fenced_in_the_question(
    world: World, endpoint: FakeOpenAI
) -> None:
    code = b"def hello():\n    return 'hi'\n"
    await world.member.send(
        world.channel, f"<@{world.bot_id}> review this", attachments=[("hello.py", code)]
    )
    content = last_user_content(endpoint)
    assert isinstance(content, str)
    assert content.startswith("review this\nhello.py\n```python\ndef hello():\n")
    assert content.rstrip().endswith("```")


async def test_too_many_images_are_refused_and_nothing_is_sent(
    world: World, endpoint: FakeOpenAI
) -> None:
    await vision_on(world)
    images = [(f"p{i}.png", png("blue")) for i in range(5)]  # the default limit is 4
    await world.member.send(world.channel, f"<@{world.bot_id}> look", attachments=images)
    [refusal] = bot_messages(world.channel, world.bot_id)
    assert "You attached 5 images; I take at most 4" in refusal
    assert endpoint.requests == []


async def test_the_bytes_come_from_the_cdn_and_a_missing_file_is_refused(
    world: World, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    cdn = world.env.backend.cdn
    fetched: list[str] = []
    served = cdn.get

    def get(url: str) -> bytes | None:
        fetched.append(url)
        return served(url)

    monkeypatch.setattr(cdn, "get", get)
    await world.member.send(
        world.channel, f"<@{world.bot_id}> read", attachments=[("notes.txt", b"hello")]
    )
    [url] = fetched
    assert url.startswith("https://cdn.simcord.invalid/attachments/") and url.endswith("notes.txt")
    assert "```\nhello\n```" in last_user_content(endpoint)
    # An expired or deleted CDN file: the core says so, and asks nothing.
    monkeypatch.setattr(cdn, "get", lambda url: None)
    await world.member.send(
        world.channel, f"<@{world.bot_id}> read", attachments=[("gone.txt", b"hello")]
    )
    assert bot_messages(world.channel, world.bot_id)[-1] == (
        "I could not download gone.txt; attach it again."
    )
    assert len(endpoint.requests) == 1


async def test_a_file_alone_in_a_direct_message_is_answered(
    simcord_env: simcord.Env, endpoint: FakeOpenAI
) -> None:
    user = simcord_env.create_user("dora")
    files = simcord_env.backend.store_attachments(user.dm_channel.id, [("todo.md", b"- milk\n")])
    await user.send_dm("", attachments=files)
    assert simcord_env.bot.user is not None
    assert bot_messages(user.dm_channel, simcord_env.bot.user.id) == ["Hello there!"]
    assert last_user_content(endpoint).strip() == "todo.md\n```markdown\n- milk\n```"


async def test_a_refused_file_named_with_a_key_is_not_named_back(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Hostile probe: a binary file named `sk-….bin` was refused with its name, so the
    bot's own message (which its sender cannot delete) repeated the key."""
    key = "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4"
    await world.member.send(
        world.channel, f"<@{world.bot_id}> look", attachments=[(f"{key}.bin", bytes(range(256)))]
    )
    [refusal] = bot_messages(world.channel, world.bot_id)
    assert key not in refusal and key[:12] not in refusal
    assert "looks like a binary file" in refusal
    assert endpoint.requests == []


async def test_svg_files_are_read_as_text_not_counted_as_images(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Hostile probe: five SVGs (Discord declares them image/svg+xml) were refused as "You
    attached 5 images", though an SVG is XML and goes to the model as a text file."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
    files = [(f"icon{i}.svg", svg) for i in range(5)]
    await world.member.send(world.channel, f"<@{world.bot_id}> review these", attachments=files)
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]
    content = last_user_content(endpoint)
    assert isinstance(content, str) and content.count("```xml\n<svg") == 5


async def test_an_image_alone_for_a_model_not_shown_it_is_named_without_a_leading_space(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Files probe: a picture sent with only the mention, where `/params vision off`
    keeps images from the model, reached it as " [image: red.png]": its name was joined
    to the (empty) text with a space."""
    result = await world.admin.slash(world.channel, "params", name="vision", value="off")
    assert "vision set to off" in reply_text(result)
    await world.member.send(
        world.channel, f"<@{world.bot_id}>", attachments=[("red.png", png("red"))]
    )
    [shown] = bot_messages(world.channel, world.bot_id)
    assert shown.startswith("(The image was not sent: images are turned off here")
    assert last_user_content(endpoint) == "[image: red.png]"


async def test_a_refusal_of_files_the_question_replies_to_says_whose_they_are(
    world: World, endpoint: FakeOpenAI
) -> None:
    """A reply to a message with too many images said "You attached 6 images" to someone
    who attached none, and a reply to a voice message told them to attach other files."""
    await vision_on(world)
    pictures = [(f"p{i}.png", png("red")) for i in range(6)]
    many = await world.admin.send(world.channel, "holiday", attachments=pictures)
    voice = await world.admin.send(
        world.channel, attachments=[("voice-message.ogg", b"OggS" + bytes(60))]
    )
    mine = [("mine.png", png("blue"))]
    await world.member.send(world.channel, f"<@{world.bot_id}> best one?", reply_to=many)
    await world.member.send(world.channel, f"<@{world.bot_id}> or", reply_to=many, attachments=mine)
    await world.member.send(world.channel, f"<@{world.bot_id}> what did she say?", reply_to=voice)
    assert bot_messages(world.channel, world.bot_id) == [
        "The message you replied to has 6 images; I take at most 4 per message. Ask without "
        "replying to it, and attach the ones you mean.",
        "You attached 1 image and the message you replied to has 6: 7 together; I take at "
        "most 4 per message. Send fewer, or ask without replying to it.",
        "In the message you replied to: voice-message.ogg is audio (a voice message or a "
        "recording), which I do not read; attach text, Markdown, source code, JSON, CSV, logs "
        "or PDF files, or JPEG, PNG, GIF or WebP images, or write your question.",
    ]
    assert endpoint.requests == []
