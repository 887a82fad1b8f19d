"""An endpoint that answers with a redirect, driven through `chatbot console`: one on the
same server is followed (method, body and key as they were), one to another address is
not (the key stays where an admin set it) and says the URL to set, a loop is said."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.hostile_endpoint import HostileEndpoint, redirect
from tests.e2e.test_hostile_console import (
    Workspace,
    custom_setup,
    segments,
    with_sentinels,
)

PASSWORD = "proxy-password-9f2c71"


@pytest.fixture
def elsewhere() -> Iterator[HostileEndpoint]:
    """A second server a redirect may point at."""
    served = HostileEndpoint().start()
    try:
        yield served
    finally:
        served.stop()


def test_a_trailing_slash_redirect_on_the_same_server_is_followed(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A server whose routes end in a slash (FastAPI's 307 to `…/chat/completions/`):
    no URL an admin could set avoids the redirect, so the bot follows it, and the chat
    request goes again whole, with its password."""
    endpoint.slash_redirect = True
    lines = ["/source custom", f"/proxy set {endpoint.url_v1} {PASSWORD}", "/connect"]
    run = ws.run([*with_sentinels(lines), "/model m", "hello", "/help"])
    run.assert_survived()
    said = segments(run.out)
    assert "Status check: OK — 2 models available." in said[2], run.describe()
    assert endpoint.stream.answer in run.out, run.describe()
    assert "redirect" not in run.out, run.describe()
    assert ("assistant", endpoint.stream.answer, None) in ws.messages()
    chats = [r for r in endpoint.requests if "/chat/" in r.path]
    assert [r.path for r in chats] == ["/v1/chat/completions", "/v1/chat/completions/"]
    first, followed = chats
    assert followed.method == "POST"
    assert followed.body == first.body and json.loads(followed.body)["model"] == "m"
    assert followed.authorization == f"Bearer {PASSWORD}"


def test_a_redirect_to_another_server_is_not_followed_and_names_the_url_to_set(
    ws: Workspace, endpoint: HostileEndpoint, elsewhere: HostileEndpoint
) -> None:
    """http → https, or another host or port: the password would go to a server no admin
    set, so nothing goes there; the message names the base URL to set (not the route the
    bot asked for, which `/proxy set` would take as a different endpoint), and the
    channel's URL stays as it was."""
    endpoint.on_models = redirect(f"{elsewhere.url_v1}/models", 301)
    endpoint.on_chat = redirect(f"{elsewhere.url_v1}/chat/completions", 308)
    lines = [
        "/source custom",
        f"/proxy set {endpoint.url_v1} {PASSWORD}",
        "/model m",
        "/connect bypass:on",
        "hello",
    ]
    run = ws.run([*with_sentinels(lines), "/help"])
    run.assert_survived()
    said = segments(run.out)
    for answer, status in ((said[1], 301), (said[4], 308)):
        assert (
            f"redirects to {elsewhere.url_v1} (HTTP {status}), another address. The bot "
            "follows redirects only on the same server (a key sent here goes nowhere else): "
            "if that one is right, an admin sets it as the URL." in answer
        ), run.describe()
        assert "/chat/completions" not in answer and "/models" not in answer, answer
    assert elsewhere.requests == [], "the redirect was followed to another server"
    config = ws.config()
    assert config is not None and config["proxy_url"] == endpoint.url_v1
    assert not [m for m in ws.messages() if m[0] == "assistant"]
    assert PASSWORD not in run.out + run.err


def test_a_redirect_loop_is_said_and_ends(ws: Workspace, endpoint: HostileEndpoint) -> None:
    endpoint.on_models = redirect("/v1/models", 307)  # to itself
    run = ws.run([*with_sentinels([*custom_setup(endpoint)[:2], "/connect"]), "/help"])
    run.assert_survived()
    said = segments(run.out)
    assert (
        f"The endpoint at {endpoint.url_v1} keeps redirecting the request (HTTP 307, last to "
        f"{endpoint.url_v1}/models). Check the URL and the server's settings." in said[2]
    ), run.describe()
    assert len(endpoint.requests) == 1  # a redirect to a URL already asked is not asked again
