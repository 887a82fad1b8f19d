"""Attachments through a real Core: images shown to models that see, files as text,
refusals, the history sending the newest images again, /reset forgetting them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import respx
from PIL import Image as PILImage
from sqlalchemy import func, select, update

from bot.conversation.budget import estimate_image_tokens, estimate_tokens
from bot.core import Core, TurnLimits
from bot.fields import DEFAULT_CONTEXT_TOKENS
from bot.media import MAX_EDGE
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.store.models import BlobRow, UsageRow
from bot.types import (
    Actor,
    Attachment,
    ChannelConfig,
    ChannelRef,
    Incoming,
    Platform,
    Replied,
    Scope,
    SecretValue,
    Source,
)
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.unit.media.samples import jpeg_claiming

REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
ADMIN = Actor("u1", "Ada", is_channel_admin=True)


def png(color: str, size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def attach(name: str, data: bytes, content_type: str = "", size: int = 0) -> Attachment:
    async def fetch(limit: int) -> bytes:
        return data

    return Attachment(name, content_type, size or len(data), fetch)


def undeclared(name: str, data: bytes) -> Attachment:
    async def fetch(limit: int) -> bytes:
        return data

    return Attachment(name, "", 0, fetch)


class Sink:
    def __init__(self) -> None:
        self.final: tuple[str, str | None] | None = None

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        return None

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.final = (answer, error)


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script(chunks=["Seen."])) as fake:
        yield fake


@pytest.fixture
async def core(tmp_path: Path, endpoint: FakeOpenAI) -> AsyncIterator[Core]:
    url = f"sqlite+aiosqlite:///{tmp_path}/images.db"
    await upgrade_to_head(url)
    defaults = ChannelConfig.of(source=Source.CUSTOM, model="m-small", proxy_url=endpoint.url_v1)
    store = await Store.open(url, SecretBox.from_setting(generate_key()), defaults=defaults)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    core = Core(store, hub, limits=TurnLimits(max_images=2, max_attachment_bytes=200_000))
    try:
        yield core
    finally:
        await core.close()


async def say(core: Core, text: str, *attachments: Attachment) -> tuple[str, str | None]:
    sink = Sink()
    await core.chat(Incoming(REF, ADMIN, text, attachments), sink)
    assert sink.final is not None
    return sink.final


async def command(core: Core, text: str) -> str:
    return (await core.run_text_command(Incoming(REF, ADMIN, text))).text


def last_user(endpoint: FakeOpenAI) -> object:
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    return messages[-1]["content"]


def image_urls(content: object) -> list[str]:
    assert isinstance(content, list), content
    return [p["image_url"]["url"] for p in content if p["type"] == "image_url"]


async def test_an_image_goes_to_a_model_that_sees(core: Core, endpoint: FakeOpenAI) -> None:
    assert "vision set to on" in await command(core, "/params vision on")
    answer, error = await say(core, "What colour?", attach("red.png", png("red"), "image/png"))
    assert (answer, error) == ("Seen.", None)
    content = last_user(endpoint)
    assert isinstance(content, list) and content[0] == {"type": "text", "text": "What colour?"}
    [url] = image_urls(content)
    assert url.startswith("data:image/png;base64,")
    sent = PILImage.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (40, 30)


async def test_the_newest_image_turns_are_sent_again_older_ones_named(
    core: Core, endpoint: FakeOpenAI
) -> None:
    await command(core, "/params vision on")
    for color in ("red", "green", "blue"):
        await say(core, f"this is {color}", attach(f"{color}.png", png(color)))
    await say(core, "which colours did you see?")
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert users[0] == "this is red [image: red.png]"  # older than the 2 newest: named
    assert len(image_urls(users[1])) == 1 and len(image_urls(users[2])) == 1
    assert users[3] == "which colours did you see?"


async def test_a_model_not_known_to_see_gets_the_text_and_a_note_once(
    core: Core, endpoint: FakeOpenAI
) -> None:
    first, _ = await say(core, "look", attach("red.png", png("red")))
    assert first.startswith("(The image was not sent: m-small is not known to see images.")
    assert "/params name:vision value:on" in first and first.endswith("Seen.")
    assert last_user(endpoint) == "look [image: red.png]"
    second, _ = await say(core, "again", attach("blue.png", png("blue")))
    assert second == "Seen."  # said once per channel
    # A message without images still sends the history's: named, not as images (they
    # went as image_url parts, and a text-only server failed every turn after).
    third, _ = await say(core, "and now?")
    assert third == "Seen."
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    assert all(isinstance(m["content"], str) for m in messages), messages
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "look [image: red.png]",
        "again [image: blue.png]",
        "and now?",
    ]
    # What was shown is what is stored: the note is not part of the answer.
    history = await core.store.history(REF, 10)
    assert history[1].content == "Seen."


async def test_a_file_too_long_to_send_whole_is_cut_and_the_asker_told(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """The model got the start of a 1.2 MB log and a line saying how much was left out;
    the person who attached it saw only the answer, with no word that most was dropped."""
    big = "".join(f"line {i:07d}\n" for i in range(14_000)).encode()  # 182 KB of text
    answer, error = await say(core, "summarize", attach("big.log", big), attach("a.txt", b"hi"))
    assert error is None
    assert answer.startswith("(big.log is too long to send whole: the model read only its start.)")
    assert answer.endswith("Seen.")
    content = last_user(endpoint)
    assert isinstance(content, str) and "characters left out]" in content
    assert len(content) < len(big)
    # Stored as the model's answer alone: the note was for the person, not the history.
    assert (await core.store.history(REF, 10))[-1].content == "Seen."
    # A file that fits is sent whole, without a word.
    answer, _ = await say(core, "and this?", attach("short.txt", b"a few words"))
    assert answer == "Seen."


async def test_a_file_fits_the_context_as_the_history_counts_it_in_any_script(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Files were cut at three characters a token: 10,700 characters of Chinese counted
    32,000 tokens by the estimate the history is budgeted with, four times the context."""
    chinese = ("这是一个很长的中文文件，用来测试上下文的预算。" * 1_000).encode()
    answer, error = await say(core, "summarize", attach("notes.txt", chinese))
    assert error is None and answer.endswith("Seen.")
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    sent = sum(estimate_tokens(str(m["content"])) for m in messages)
    assert sent <= DEFAULT_CONTEXT_TOKENS, sent
    assert "characters left out]" in last_user(endpoint)


async def test_text_code_and_pdf_files_become_fenced_text(core: Core, endpoint: FakeOpenAI) -> None:
    code = b"def hello():\n    return 'hi'\n"
    await say(core, "review this", attach("hello.py", code, "text/x-python"))
    content = last_user(endpoint)
    assert isinstance(content, str)
    assert content.startswith("review this\nhello.py\n```python\ndef hello():")
    assert content.rstrip().endswith("```")
    pdf = io.BytesIO()
    PILImage.new("RGB", (10, 10), "white").save(pdf, "PDF")  # a page with no text layer
    refused, _ = await say(core, "read it", attach("scan.pdf", pdf.getvalue()))
    assert "no text layer" in refused
    assert len(endpoint.requests) == 1  # the refused turn sent nothing


async def test_a_log_a_crash_padded_with_nuls_is_read(core: Core, endpoint: FakeOpenAI) -> None:
    """Media probe: the NULs a crash leaves at the end of a log made it "a binary file"."""
    log = b"10:00:01 started\n10:00:02 worker 3 died\n" + bytes(16_384)
    answer, error = await say(core, "why did it stop?", attach("app.log", log, "text/plain"))
    assert error is None and answer == "Seen."
    assert last_user(endpoint) == (
        "why did it stop?\napp.log\n```\n10:00:01 started\n10:00:02 worker 3 died\n```"
    )


async def test_a_log_copytruncate_left_starting_with_nuls_is_read(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Media probe: a log logrotate's copytruncate emptied under its writer starts with
    NULs (the writer carries on at its old offset) and was "a binary file"."""
    log = bytes(16_384) + b"10:00:01 rotated\n10:00:02 worker 3 died\n"
    answer, error = await say(core, "why did it stop?", attach("app.log", log, "text/plain"))
    assert error is None and answer == "Seen."
    assert last_user(endpoint) == (
        "why did it stop?\napp.log\n```\n10:00:01 rotated\n10:00:02 worker 3 died\n```"
    )


async def test_cjk_notes_in_utf16_without_a_bom_are_read(core: Core, endpoint: FakeOpenAI) -> None:
    """Media probe: Japanese notes a Windows tool saved as UTF-16 without a BOM were
    refused as a binary file (few of their bytes are NULs: only their line ends')."""
    notes = "会議のメモ。\r\n明日は晴れるでしょう。\r\n"
    data = notes.encode("utf-16-le")
    answer, error = await say(core, "summarise", attach("memo.txt", data, "text/plain"))
    assert error is None and answer == "Seen."
    assert last_user(endpoint) == (
        "summarise\nmemo.txt\n```\n会議のメモ。\n明日は晴れるでしょう。\n```"
    )


@pytest.mark.parametrize(
    ("attachments", "says"),
    [
        (
            [attach(f"p{i}.png", png("red"), "image/png") for i in range(3)],
            "You attached 3 images; I take at most 2",
        ),
        ([attach("tool.exe", b"MZ\x90\x00" + bytes(200))], "looks like a binary file"),
        ([attach("huge.png", b"x", "image/png", size=5_000_000)], "I take files up to"),
        # Served larger than declared: refused by what came, however much the platform sent.
        (
            [attach("liar.png", bytes(300_000), "image/png", size=10)],
            "liar.png is larger than its message says (10 bytes), so I did not read it.",
        ),
        ([attach("fake.png", bytes(range(256)) * 4, "image/png")], "fake.png"),
        ([Attachment("gone.png", "image/png", 10, None)], "could not get gone.png"),
        # Media probe: 544 bytes claiming 13,000×13,000 progressive pixels took 1 GB to
        # decode, at 1/8 scale; refused before it is, the limit and the next step said.
        (
            [attach("bomb.jpg", jpeg_claiming(10_000, 10_000), "image/jpeg")],
            "bomb.jpg is too large (10000×10000 pixels); progressive JPEG images up to 31 "
            "megapixels are accepted. Scale it down and attach it again.",
        ),
        # Media probe: ten 4 MB text files were read together (and as many PDFs).
        (
            [attach(f"n{i}.txt", b"note\n") for i in range(11)],
            "You attached 11 files; I take at most 10 per message.",
        ),
        (
            [attach(f"big{i}.txt", b"x" * 190_000) for i in range(3)],
            "Your files come to 0.5 MB together; I take up to 0.4 MB in one message.",
        ),
        # Review: a platform that declares no size (Matrix m.file without info.size).
        (
            [undeclared(f"big{i}.txt", b"x" * 190_000) for i in range(3)],
            "Your files come to 0.5 MB together; I take up to 0.4 MB in one message.",
        ),
    ],
)
async def test_bad_attachments_get_a_clear_refusal_and_nothing_is_sent(
    core: Core, endpoint: FakeOpenAI, attachments: list[Attachment], says: str
) -> None:
    answer, _ = await say(core, "look", *attachments)
    assert says in answer
    assert not endpoint.requests
    assert await core.store.history(REF, 10) == []


@pytest.mark.parametrize(
    ("own", "whose", "then"),
    [
        (
            (),
            "The files of the message you replied to come to",
            "Ask without replying to it, and attach the ones you mean.",
        ),
        (
            (attach("mine.txt", b"x" * 100_000),),
            "Your files and those of the message you replied to come to",
            "Send fewer, or ask without replying to it.",
        ),
    ],
    ids=["theirs", "both"],
)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
async def test_files_too_large_together_in_the_replied_message_are_said_to_be_its(
    core: Core,
    endpoint: FakeOpenAI,
    own: tuple[Attachment, ...],
    whose: str,
    then: str,
    declared: bool,
) -> None:
    """Review: a reply to someone's message with large files, attaching none, was told
    "Your files and those of the message you replied to come to 0.5 MB together … Send
    them in separate messages": it sent none, and cannot send someone else's apart. By
    their declared sizes, or by what came (a platform that declares none)."""
    make = attach if declared else undeclared
    theirs = tuple(make(f"big{i}.txt", b"x" * 190_000) for i in range(3))
    sink = Sink()
    await core.chat(Incoming(REF, ADMIN, "sum up", own, "q1", Replied("p1", theirs)), sink)
    assert sink.final is not None
    said, _ = sink.final
    assert said.startswith(whose) and said.endswith(f"in one message. {then}"), said
    assert "MB together; I take up to 0.4 MB" in said, said
    assert not endpoint.requests


async def test_reset_forgets_the_images_too(core: Core, endpoint: FakeOpenAI) -> None:
    await command(core, "/params vision on")
    await say(core, "keep this", attach("red.png", png("red")))

    async def blobs() -> int:
        async with core.store.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(BlobRow)) or 0)

    assert await blobs() == 1
    assert "Forgot 2 messages" in await command(core, "/reset")
    assert await blobs() == 0


async def test_images_past_their_retention_are_pruned_though_no_image_comes_after(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Media probe: only a turn that carried an image pruned; a channel where none came
    after kept its images past MEDIA_RETENTION_DAYS for good. The running bot's
    housekeeping prunes them (at start, then every HOUSEKEEPING_SECONDS)."""
    await command(core, "/params vision on")
    await say(core, "keep this", attach("red.png", png("red")))
    await say(core, "and this", attach("blue.png", png("blue")))
    async with core.store.engine.begin() as conn:
        await conn.execute(
            update(BlobRow)
            .where(BlobRow.created_at == select(func.min(BlobRow.created_at)).scalar_subquery())
            .values(created_at=datetime.now(UTC) - timedelta(days=31))  # retention: 30
        )
    runs = asyncio.create_task(core.keep_house(every=0.01))
    try:
        for _ in range(500):
            async with core.store.engine.connect() as conn:
                left = int(await conn.scalar(select(func.count()).select_from(BlobRow)) or 0)
            if left == 1:
                break
            await asyncio.sleep(0.01)
    finally:
        runs.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runs
    assert left == 1
    await say(core, "which colours?")
    users = [m["content"] for m in endpoint.requests[-1]["messages"] if m["role"] == "user"]
    assert users[0] == "keep this [image: red.png]"  # gone: named
    assert len(image_urls(users[1])) == 1


async def test_a_failure_after_images_sent_by_an_admins_choice_says_how_to_undo_it(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A text-only server fails a turn with an image in it in its own words ("ended the
    stream", an error event): with vision forced on, the likeliest cause is named."""
    await command(core, "/params vision on")
    endpoint.script = Script(chunks=["never"], fail_after=0)
    _, error = await say(core, "look", attach("red.png", png("red")))
    assert error is not None and "overloaded" in error
    assert "sent images because /params name:vision is on" in error
    assert "an admin sets /params name:vision value:default" in error
    # Without an image in the request, the same failure is only itself.
    await command(core, "/reset")
    _, error = await say(core, "hello")
    assert error is not None and "overloaded" in error and "vision" not in error


async def test_a_key_inside_a_message_or_its_file_is_never_sent(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Not only a message that is nothing but a key: one in a sentence, after a hidden
    character, or in an attached file went to the model and into the history."""
    key = "sk-proj-Zq8vR2mN4kL7pX1wT9yB3c"
    for text in (f"my key is {key} ok?", f"\u200b!key set openai {key}"):
        answer, _ = await say(core, text)
        assert "holds what looks like a key or password" in answer and key not in answer
    answer, _ = await say(core, "what is this?", attach("notes.txt", f"OPENAI={key}\n".encode()))
    assert answer.startswith("That file holds what looks like a key or password")
    answer, _ = await say(core, "and this?", attach(f"{key}.txt", b"plain words"))
    assert answer.startswith("That file holds what looks like a key or password")
    answer, _ = await say(core, "and this?", attach(f"{key}.png", png("red")))  # sent as
    assert answer.startswith("That file holds what looks like a key or password")  # [image: name]
    # The channel's own password inside a file is said to be in the file (new surfaces
    # probe: "That message holds …").
    await core.store.set_secret(
        REF, Scope.CHANNEL, "proxy_password", SecretValue("hunter2hunter"), ADMIN
    )
    answer, _ = await say(core, "read it", attach("pw.txt", b"the password: hunter2hunter\n"))
    assert answer.startswith("That file holds what looks like a key or password"), answer
    assert endpoint.requests == []
    assert await core.store.history(REF, 10) == []


@pytest.mark.parametrize(
    "secret", ["sk-proj-Zq8vR2mN4kL7pX1wT9yB3cQ5", "channel-proxy-password-7Hq2"]
)
async def test_a_key_cut_in_two_where_a_long_file_is_cut_is_never_sent(
    core: Core, endpoint: FakeOpenAI, secret: str
) -> None:
    """Media probe: a one-line log trimmed to the context inside a key sent the key's
    first characters, too few for the key check to know it (a channel's password too);
    the file is refused as one holding the whole key is, and nothing is sent or kept."""
    await core.store.set_secret(
        REF, Scope.CHANNEL, "proxy_password", SecretValue("channel-proxy-password-7Hq2"), ADMIN
    )
    # Words of the secret's shape that are not it: the file is cut where it would be.
    decoy = "x" + secret[1:] if secret.startswith("sk-") else secret[:-1] + "0"
    for pad in range(0, 40, 3):  # until the cut leaves 6 to 15 characters of one before it
        filler = "." * pad + (" " + decoy) * (150_000 // (len(decoy) + 1))
        await say(core, "summarize", attach("one.log", filler.encode()))
        note = re.search(r"\[… ([\d,]+) of [\d,]+ characters left out\]", str(last_user(endpoint)))
        assert note is not None
        kept = len(filler) - int(note[1].replace(",", ""))
        start = filler.rfind(" ", 0, kept) + 1
        if 6 <= kept - start <= 15:
            break
    else:
        pytest.fail("no cut inside a word")
    sent = len(endpoint.requests)
    text = filler[:start] + secret + filler[start + len(secret) :]
    answer, _ = await say(core, "and this?", attach("two.log", text.encode()))
    assert answer.startswith("That file holds what looks like a key or password"), answer
    assert len(endpoint.requests) == sent
    assert len(await core.store.history(REF, 100)) == 2 * sent  # the earlier turns only


async def test_the_history_is_trimmed_to_make_room_for_the_images_sent(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Context probe: images were not counted in the budget, so a small-context vision
    model (llava, Qwen-VL on llama.cpp) got all the text the context held and an image
    on top, and refused the request. The oldest turns now make room for it."""
    await command(core, "/params vision on")
    await command(core, "/params context 1024")
    await command(core, "/params max_tokens 100")
    questions = [f"question {i}: " + "tell me more about the weather " * 12 for i in range(6)]
    for question in questions:
        await say(core, question)
    assert len(endpoint.requests[-1]["messages"]) == 11  # the text alone fits whole
    answer, error = await say(core, "what is this?", attach("map.png", png("red", (560, 560))))
    assert (answer, error) == ("Seen.", None)
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert len(image_urls(users[-1])) == 1  # the image went
    # A 560×560 image is 578 tokens by the estimate for endpoints like this one.
    image = estimate_image_tokens(Source.CUSTOM, 560, 560)
    assert image == 578
    text = sum(
        estimate_tokens(m["content"] if isinstance(m["content"], str) else "what is this?")
        for m in messages
    )
    assert text + image <= 1024 - 100, (text, image)
    assert questions[0].strip() not in users and questions[-1].strip() in users  # oldest out
    assert users[0].startswith("question ")  # from a question, as the templates need


async def test_an_image_larger_than_the_whole_context_is_not_sent_and_says_why(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """The question's own image cannot fit a context set with /params context: the
    asker is told so before anything is sent or charged, as for a long message."""
    await command(core, "/params vision on")
    await command(core, "/params context 1024")
    await command(core, "/params max_tokens 100")
    answer, error = await say(core, "look", attach("wall.png", png("red", (1000, 1000))))
    # Not "It was sent images because /params vision is on": nothing was sent.
    assert answer == "" and error == (
        "This was not sent to the model: it cannot fit the context. Your image (about "
        "1,298 tokens) and your message (about 5 tokens) come to about 1,303 tokens, more "
        "than the whole 1,024-token context set with /params name:context. Ask without it, or "
        "attach a smaller one (fewer pixels)."
    )
    assert endpoint.requests == []
    async with core.store.engine.connect() as conn:
        assert (await conn.execute(select(UsageRow.__table__))).all() == []  # nor charged
    # A smaller one goes.
    answer, error = await say(core, "look", attach("small.png", png("red", (200, 200))))
    assert (answer, error) == ("Seen.", None)
    assert len(image_urls(last_user(endpoint))) == 1


async def test_a_message_too_long_for_the_context_blames_no_image(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A turn refused before it was sent (it cannot fit the context set) said "It was
    sent images because /params vision is on" when it had an image: nothing had been
    sent, and the image was not why."""
    await command(core, "/params vision on")
    await command(core, "/params context 1024")
    await command(core, "/params max_tokens 100")
    _, error = await say(core, "word " * 1500, attach("red.png", png("red")))
    assert error is not None and error.startswith("This was not sent to the model")
    assert error.endswith("Shorten your message or split it up."), error
    assert endpoint.requests == []


async def test_a_model_refusing_a_request_with_images_as_too_long_names_them(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Context probe: a small-context vision model refused a turn with an image as over
    its context, and the advice named /reset and /params context, not the images (a
    local model may count them higher than the estimate does)."""
    await command(core, "/params vision on")
    over = {
        "error": {
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
        }
    }
    with respx.mock:
        respx.post(f"{endpoint.url_v1}/chat/completions").mock(
            return_value=httpx.Response(400, json=over)
        )
        _, error = await say(core, "look", attach("red.png", png("red")))
    assert error is not None and "/params name:context to the model's context size" in error
    assert (
        "Images take much of a small context, and the newest turns' images are sent again "
        "with each message: ask without one, or /reset forgets them."
    ) in error
    with respx.mock:  # without an image in the request, the advice is the usual one
        respx.post(f"{endpoint.url_v1}/chat/completions").mock(
            return_value=httpx.Response(400, json=over)
        )
        await command(core, "/reset")
        _, error = await say(core, "hello")
    assert error is not None and "Images" not in error


async def test_a_thin_image_counts_as_its_few_tiles_for_openai(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """OpenAI's rule scales an image down to a short side of 768 px, never up: a line of
    text 100 px high was counted as if enlarged to 12,042×768 (48 tiles, about 8,245
    tokens), and the turn refused as larger than a 4,096-token context."""
    await command(core, "/source openai")
    await command(core, "/model gpt-4o")
    await command(core, "/params vision on")
    await command(core, "/params context 4096")
    line = attach("line.png", png("white", (MAX_EDGE, 100)))
    assert await say(core, "what does it say?", line) == ("Seen.", None)
    assert len(image_urls(last_user(endpoint))) == 1
