"""Any OpenAI-compatible URL, with an optional key and the automatic `/v1` fix."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

from bot.providers.base import (
    ChatRequest,
    Delta,
    MalformedResponse,
    ModelInfo,
    NotFoundError,
    ProviderError,
    StatusResult,
)
from bot.providers.openai import OpenAICompatible, _ok_reason

log = logging.getLogger("bot.providers")

# What a server answers when the URL lacks the API prefix: 404, or a web page / other non-JSON.
_WRONG_PATH = (NotFoundError, MalformedResponse)


class CustomProvider(OpenAICompatible):
    name = "The custom endpoint"

    def _where(self, base: str) -> str:
        return f"The endpoint at {base}"

    def _headers(self) -> dict[str, str]:
        headers = dict(self._t.settings.custom_extra_headers)
        credential = self.endpoint.credential()
        if credential:
            headers["authorization"] = f"Bearer {credential.reveal()}"
        return headers

    async def _typed(self) -> str:
        if not self.endpoint.proxy_url:
            raise ProviderError(
                "No URL is set for the custom endpoint. Set one (for example "
                "http://host:port/v1), then try again."
            )
        return await self._t.checked(self.endpoint.proxy_url)

    async def _base(self) -> str:
        typed = await self._typed()
        return self._t.corrected.get(typed, typed)

    async def _probe_v1(self, typed: str) -> list[ModelInfo] | None:
        """Models at `{typed}/v1` when that works where `typed` did not; remembered."""
        if typed.endswith("/v1") or typed in self._t.corrected:
            return None
        try:
            models = await self._models_at(f"{typed}/v1")
        except ProviderError:
            return None
        self._t.corrected[typed] = f"{typed}/v1"
        log.info("custom endpoint %s works with /v1 added; using %s/v1", typed, typed)
        return models

    async def check_status(self) -> StatusResult:
        typed = ""
        try:
            typed = await self._typed()
            base = self._t.corrected.get(typed, typed)
            try:
                models = await self._models_at(base)
            except _WRONG_PATH:
                found = await self._probe_v1(typed)
                if found is None:
                    raise
                base, models = self._t.corrected[typed], found
        except ProviderError as err:
            return StatusResult(ok=False, reason=str(err), base_url=typed, error_kind=err.kind)
        reason = _ok_reason(self._where(base), models)
        if base != typed:
            reason = (
                f"{typed} did not answer like an OpenAI-compatible API, but {base} does, so "
                f"the bot uses {base}. {reason}"
            )
        return StatusResult(
            ok=True,
            reason=reason,
            models=tuple(models),
            base_url=base,
            corrected=base != typed,
        )

    async def list_models(self) -> list[ModelInfo]:
        typed = await self._typed()
        try:
            return await self._models_at(self._t.corrected.get(typed, typed))
        except _WRONG_PATH:
            found = await self._probe_v1(typed)
            if found is None:
                raise
            return found

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        typed = await self._typed()
        started = False
        try:
            first = self._stream_at(self._t.corrected.get(typed, typed), request)
            async with aclosing(first) as deltas:
                async for delta in deltas:
                    started = True
                    yield delta
        except _WRONG_PATH:
            if started or await self._probe_v1(typed) is None:
                raise
        else:
            return
        async with aclosing(self._stream_at(self._t.corrected[typed], request)) as deltas:
            async for delta in deltas:
                yield delta

    async def complete(self, request: ChatRequest) -> list[Delta]:
        typed = await self._typed()
        try:
            return await self._complete_at(self._t.corrected.get(typed, typed), request)
        except _WRONG_PATH:
            if await self._probe_v1(typed) is None:
                raise
        return await self._complete_at(self._t.corrected[typed], request)
