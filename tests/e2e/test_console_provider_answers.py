"""How an endpoint's unusual answers reach someone at `python -m bot console`: what is
shown, what is stored, what the next try does.

Each test runs the console as a process against the loopback endpoint of
`hostile_endpoint.py` (its `on_chat` answers each request as the test scripts it).
"""

from __future__ import annotations

import json
import threading
import time

from tests.e2e.hostile_endpoint import Answer, HostileEndpoint, Recorded, Stream, sse_chunk
from tests.e2e.test_hostile_console import Workspace, custom_setup

_ANSWER = sse_chunk("Paris.") + sse_chunk("", "stop") + b"data: [DONE]\n\n"


def _unavailable(status: int, retry_after: str) -> Answer:
    body = {"error": {"message": "Service Unavailable", "type": "server_error"}}
    headers = {"Content-Type": "application/json", "Retry-After": retry_after}
    return status, headers, json.dumps(body).encode()


class _DownFor:
    """An endpoint down for `seconds` after the first request (maintenance, a restart),
    saying so with Retry-After on each refusal; then it answers."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.first: float | None = None
        self.lock = threading.Lock()

    def __call__(self, rec: Recorded) -> Answer:
        with self.lock:
            now = time.monotonic()
            if self.first is None:
                self.first = now
            if now - self.first < self.seconds:
                return _unavailable(503, str(self.seconds))
        return 200, {"Content-Type": "text/event-stream"}, _ANSWER


def test_a_503_saying_when_to_come_back_is_asked_again_then(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A 503 with `Retry-After: 2` was retried after a quarter and then half a second,
    both refused again, and the asker got an error the server had said would pass: the
    retry now waits what the server said, and the answer comes."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.on_chat = _DownFor(2)
    run = ws.run(["What is the capital of France?", "/help"], PROVIDER_MAX_RETRIES="2")
    run.assert_survived()
    assert "Paris." in run.before_help(), run.describe()
    assert "overloaded or failing" not in run.before_help(), run.describe()
    assert len(endpoint.chat_requests()) == 2, "it asked again before the server said"
    assert ws.messages()[-1] == ("assistant", "Paris.", None)


def test_a_529_saying_to_come_back_in_minutes_is_not_hammered_and_says_when(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """An overload that says it lasts two minutes (`Retry-After: 120`) was asked twice
    more within a second and then said "Try again in a little while": now it is asked
    once and the asker is told when to try again."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.on_chat = lambda rec: _unavailable(529, "120")
    run = ws.run(["What is the capital of France?", "/help"], PROVIDER_MAX_RETRIES="2")
    run.assert_survived()
    shown = run.before_help()
    assert "overloaded or failing (HTTP 529)" in shown and "Try again in 2 min." in shown, shown
    assert len(endpoint.chat_requests()) == 1, "it asked again while the server said to wait"
    [(role, _, error)] = ws.messages()
    assert role == "user" and error is not None and "Try again in 2 min." in error


def _event(body: object) -> str:
    return f"data: {json.dumps(body)}\n\n"


def test_an_error_chunk_after_some_text_is_said_as_the_providers_error(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """An error chunk mid-answer without `error` words of its own (vLLM's and Mistral's
    `{"object": "error", "message": …}`, a proxy's bare `{"error": {}}`) was read as a
    chunk with nothing in it: the asker was told the stream ended early, without the
    provider's words. Now it is the provider's error, its words cleaned of a key, the
    text before it kept, and what helps said; `/continue` goes on from it."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    key = "sk-abcdefghijklmnopqrstuvwx1234"
    crashed = {"object": "error", "message": f"upstream model crashed; key {key}"}
    endpoint.stream = Stream(
        kind="raw", chunks=[sse_chunk("The capital is").decode(), _event(crashed)]
    )
    run = ws.run(["What is the capital of France?", "/help"], PROVIDER_MAX_RETRIES="0")
    run.assert_survived()
    shown = run.before_help()
    assert "The capital is" in shown and "ended the stream" not in shown, shown
    assert 'The provider said: "upstream model crashed; key ****"' in shown, shown
    assert "/continue goes on from it, or /retry asks again." in shown, shown
    assert key not in run.out + run.err
    endpoint.stream = Stream(
        kind="raw", chunks=[sse_chunk("Paris").decode(), _event({"error": {}})]
    )
    run = ws.run(["/retry", "/help"], PROVIDER_MAX_RETRIES="0")
    shown = run.before_help()
    assert "overloaded or failing" in shown and "ended the stream" not in shown, shown
    endpoint.stream = Stream(chunks=[" Paris."])
    run = ws.run(["/continue", "/help"], PROVIDER_MAX_RETRIES="0")
    assert ws.messages()[-1] == ("assistant", "Paris Paris.", None), run.describe()


def test_a_call_refused_before_any_answer_is_no_estimate_in_usage(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A 500 before any answer counts nothing, as README says, but /usage said the call
    was "estimated (not reported: the endpoint sends no usage, …)": nothing was."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.on_chat = lambda rec: _unavailable(500, "")
    run = ws.run(["What is the capital of France?", "/usage", "/help"], PROVIDER_MAX_RETRIES="0")
    shown = run.before_help()
    assert "Total: 0 tokens (0 in, 0 out) in 1 call." in shown, shown
    assert "Of these, 1 ended with an error." in shown and "estimated" not in shown, shown
