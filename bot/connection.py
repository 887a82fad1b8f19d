"""A channel's connection: the endpoint its configuration means, and its status check.

Shared by the commands (/source, /connect, /models external) and the conversation
engine, so both always agree on which URL and which secret a channel uses.
"""

from __future__ import annotations

from bot.providers import Endpoint, ProviderError, ProviderHub, StatusResult
from bot.store import Store, api_key_name
from bot.types import ChannelConfig, ChannelRef, Source, StatusCheck

PROXY_PASSWORD = "proxy_password"


class NotConnectable(Exception):
    """The channel's configuration can't reach a provider yet; says what to set."""


async def endpoint_for(
    store: Store, ref: ChannelRef, config: ChannelConfig, prefix: str = "/"
) -> Endpoint:
    """Build the Endpoint for a channel; raises NotConnectable when something is missing.

    `prefix` is how commands start on the asker's platform (the messages name them).
    """
    if config.source is Source.CUSTOM and not config.proxy_url:
        raise NotConnectable(
            f"The custom source needs an endpoint URL: an admin runs {prefix}proxy set <url> "
            "(e.g. http://host:1234/v1)."
        )
    api_key = await store.resolve_secret(ref, api_key_name(config.source))
    password = await store.resolve_secret(ref, PROXY_PASSWORD) if config.proxy_url else None
    endpoint = Endpoint(
        source=config.source,
        proxy_url=config.resolved_url or config.proxy_url,
        api_key=api_key,
        proxy_password=password,
        mistral_safe_prompt=config.mistral_safe_prompt,
    )
    if endpoint.credential() is None and config.source is not Source.CUSTOM:
        if config.proxy_url:
            raise NotConnectable(
                f"No proxy password is set for the reverse proxy. Set it with "
                f"{prefix}proxy set <url> <password> (behind a proxy the {config.source.value} key "
                "is not sent)."
            )
        raise NotConnectable(
            f"No API key for {config.source.value}. An admin sets one with "
            f"{prefix}key set {config.source.value}."
        )
    return endpoint


async def run_status_check(
    store: Store, hub: ProviderHub, ref: ChannelRef, prefix: str = "/"
) -> StatusResult:
    """Check the channel's endpoint now and remember the outcome (and a corrected URL)."""
    config = await store.effective_config(ref)
    try:
        endpoint = await endpoint_for(store, ref, config, prefix)
        result = await hub.provider(endpoint).check_status()
    except NotConnectable as err:
        result = StatusResult(ok=False, reason=str(err))
    except ProviderError as err:
        result = StatusResult(ok=False, reason=err.user_message)
    resolved = result.base_url if (config.proxy_url and result.ok) else None
    await store.record_status(
        ref, StatusCheck(ok=result.ok, reason=result.reason, checked_url=result.base_url), resolved
    )
    return result
