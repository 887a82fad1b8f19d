"""SillyTavern's Claude prefill settings through the real Core: a preset's assistant
prefill and continue prefill, /prompts and /params, and the exact request Claude gets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import respx

from bot.commands import Invocation
from bot.providers import CONTINUE_INSTRUCTION
from bot.types import Scope
from tests.integration.conftest import ADMIN, MEMBER, REF, SERVER_ADMIN, Harness, make_core
from tests.integration.test_characters import CARD, card_file, run
from tests.integration.test_chat import FAKE, CollectingSink, ask


def claude_stream(*texts: str) -> httpx.Response:
    """Claude's named events streaming `texts` as text deltas, then the end."""
    usage = {"input_tokens": 20, "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": usage}}),
        ("content_block_start", {"type": "content_block_start", "index": 0}),
    ]
    for text in texts:
        delta = {"type": "text_delta", "text": text}
        events.append(("content_block_delta", {"type": "content_block_delta", "delta": delta}))
    end = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}
    events += [("message_delta", end), ("message_stop", {"type": "message_stop"})]
    body = "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


async def configure_claude(h: Harness, **extra: object) -> None:
    await h.store.update_config(
        REF,
        Scope.CHANNEL,
        ADMIN,
        {"source": "claude", "proxy_url": FAKE, "model": "claude-x", **extra},
        action="test setup",
    )


async def continue_answer(h: Harness) -> CollectingSink:
    sink = CollectingSink()
    await h.core.run_control(REF, MEMBER, Invocation(("continue",), {}), sink)
    return sink


PREFILLED = {
    "temperature": 0.5,
    "assistant_prefill": "Understood. {{char}} answers {{user}}:\n",
    "continue_prefill": True,
}


async def test_a_presets_assistant_prefill_begins_claudes_answer_and_is_not_shown(
    database_url: str,
) -> None:
    core = await make_core(database_url)
    try:
        harness = Harness(core, core.store, database_url)
        await configure_claude(harness)
        reply = await run(harness, ("preset", "import"), file=card_file(PREFILLED, "p.json"))
        assert reply.ok, reply.text
        assert "assistant_prefill=Understood. {{char}} answers {{user}}:" in reply.text
        assert "continue_prefill=on" in reply.text and "Ignored" not in reply.text, reply.text
        with respx.mock:
            route = respx.post(f"{FAKE}/messages").mock(
                return_value=claude_stream("\n", "Hello, Bob.")
            )
            sink = await ask(harness, "Hi")
        body = json.loads(route.calls.last.request.content)
        # As SillyTavern sends it: the last turn is the assistant's, macros replaced, no
        # trailing whitespace (Claude refuses one).
        assert body["messages"] == [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Understood. Assistant answers Bob:"},
        ]
        # What Claude wrote after it is the answer, as SillyTavern shows it: not the prefill.
        assert sink.error is None and sink.final == "Hello, Bob."
        [_, answer] = await harness.store.history(REF, 10)
        assert answer.content == "Hello, Bob."
        # SillyTavern's own presets have an empty prefill: none here, whatever the server's.
        await run(
            harness,
            ("prompts",),
            SERVER_ADMIN,
            name="prefill",
            text="Server prefill:",
            scope="server",
        )
        empty = {"temperature": 0.5, "assistant_prefill": ""}
        reply = await run(harness, ("preset", "import"), file=card_file(empty, "p.json"))
        assert "assistant_prefill=none" in reply.text, reply.text
        with respx.mock:
            route = respx.post(f"{FAKE}/messages").mock(return_value=claude_stream("Hi"))
            await ask(harness, "Again")
        last = json.loads(route.calls.last.request.content)["messages"][-1]
        assert last == {"role": "user", "content": "Again"}
    finally:
        await core.close()


async def test_a_card_channels_prefill_names_the_character(harness: Harness) -> None:
    await configure_claude(harness, assistant_prefill="{{char}}:")
    await run(harness, ("character", "import"), file=card_file(CARD))
    with respx.mock:
        route = respx.post(f"{FAKE}/messages").mock(return_value=claude_stream(" Aye."))
        sink = await ask(harness, "Hi")
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages[-1] == {"role": "assistant", "content": "Aurelia:"}
    # After the post-history instructions (a system turn, sent by Claude's rules as user).
    assert messages[-2] == {"role": "user", "content": "Hi\n\nStay in character as Aurelia."}
    assert sink.final == "Aye."


async def test_continuing_by_prefill_opens_the_answer_with_the_prefill(harness: Harness) -> None:
    """SillyTavern (openai.js populateChatHistory, 2024-10): continue prefill on, the
    answer goes last as Claude's own, the prefill before it and not after."""
    await configure_claude(harness)
    await run(harness, ("preset", "import"), file=card_file(PREFILLED, "p.json"))
    with respx.mock:
        route = respx.post(f"{FAKE}/messages").mock(
            side_effect=[claude_stream("Once upon a"), claude_stream(" time, a dragon.")]
        )
        await ask(harness, "Tell me a story")
        sink = await continue_answer(harness)
    body = json.loads(route.calls.last.request.content)
    assert body["messages"] == [
        {"role": "user", "content": "Tell me a story"},
        {"role": "assistant", "content": "Understood. Assistant answers Bob:\n\nOnce upon a"},
    ]
    assert sink.error is None and sink.final == "Once upon a time, a dragon."


async def test_continue_prefill_off_asks_claude_to_go_on_then_prefills(harness: Harness) -> None:
    """SillyTavern's default (continue prefill off): the answer, a request to go on, then
    the assistant prefill; the continuation joins the answer as an OpenAI one does."""
    await configure_claude(harness)
    off = {**PREFILLED, "continue_prefill": False}
    reply = await run(harness, ("preset", "import"), file=card_file(off, "p.json"))
    assert "continue_prefill=off" in reply.text, reply.text
    with respx.mock:
        route = respx.post(f"{FAKE}/messages").mock(
            side_effect=[claude_stream("The knight rode north."), claude_stream("He found ice.")]
        )
        await ask(harness, "Tell me a story")
        sink = await continue_answer(harness)
    body = json.loads(route.calls.last.request.content)
    assert body["messages"] == [
        {"role": "user", "content": "Tell me a story"},
        {"role": "assistant", "content": "The knight rode north."},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
        {"role": "assistant", "content": "Understood. Assistant answers Bob:"},
    ]
    assert sink.final == "The knight rode north. He found ice."


async def test_an_instructed_continuation_after_a_prefill_joins_without_its_space(
    harness: Harness,
) -> None:
    """Asked to go on, then prefilled, Claude writes after the prefill (`...Bob:`): the
    line break or space it opens with parts it from the prefill, not from the answer, and
    is left out as it is from a new answer; the answer and its rest join as any
    instructed continuation does (a space after a sentence's end, none inside a word)."""
    await configure_claude(harness)
    off = {**PREFILLED, "continue_prefill": False}
    await run(harness, ("preset", "import"), file=card_file(off, "p.json"))
    with respx.mock:
        respx.post(f"{FAKE}/messages").mock(
            side_effect=[
                claude_stream("The knight rode nor"),
                claude_stream("\n", "th."),
                claude_stream(" He found ice."),
            ]
        )
        await ask(harness, "Tell me a story")
        sink = await continue_answer(harness)
        assert sink.final == "The knight rode north.", sink.final
        sink = await continue_answer(harness)
    assert sink.final == "The knight rode north. He found ice.", sink.final
    [_, answer] = await harness.store.history(REF, 10)
    assert answer.content == sink.final


async def test_continue_prefill_off_with_thinking_keeps_thinking(harness: Harness) -> None:
    """Thinking is refused with a prefill, so it was dropped whenever an answer was
    continued; asked to go on (no prefill), Claude may think again."""
    await configure_claude(harness, thinking_budget=2048, continue_prefill=False)
    with respx.mock:
        route = respx.post(f"{FAKE}/messages").mock(
            side_effect=[claude_stream("Half"), claude_stream("more")]
        )
        await ask(harness, "Tell me a story")
        first = json.loads(route.calls.last.request.content)
        await continue_answer(harness)
        continued = json.loads(route.calls.last.request.content)
    assert first["thinking"] == continued["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert continued["messages"][-1] == {"role": "user", "content": CONTINUE_INSTRUCTION}
    # A prefill and thinking cannot go together: the prefill the admin set wins.
    await run(harness, ("prompts",), name="prefill", text="Sure:")
    with respx.mock:
        route = respx.post(f"{FAKE}/messages").mock(return_value=claude_stream("Yes"))
        await ask(harness, "Again")
    body = json.loads(route.calls.last.request.content)
    assert "thinking" not in body and body["messages"][-1]["content"] == "Sure:"


async def test_the_prefill_is_set_shown_and_removed_with_prompts(harness: Harness) -> None:
    await configure_claude(harness)
    said = await run(harness, ("prompts",), name="prefill", text="<thinking>")
    assert said.ok and said.text == "Assistant prefill set.", said.text
    listed = (await run(harness, ("prompts",))).text
    assert "  prefill (this channel): <thinking>" in listed, listed
    settings = (await run(harness, ("settings",), MEMBER)).text
    assert "Assistant prefill (this channel): <thinking>" in settings, settings
    off = await run(harness, ("params",), name="continue_prefill", value="off")
    assert off.ok and off.text == "continue_prefill set to off.", off.text
    settings = (await run(harness, ("settings",), MEMBER)).text
    assert "continue_prefill=off (claude only)" in settings, settings
    exported = await run(harness, ("preset", "export"))
    back = json.loads(exported.file.data)  # type: ignore[union-attr]
    assert back["assistant_prefill"] == "<thinking>" and back["continue_prefill"] is False
    assert (await run(harness, ("prompts",), name="prefill", text="none")).ok
    with respx.mock:
        route = respx.post(f"{FAKE}/messages").mock(return_value=claude_stream("Hi"))
        await ask(harness, "Hi")
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages == [{"role": "user", "content": "Hi"}]
    # A source that takes no prefill: said where it is set and shown.
    await harness.store.update_config(REF, Scope.CHANNEL, ADMIN, {"source": "openai"}, action="t")
    said = await run(harness, ("prompts",), name="prefill", text="Sure:")
    assert said.text == (
        "Assistant prefill set. It applies to claude only; this channel uses openai."
    ), said.text


async def test_other_sources_get_no_prefill(harness: Harness) -> None:
    """SillyTavern sends the assistant prefill for Claude only (openai.js
    sendOpenAIRequest: `if (isClaude)`)."""
    await harness.store.update_config(
        REF,
        Scope.CHANNEL,
        ADMIN,
        {"source": "custom", "proxy_url": FAKE, "model": "m1", "assistant_prefill": "Sure:"},
        action="test setup",
    )
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(
            return_value=httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=b'data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\n'
                b"data: [DONE]\n\n",
            )
        )
        await ask(harness, "Hi")
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages == [{"role": "user", "content": "Hi"}]


PREFILL_REFUSED = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "This model does not support assistant message prefill. The conversation "
        "must end with a user message.",
    },
}


async def test_a_model_that_refuses_a_prefill_names_the_setting_that_sends_it(
    harness: Harness,
) -> None:
    """Newer Claude models refuse a last assistant turn (a 400): the asker learns which
    setting sends one and how an admin stops it, as for a refused parameter."""
    await configure_claude(harness, assistant_prefill="Sure:")
    with respx.mock:
        respx.post(f"{FAKE}/messages").mock(return_value=httpx.Response(400, json=PREFILL_REFUSED))
        sink = await ask(harness, "Hi")
    assert sink.error is not None and "does not support assistant message prefill" in sink.error
    assert "/prompts name:prefill text:none" in sink.error, sink.error
    assert "continue_prefill" not in sink.error, sink.error
    # Continuing by prefill (on unless set) sends the answer as Claude's own start.
    await run(harness, ("prompts",), name="prefill", text="none")
    with respx.mock:
        respx.post(f"{FAKE}/messages").mock(
            side_effect=[
                claude_stream("Once upon a"),
                httpx.Response(400, json=PREFILL_REFUSED),
                claude_stream(" time."),
            ]
        )
        await ask(harness, "Tell me a story")
        sink = await continue_answer(harness)
        assert sink.error is not None, sink.final
        assert "/params name:continue_prefill value:off" in sink.error, sink.error
        assert "/prompts prefill" not in sink.error, sink.error
        # Taken: the model is asked to go on, and does.
        assert (await run(harness, ("params",), name="continue_prefill", value="off")).ok
        sink = await continue_answer(harness)
    assert sink.error is None and sink.final == "Once upon a time.", (sink.final, sink.error)


async def test_another_refusal_names_no_prefill_setting(harness: Harness) -> None:
    await configure_claude(harness, assistant_prefill="Sure:")
    refused = {"type": "error", "error": {"type": "invalid_request_error", "message": "Bad."}}
    with respx.mock:
        respx.post(f"{FAKE}/messages").mock(return_value=httpx.Response(400, json=refused))
        sink = await ask(harness, "Hi")
    assert sink.error is not None and "prefill" not in sink.error, sink.error
