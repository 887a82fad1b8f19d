"""ProviderHub: the one object the rest of the bot holds to reach any provider."""

from __future__ import annotations

import asyncio

from bot.providers._http import Sleep, Transport
from bot.providers._provider import HTTPProvider
from bot.providers.base import Endpoint, Provider, ProviderSettings
from bot.providers.claude import ClaudeProvider
from bot.providers.custom import CustomProvider
from bot.providers.mistral import MistralProvider
from bot.providers.openai import OpenAIProvider
from bot.providers.policy import EndpointPolicy
from bot.types import Source

_BY_SOURCE: dict[Source, type[HTTPProvider]] = {
    Source.OPENAI: OpenAIProvider,
    Source.CLAUDE: ClaudeProvider,
    Source.MISTRAL: MistralProvider,
    Source.CUSTOM: CustomProvider,
}


class ProviderHub:
    """Owns the pooled HTTP clients (one per endpoint base) and hands out providers."""

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        policy: EndpointPolicy | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if policy is None:
            policy = EndpointPolicy(allow_private=settings.allow_private_endpoints)
        self._transport = Transport(settings, policy, sleep if sleep is not None else asyncio.sleep)

    @property
    def policy(self) -> EndpointPolicy:
        """The endpoint policy every user-supplied URL goes through."""
        return self._transport.policy

    def provider(self, endpoint: Endpoint) -> Provider:
        """A provider for this endpoint; cheap, share-nothing except the pooled clients."""
        return _BY_SOURCE[endpoint.source](self._transport, endpoint)

    def base_in_use(self, endpoint: Endpoint) -> str | None:
        """The base URL requests really go to when it differs from the endpoint's URL.

        A chat may find out that `/v1` is needed where the status check did not (an
        endpoint that lists models at its root but answers only under `/v1`).
        """
        if not endpoint.proxy_url:
            return None
        return self._transport.corrected.get(endpoint.proxy_url.strip().rstrip("/"))

    def reused(self, failure: BaseException, since: float) -> tuple[float, float] | None:
        """For a failure an earlier call fetched and gave again (`since`: monotonic time
        this call began): (seconds since it was fetched, seconds until a call asks anew).
        None: this call asked the endpoint itself."""
        return self._transport.reused(failure, since)

    async def aclose(self) -> None:
        await self._transport.aclose()
