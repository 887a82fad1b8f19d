"""Anthropic's Messages API: named SSE events, paged model list, role fix-ups."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from bot.providers._errors import error_fields, stream_error, unknown_format
from bot.providers._provider import MODEL_LIST, MODELS_READ, Fixes, HTTPProvider
from bot.providers._sse import SSEEvent
from bot.providers._streaming import continuing, loads, stream_deltas
from bot.providers.base import ChatRequest, Delta, ModelInfo, Usage
from bot.providers.convert import claude_messages
from bot.types import SOURCE_API, Role, Source
from bot.types.usage import reported_tokens

API_BASE = SOURCE_API[Source.CLAUDE]
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens; this is the fallback
_MAX_PAGES = 50


class ClaudeProvider(HTTPProvider):
    # As in SillyTavern, a reverse proxy URL replaces the `/v1` base as typed.
    name = "Claude (Anthropic)"
    default_base = API_BASE
    api = (
        "Claude's API (Anthropic's Messages API); a proxy that speaks the OpenAI format "
        "is set with the custom source"
    )

    def _fixed_headers(self) -> dict[str, str]:
        return {"anthropic-version": API_VERSION}

    def _credential_headers(self, credential: str) -> dict[str, str]:
        return {"x-api-key": credential}

    def body(self, request: ChatRequest) -> dict[str, Any]:
        system, messages = claude_messages(
            request.messages,
            request.system_prompt,
            request.multi_user,
            request.continue_answer,
            instructed=not request.continue_by_prefill,
            prefill=request.prefill,
        )
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": DEFAULT_MAX_TOKENS,  # the API requires it
            "messages": messages,
            "stream": True,
        }
        if system:
            body["system"] = system
        body.update(request.options)
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and messages[-1]["role"] == "assistant":
            body.pop("thinking")  # a prefilled answer cannot be combined with thinking
        elif isinstance(thinking, dict):
            # Thinking counts against max_tokens and refuses sampling changes: the budget
            # comes on top of the answer's length, and the samplers stay at Claude's own.
            body["max_tokens"] += thinking["budget_tokens"]
            for sampler in ("temperature", "top_p", "top_k"):
                body.pop(sampler, None)
        if "temperature" in body:  # newer models refuse temperature and top_p together
            body.pop("top_p", None)
        return body

    async def _listed_at(self, base: str) -> list[ModelInfo]:
        params = {"limit": "1000"}
        models: list[ModelInfo] = []
        for _ in range(_MAX_PAGES):
            spec = self.spec("GET", f"{base}/models", base, params=dict(params), reading=MODEL_LIST)
            page = await self.get_json(spec)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise unknown_format(spec.where, "a model list", "no `data` list of models")
            for item in itertools.islice(data, MODELS_READ - len(models)):
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    name = item.get("display_name")
                    shown = name if isinstance(name, str) else None
                    models.append(ModelInfo(id=item["id"], display_name=shown))
            last_id = page.get("last_id")
            if not page.get("has_more") or not isinstance(last_id, str):
                break
            if last_id == params.get("after_id"):  # the same page again: it would never end
                break
            if len(models) >= MODELS_READ:
                break
            params["after_id"] = last_id
        return models

    def _stream_at(
        self, base: str, request: ChatRequest, fixes: Fixes
    ) -> AsyncGenerator[Delta, None]:
        spec = self.spec("POST", f"{base}/messages", base, body=self.body(request))
        deltas = stream_deltas(self._t, spec, lambda: EventDecoder(spec.where, spec.secrets))
        last = request.messages[-1] if request.messages else None
        # The answer starts after the prefill, which is not part of it (SillyTavern shows
        # only what the model wrote): the line break or space between the two would open
        # it. Continuing by prefill, the prefill goes before the answer (claude_messages).
        prefilled = bool(request.prefill.strip())
        if request.continue_answer and last is not None and last.role is Role.ASSISTANT:
            if not request.continue_by_prefill:  # asked to go on: as OpenAI's answers
                # After a prefill, what parts the rest from it is no gap in the answer.
                rest = _without_leading_space(deltas) if prefilled else deltas
                return continuing(rest, last.content)
        elif prefilled:
            return _without_leading_space(deltas)
        return deltas


async def _without_leading_space(
    deltas: AsyncGenerator[Delta, None],
) -> AsyncGenerator[Delta, None]:
    """The stream, whitespace before its first text left out."""
    async with aclosing(deltas):
        async for delta in deltas:
            text = delta.text.lstrip()
            if text:
                yield delta._replace(text=text)
                break
            if delta.text and not (delta.reasoning or delta.usage or delta.finish_reason):
                continue  # only the space: nothing to pass on
            yield delta._replace(text="")
        async for delta in deltas:
            yield delta


def _usage(value: Any) -> Usage | None:
    """Messages-API usage: input counts cache writes and reads too (all were sent).

    `message_delta` counts are cumulative; a field it leaves out keeps the earlier value.
    """
    if not isinstance(value, dict):
        return None
    parts = [
        reported_tokens(value.get(k))
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    known = [p for p in parts if p is not None]
    prompt = reported_tokens(sum(known)) if known else None
    completion = reported_tokens(value.get("output_tokens"))
    if prompt is None and completion is None:
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


class EventDecoder:
    """Named Messages-API events → deltas; `ping` and unknown events are ignored."""

    def __init__(self, where: str, secrets: tuple[str, ...] = ()) -> None:
        self._where = where
        self._secrets = secrets  # taken out of an error event before its text is cut
        self._input_tokens: int | None = None
        self.done = False
        self.complete = False

    def on_event(self, event: SSEEvent) -> list[Delta]:
        if event.event == "ping":
            return []
        body = loads(event.data, self._where)
        if not isinstance(body, dict):
            raise unknown_format(self._where, "an answer", "an event that is not a JSON object")
        kind = event.event if event.event != "message" else str(body.get("type", ""))
        if kind == "error":
            self._raise_error(body)
        if kind == "message_start":
            message = body.get("message")
            usage = _usage(message.get("usage") if isinstance(message, dict) else None)
            if usage is not None and usage.prompt_tokens is not None:
                self._input_tokens = usage.prompt_tokens
                # Reported now so an answer cut before message_delta keeps its input count.
                # Its output count is a placeholder (1, before any text): an answer cut
                # before message_delta is counted from the text that arrived instead.
                return [Delta(usage=Usage(usage.prompt_tokens, None))]
        elif kind == "content_block_delta":
            delta = body.get("delta")
            if not isinstance(delta, dict):
                raise unknown_format(
                    self._where, "an answer", "a content_block_delta without `delta`"
                )
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                return [Delta(text=delta["text"])] if delta["text"] else []
            if delta.get("type") == "thinking_delta" and isinstance(delta.get("thinking"), str):
                return [Delta(reasoning=delta["thinking"])] if delta["thinking"] else []
        elif kind == "message_delta":
            return self._message_delta(body)
        elif kind == "message_stop":
            self.done = True
        return []

    def _message_delta(self, body: dict[str, Any]) -> list[Delta]:
        delta = body.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        result = _usage(body.get("usage"))
        if result is not None and result.prompt_tokens is None:
            result = Usage(self._input_tokens, result.completion_tokens)
        if isinstance(stop, str):
            self.complete = True
        if result is None and not isinstance(stop, str):
            return []
        return [Delta(finish_reason=stop if isinstance(stop, str) else None, usage=result)]

    def on_body(self, body: Any) -> list[Delta]:
        if not isinstance(body, dict):
            raise unknown_format(self._where, "an answer", "an answer that is not a JSON object")
        if body.get("type") == "error":
            self._raise_error(body)
        content = body.get("content")
        if not isinstance(content, list):
            raise unknown_format(self._where, "an answer", "an answer without `content`")
        text = "".join(
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
        reasoning = "".join(
            b["thinking"]
            for b in content
            if isinstance(b, dict)
            and b.get("type") == "thinking"
            and isinstance(b.get("thinking"), str)
        )
        usage = body.get("usage")
        stop = body.get("stop_reason")
        self.complete = self.done = True
        return [
            Delta(
                text=text,
                reasoning=reasoning,
                finish_reason=stop if isinstance(stop, str) else None,
                usage=_usage(usage),
            )
        ]

    def finish(self) -> list[Delta]:
        return []

    def _raise_error(self, body: dict[str, Any]) -> None:
        message, kind = error_fields(body)
        raise stream_error(None, kind, message, where=self._where, secrets=self._secrets)
