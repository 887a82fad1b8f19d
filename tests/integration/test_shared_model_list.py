"""A model list fetched once for every channel that asked for it meanwhile (the answer
is shared): what the log says of that request names each channel it served."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.logfilter import RedactingFilter
from bot.providers import AuthError, Endpoint, ProviderHub, ProviderSettings
from bot.types import SecretValue, Source
from bot.types.place import logged_in
from tests.discord.fake_openai import Script, fake_openai


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_shared_model_list_request_names_every_channel_it_served() -> None:
    """Channels whose /connect (or a turn's recheck) came while another's request for the
    same endpoint and key was out got its answer, and the request's log line named the
    first channel alone: an operator looking for why the others' checks failed found
    nothing about them."""
    lines = _Lines()
    logger = logging.getLogger("bot.providers")
    logger.addHandler(lines)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    places = [f"discord:g1:c{n}" for n in range(5)]
    try:
        async with fake_openai(Script(models_status=401, models_delay=1.0)) as model:
            endpoint = Endpoint(
                Source.CUSTOM, proxy_url=model.url_v1, api_key=SecretValue("sk-shared-0123456789")
            )

            async def listed(place: str) -> None:
                with logged_in(place), pytest.raises(AuthError):
                    await hub.provider(endpoint).list_models()

            first = asyncio.create_task(listed(places[0]))
            while not model.models_asked:  # noqa: ASYNC110 (a count the endpoint keeps)
                await asyncio.sleep(0.01)  # the first request is out: the others join it
            await asyncio.gather(first, *(listed(place) for place in places[1:]))
            assert model.models_asked == 1
    finally:
        await hub.aclose()
        logger.removeHandler(lines)
        logger.setLevel(old_level)
    [request] = [line for line in lines.lines if "/v1/models → 401" in line]
    assert request.endswith(f"(in {', '.join(places[:3])} and 2 more)"), request
