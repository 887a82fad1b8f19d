"""Anthropic's Messages API: named SSE events, paged model list, role fix-ups."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from bot.providers._errors import error_fields, error_from_kind, malformed
from bot.providers._http import Transport
from bot.providers._sse import SSEEvent
from bot.providers._streaming import loads, stream_deltas
from bot.providers.base import (
    AuthError,
    ChatRequest,
    Delta,
    Endpoint,
    ModelInfo,
    ProviderError,
    StatusResult,
    Usage,
)
from bot.providers.convert import claude_messages

API_BASE = "https://api.anthropic.com/v1"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens; this is the fallback
_MAX_PAGES = 50


class ClaudeProvider:
    def __init__(self, transport: Transport, endpoint: Endpoint) -> None:
        self._t = transport
        self.endpoint = endpoint

    async def _base(self) -> str:
        # As in SillyTavern, a reverse proxy URL replaces the `/v1` base as typed.
        if self.endpoint.proxy_url:
            return await self._t.checked(self.endpoint.proxy_url)
        return API_BASE

    def _where(self, base: str) -> str:
        return f"The proxy at {base}" if self.endpoint.proxy_url else "Claude (Anthropic)"

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        credential = self.endpoint.credential()
        if credential:
            headers["x-api-key"] = credential.reveal()
        elif not self.endpoint.proxy_url:
            raise AuthError("No API key is set for Claude. Set the channel's key, then try again.")
        return headers

    def _secrets(self) -> list[str]:
        credential = self.endpoint.credential()
        return [credential.reveal()] if credential else []

    def body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system, messages = claude_messages(
            request.messages, request.system_prompt, request.multi_user
        )
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": messages,
            "stream": stream,
        }
        if system:
            body["system"] = system
        # Claude's range is 0–1, and newer models refuse temperature and top_p together.
        if request.temperature is not None:
            body["temperature"] = min(1.0, max(0.0, request.temperature))
        elif request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body

    async def check_status(self) -> StatusResult:
        base = ""
        try:
            base = await self._base()
            models = await self._models_at(base)
        except ProviderError as err:
            return StatusResult(ok=False, reason=str(err), base_url=base, error_kind=err.kind)
        count = len(models)
        return StatusResult(
            ok=True,
            reason=f"{self._where(base)} answered the status check and lists {count} "
            f"model{'s' * (count != 1)}.",
            models=tuple(models),
            base_url=base,
        )

    async def list_models(self) -> list[ModelInfo]:
        return await self._models_at(await self._base())

    async def _models_at(self, base: str) -> list[ModelInfo]:
        where = self._where(base)
        headers = self._headers()
        params = {"limit": "1000"}
        models: list[ModelInfo] = []
        for _ in range(_MAX_PAGES):
            page_params = dict(params)

            async def fetch(page_params: dict[str, str] = page_params) -> Any:
                return await self._t.request_json(
                    "GET",
                    f"{base}/models",
                    where=where,
                    headers=headers,
                    params=page_params,
                    secrets=self._secrets(),
                )

            page = await self._t.retrying(where, fetch)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise malformed(where, "no `data` list of models")
            for item in data:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    name = item.get("display_name")
                    shown = name if isinstance(name, str) else None
                    models.append(ModelInfo(id=item["id"], display_name=shown))
            last_id = page.get("last_id")
            if not page.get("has_more") or not isinstance(last_id, str):
                break
            params["after_id"] = last_id
        return models

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        base = await self._base()
        where = self._where(base)
        deltas = stream_deltas(
            self._t,
            f"{base}/messages",
            where=where,
            headers=self._headers(),
            body=self.body(request, stream=True),
            secrets=self._secrets(),
            decoder=lambda: EventDecoder(where),
        )
        async with aclosing(deltas) as it:
            async for delta in it:
                yield delta

    async def complete(self, request: ChatRequest) -> list[Delta]:
        base = await self._base()
        where = self._where(base)
        answer = await self._t.post_json(
            f"{base}/messages",
            where=where,
            headers=self._headers(),
            body=self.body(request, stream=False),
            secrets=self._secrets(),
        )
        result: list[Delta] = EventDecoder(where).on_body(answer)
        return result


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class EventDecoder:
    """Named Messages-API events → deltas; `ping` and unknown events are ignored."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._input_tokens: int | None = None
        self.done = False
        self.complete = False

    def on_event(self, event: SSEEvent) -> list[Delta]:
        if event.event == "ping":
            return []
        body = loads(event.data, self._where)
        if not isinstance(body, dict):
            raise malformed(self._where, "an event that is not a JSON object")
        kind = event.event if event.event != "message" else str(body.get("type", ""))
        if kind == "error":
            self._raise_error(body)
        if kind == "message_start":
            message = body.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._input_tokens = _int(usage.get("input_tokens"))
        elif kind == "content_block_delta":
            delta = body.get("delta")
            if not isinstance(delta, dict):
                raise malformed(self._where, "a content_block_delta without `delta`")
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
        usage = body.get("usage")
        result: Usage | None = None
        if isinstance(usage, dict):
            prompt = _int(usage.get("input_tokens"))
            result = Usage(
                prompt_tokens=prompt if prompt is not None else self._input_tokens,
                completion_tokens=_int(usage.get("output_tokens")),
            )
        if isinstance(stop, str):
            self.complete = True
        if result is None and not isinstance(stop, str):
            return []
        return [Delta(finish_reason=stop if isinstance(stop, str) else None, usage=result)]

    def on_body(self, body: Any) -> list[Delta]:
        if not isinstance(body, dict):
            raise malformed(self._where, "an answer that is not a JSON object")
        if body.get("type") == "error":
            self._raise_error(body)
        content = body.get("content")
        if not isinstance(content, list):
            raise malformed(self._where, "an answer without `content`")
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
                usage=Usage(
                    prompt_tokens=_int(usage.get("input_tokens")),
                    completion_tokens=_int(usage.get("output_tokens")),
                )
                if isinstance(usage, dict)
                else None,
            )
        ]

    def finish(self) -> list[Delta]:
        return []

    def _raise_error(self, body: dict[str, Any]) -> None:
        message, kind = error_fields(body)
        raise error_from_kind(None, kind or "api_error", message, where=self._where)
