"""A URL that reaches something other than an OpenAI-compatible API, which answers 200
with a web page (a proxy's login page, a captive portal) or plain text (a server that
answers every path with `OK`): driven through `chatbot console`, the status check and a
turn say what came instead and what to check, show no page, and store no answer."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.hostile_endpoint import Answer, HostileEndpoint, Recorded
from tests.e2e.test_hostile_console import Workspace, segments, with_sentinels

PAGE = b"<!DOCTYPE html><html><body><form>Sign in to the Wi-Fi</form></body></html>"
CHECK = "Check that the URL points at an OpenAI-compatible API."


def _text(body: bytes, content_type: str = "text/plain") -> Callable[[Recorded], Answer]:
    def answer(rec: Recorded) -> Answer:
        return 200, {"Content-Type": content_type}, body

    return answer


def _run(ws: Workspace, endpoint: HostileEndpoint) -> list[str]:
    lines = ["/source custom", f"/proxy set {endpoint.url_v1}", "/model m", "/connect bypass:on"]
    run = ws.run([*with_sentinels([*lines, "hello"]), "/help"])
    run.assert_survived()
    assert "<form" not in run.out and "Traceback" not in run.out + run.err, run.describe()
    assert not [m for m in ws.messages() if m[0] == "assistant"], ws.messages()
    said = segments(run.out)
    assert len(said) == 5, run.describe()
    return said


def test_plain_text_instead_of_the_api_is_quoted_with_what_to_check(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A 200 `OK` to /models said only "(not JSON)"; a 200 text to the chat request was
    "answered with an error", which it never said, and gave no next step."""
    endpoint.on_models = _text(b"OK")
    endpoint.on_chat = _text(b"Hello from a web server")
    said = _run(ws, endpoint)
    where = f"The endpoint at {endpoint.url_v1}"
    assert f'{where} sent text instead of JSON. The provider said: "OK". {CHECK}' in said[1]
    chat = f'{where} sent text instead of an event stream. The provider said: "Hello from a '
    assert f'{chat}web server". {CHECK}' in said[4], said[4]
    assert "answered with an error" not in said[4]
    errors = [m[2] for m in ws.messages() if m[0] == "user"]
    assert errors and errors[0] is not None and errors[0].startswith(chat), errors


def test_a_login_page_instead_of_the_api_is_named_as_a_web_page(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A 200 page to /models said "(not JSON)", as if the API had sent broken JSON."""
    endpoint.on_models = _text(PAGE, "text/html")
    endpoint.on_chat = _text(PAGE, "text/plain")  # a page that does not say it is one
    said = _run(ws, endpoint)
    assert f"(a web page instead of JSON). {CHECK}" in said[1], said[1]
    assert f"(a web page instead of an event stream). {CHECK}" in said[4], said[4]
