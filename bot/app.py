"""Composition root: settings → store, providers, Core → front-ends."""

from __future__ import annotations

import logging
import sys

from bot.core import Core
from bot.frontends.console import run_console as console_loop
from bot.providers import ProviderHub, ProviderSettings
from bot.settings import Settings
from bot.store import SecretBox, Store
from bot.store.migrate import upgrade_to_head
from bot.types import ChannelConfig

log = logging.getLogger("bot.app")

NO_PLATFORM = (
    "No chat platform is configured. For Discord set DISCORD_TOKEN; for Matrix set "
    "MATRIX_HOMESERVER and MATRIX_USER_ID with MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN "
    "(in .env or the environment). To chat in this terminal instead, run `chatbot console`."
)


def operator_defaults(settings: Settings) -> ChannelConfig:
    return ChannelConfig(
        source=settings.default_source,
        model=settings.default_model or None,
        proxy_url=settings.default_proxy_url or None,
        system_prompt=settings.default_system_prompt or None,
        reply_mode=settings.default_reply_mode,
    )


def provider_settings(settings: Settings) -> ProviderSettings:
    return ProviderSettings(
        connect_timeout=settings.provider_connect_timeout,
        first_byte_timeout=settings.provider_first_byte_timeout,
        idle_timeout=settings.provider_idle_timeout,
        max_retries=settings.provider_max_retries,
        allow_private_endpoints=settings.allow_private_endpoints,
        custom_extra_headers=dict(settings.custom_extra_headers),
    )


async def build_core(settings: Settings, box: SecretBox) -> Core:
    """Migrate, open the store and the provider hub, and hand them to a Core."""
    revision = await upgrade_to_head(settings.db_url)
    log.info("database at revision %s", revision)
    store = await Store.open(
        settings.db_url,
        box,
        defaults=operator_defaults(settings),
        default_secrets=settings.default_secrets(),
    )
    hub = ProviderHub(provider_settings(settings))
    return Core(store, hub, admin_ids=settings.admin_ids)


async def run(settings: Settings, box: SecretBox) -> int:
    if not settings.discord_enabled and not settings.matrix_enabled:
        print(f"chatbot: {NO_PLATFORM}", file=sys.stderr)
        return 2
    missing = [
        name
        for name, on in (("Discord", settings.discord_enabled), ("Matrix", settings.matrix_enabled))
        if on
    ]
    print(
        f"chatbot: {' and '.join(missing)} configured, but this build has no front-end for it "
        "yet. Run `chatbot console` to chat in the terminal.",
        file=sys.stderr,
    )
    return 2


async def run_console(settings: Settings, box: SecretBox, channel: str) -> int:
    core = await build_core(settings, box)
    try:
        return await console_loop(core, channel)
    finally:
        await core.close()


async def rotate_keys(settings: Settings, box: SecretBox) -> int:
    await upgrade_to_head(settings.db_url)
    store = await Store.open(settings.db_url, box, defaults=operator_defaults(settings))
    try:
        return await store.rotate_keys()
    finally:
        await store.close()
