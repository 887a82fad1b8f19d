"""The operator's defaults changed in the environment between two starts of
`python -m bot console` on one database, as an operator changes `.env` and restarts:
what a channel that inherits them uses next, and what `/settings` says it uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.hostile_endpoint import HostileEndpoint, Stream, status_only
from tests.e2e.test_hostile_console import Workspace, segments, with_sentinels

OPERATOR_KEY = "opkey-0123456789abcdef"


@pytest.fixture
def moved_to() -> Iterator[HostileEndpoint]:
    served = HostileEndpoint().start()
    try:
        yield served
    finally:
        served.stop()


def test_a_new_default_proxy_url_is_used_after_a_restart(
    ws: Workspace, endpoint: HostileEndpoint, moved_to: HostileEndpoint
) -> None:
    """Operator probe: a channel whose status check had passed on the operator's URL
    kept the URL that check found working, so after DEFAULT_PROXY_URL changed and the
    bot restarted, `/settings` showed the old URL as the operator's and every turn (and
    the operator's key) still went to it; with DEFAULT_PROXY_URL removed, the source's
    own API was never asked ("No API key for openai" with the operator's key set)."""
    operator = {"DEFAULT_SOURCE": "custom", "DEFAULT_CUSTOM_API_KEY": OPERATOR_KEY}
    first = ws.run(
        with_sentinels(["/model m", "/connect", "hello", "/help"]),
        DEFAULT_PROXY_URL=endpoint.url,  # without /v1: the check finds it needs one
        **operator,
    )
    first.assert_survived()
    assert "Status check: OK" in segments(first.out)[1], first.describe()
    assert len(endpoint.chat_requests()) == 1

    second = ws.run(
        with_sentinels(["/settings", "hello again", "/help"]),
        DEFAULT_PROXY_URL=moved_to.url_v1,
        **operator,
    )
    second.assert_survived()
    settings = segments(second.out)[0]
    assert f"Endpoint: {moved_to.url_v1} (operator default)" in settings, settings
    assert "Status: not checked yet" in settings, settings
    assert len(endpoint.chat_requests()) == 1  # the old URL is asked nothing more
    [chat] = moved_to.chat_requests()
    assert chat.authorization == f"Bearer {OPERATOR_KEY}"

    third = ws.run(
        with_sentinels(["/settings", "/help"]),
        DEFAULT_SOURCE="openai",
        DEFAULT_OPENAI_API_KEY="sk-proj-" + "a" * 40,
    )
    third.assert_survived()
    settings = segments(third.out)[0]
    assert "Endpoint: (the source’s own)" in settings, settings
    assert moved_to.url not in settings and endpoint.url not in settings, settings


def test_a_failed_check_on_a_removed_default_proxy_url_no_longer_blocks_chat(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Operator probe: the operator's proxy refused the check (it wanted a password), so
    the operator removed DEFAULT_PROXY_URL and restarted to reach OpenAI itself. The
    channel kept that failed check: `/settings` showed the source's own endpoint with
    "Status: failed — The proxy at … rejected the credentials", and every message was
    refused with it ("I can't answer: the last status check failed"), though that
    proxy is no longer asked. The record was for the URL removed: it no longer counts."""
    endpoint.on_models = status_only(401, "bad password")
    operator = {"DEFAULT_SOURCE": "openai", "DEFAULT_OPENAI_API_KEY": "sk-proj-" + "a" * 40}
    first = ws.run(
        with_sentinels(["/model gpt-4o", "/connect", "/help"]),
        DEFAULT_PROXY_URL=endpoint.url_v1,
        **operator,
    )
    first.assert_survived()
    assert "rejected the credentials" in segments(first.out)[1], first.describe()

    second = ws.run(with_sentinels(["/settings", "/help"]), **operator)
    second.assert_survived()
    settings = segments(second.out)[0]
    assert "Endpoint: (the source’s own)" in settings, settings
    assert "Status: not checked yet" in settings, settings
    assert endpoint.url not in settings, settings


def test_a_default_proxy_url_in_a_short_ipv4_spelling_keeps_its_status_check(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Operator probe: DEFAULT_PROXY_URL=http://127.1:PORT/v1 (the short spelling of
    127.0.0.1). The status check saved the address it vetted, 127.0.0.1, and the record
    never matched the URL as written: `/settings` said "not checked yet" right after a
    passing `/connect`, and every turn wrote its status again. The operator's URL is
    kept in the form the check saves, as a `/proxy set` of the same text is."""
    short = f"http://127.1:{endpoint.port}/v1"
    run = ws.run(
        with_sentinels(["/model m", "/connect", "/settings", "/help"]),
        DEFAULT_PROXY_URL=short,
        DEFAULT_SOURCE="custom",
        DEFAULT_CUSTOM_API_KEY=OPERATOR_KEY,
    )
    run.assert_survived()
    assert "Status check: OK" in segments(run.out)[1], run.describe()
    settings = segments(run.out)[2]
    assert f"Endpoint: {endpoint.url_v1} (operator default)" in settings, settings
    assert "Status: OK" in settings, settings


def test_a_new_default_proxy_url_does_not_offer_the_old_endpoints_models(
    ws: Workspace, endpoint: HostileEndpoint, moved_to: HostileEndpoint
) -> None:
    """Operator probe: after DEFAULT_PROXY_URL moved to another server and a restart, a
    channel still offered the model list the old endpoint gave its last check, as the
    endpoint's (/models list, /model's choices and warnings): it was dropped only when a
    /proxy set changed the URL. A list is offered only for the URL it was fetched for."""
    moved_to.models = ["elsewhere-1"]
    operator = {"DEFAULT_SOURCE": "custom", "DEFAULT_CUSTOM_API_KEY": OPERATOR_KEY}
    first = ws.run(
        with_sentinels(["/connect", "/models list", "/help"]),
        DEFAULT_PROXY_URL=endpoint.url_v1,
        **operator,
    )
    first.assert_survived()
    assert "custom models (the endpoint): m, m-large" in segments(first.out)[1], first.describe()

    second = ws.run(
        with_sentinels(["/models list", "/model m-large", "/connect", "/models list", "/help"]),
        DEFAULT_PROXY_URL=moved_to.url_v1,
        **operator,
    )
    second.assert_survived()
    listed, chosen, _, again = segments(second.out)[:4]
    assert listed.strip().startswith("No models known for custom."), listed
    assert "Warning" not in chosen, chosen
    assert "custom models (the endpoint): elsewhere-1" in again, again


def test_a_default_key_under_six_characters_stops_the_start_as_key_set_refuses_it(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Operator probe: `/key set custom none` is refused (under 6 characters), but
    DEFAULT_CUSTOM_API_KEY=none in .env (a stand-in for a local server that asks for no
    key) was taken, and every answer in every channel using it lost the word from inside
    others: "There is none left; nonetheless" read "There is **** left; ****theless".
    The same rule stops the start, saying what to do, before anything is asked."""
    endpoint.stream = Stream(chunks=["There is none left; ", "nonetheless, a cat."])
    (ws.cwd / ".env").write_text(
        f"DEFAULT_SOURCE=custom\nDEFAULT_PROXY_URL={endpoint.url_v1}\nDEFAULT_MODEL=m\n"
        "DEFAULT_CUSTOM_API_KEY=none\n"
    )
    run = ws.run(with_sentinels(["hello", "/help"]))
    assert run.returncode not in (0, None), run.describe()
    assert (
        "Setting DEFAULT_CUSTOM_API_KEY is invalid: is too short (4 characters; it takes at "
        "least 6)"
    ) in run.err, run.describe()
    assert "an endpoint that asks for no key needs none set: leave it empty" in run.err
    assert endpoint.chat_requests() == []
