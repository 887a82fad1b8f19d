"""How an endpoint's unusual answers reach someone at `python -m bot console`: what is
shown, what is stored, what the next try does.

Each test runs the console as a process against the loopback endpoint of
`hostile_endpoint.py` (its `on_chat` answers each request as the test scripts it).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.e2e.hostile_endpoint import Answer, HostileEndpoint, Recorded, Stream, sse_chunk
from tests.e2e.test_hostile_console import Workspace, custom_setup

_ANSWER = sse_chunk("Paris.") + sse_chunk("", "stop") + b"data: [DONE]\n\n"


def _unavailable(status: int, retry_after: str) -> Answer:
    body = {"error": {"message": "Service Unavailable", "type": "server_error"}}
    headers = {"Content-Type": "application/json", "Retry-After": retry_after}
    return status, headers, json.dumps(body).encode()


class _RefusedFor:
    """An endpoint refusing with `status` for `seconds` after the first request
    (maintenance, a restart), its Retry-After saying when to come back (`2`; `0` or a date
    already past: at once); then it answers."""

    def __init__(self, status: int, retry_after: str, seconds: float) -> None:
        self.status, self.retry_after, self.seconds = status, retry_after, seconds
        self.first: float | None = None
        self.lock = threading.Lock()

    def __call__(self, rec: Recorded) -> Answer:
        with self.lock:
            now = time.monotonic()
            if self.first is None:
                self.first = now
            if now - self.first < self.seconds:
                return _unavailable(self.status, self.retry_after)
        return 200, {"Content-Type": "text/event-stream"}, _ANSWER


def test_a_503_saying_when_to_come_back_is_asked_again_then(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A 503 with `Retry-After: 2` was retried after a quarter and then half a second,
    both refused again, and the asker got an error the server had said would pass: the
    retry now waits what the server said, and the answer comes."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.on_chat = _RefusedFor(503, "2", 2)
    run = ws.run(["What is the capital of France?", "/help"], PROVIDER_MAX_RETRIES="2")
    run.assert_survived()
    assert "Paris." in run.before_help(), run.describe()
    assert "overloaded or failing" not in run.before_help(), run.describe()
    assert len(endpoint.chat_requests()) == 2, "it asked again before the server said"
    assert ws.messages()[-1] == ("assistant", "Paris.", None)


@pytest.mark.parametrize(
    ("status", "retry_after", "refused", "wait"),
    [
        # Said in minutes: it was asked twice more within a second, then said "Try again
        # in a little while".
        (529, "120", "overloaded or failing (HTTP 529)", "Try again in 2 min."),
        # Past two days it was "Try again in 27777777 h 46 min".
        (
            429,
            "99999999999",
            "is rate-limiting requests (HTTP 429)",
            "Try again in more than 2 days.",
        ),
    ],
    ids=["minutes", "years"],
)
def test_a_refusal_saying_to_come_back_later_is_not_hammered_and_says_when(
    ws: Workspace, endpoint: HostileEndpoint, status: int, retry_after: str, refused: str, wait: str
) -> None:
    """A refusal whose Retry-After is past the retries' budget is asked once, and the
    asker is told when to try again, as a person says it."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.on_chat = lambda rec: _unavailable(status, retry_after)
    run = ws.run(["What is the capital of France?", "/help"], PROVIDER_MAX_RETRIES="2")
    run.assert_survived()
    shown = run.before_help()
    assert refused in shown and wait in shown and " h " not in shown, shown
    assert len(endpoint.chat_requests()) == 1, "it asked again while the server said to wait"
    [(role, _, error)] = ws.messages()
    assert role == "user" and error is not None and wait in error


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
    assert "or an admin can go on from it with /continue, or ask again with /retry." in shown
    assert key not in run.out + run.err
    endpoint.stream = Stream(
        kind="raw", chunks=[sse_chunk("Paris").decode(), _event({"error": {}})]
    )
    run = ws.run(["/retry", "/help"], PROVIDER_MAX_RETRIES="0")
    shown = run.before_help()
    assert "reported an error while answering" in shown and "ended the stream" not in shown
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


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, "0"), (503, "0"), (503, "Wed, 21 Oct 2015 07:28:00 GMT")],
    ids=["429-zero", "503-zero", "503-past-date"],
)
def test_a_refusal_saying_come_back_now_is_not_asked_again_at_once(
    ws: Workspace, endpoint: HostileEndpoint, status: int, retry_after: str
) -> None:
    """`Retry-After: 0` (or a date already past) on a 429 or 503 had every retry sent
    at once, all three requests within milliseconds and all refused: a retry now waits
    at least the usual backoff (a quarter of a second first), so a server back a moment
    later answers the second request."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.on_chat = _RefusedFor(status, retry_after, 0.2)
    run = ws.run(["What is the capital of France?", "/help"], PROVIDER_MAX_RETRIES="2")
    run.assert_survived()
    assert "Paris." in run.before_help(), run.describe()
    assert len(endpoint.chat_requests()) == 2, "it asked again at once, refused again"
    assert ws.messages()[-1] == ("assistant", "Paris.", None)


def _claude_event(name: str, body: object) -> str:
    return f"event: {name}\ndata: {json.dumps(body)}\n\n"


_MESSAGE_START = _claude_event(
    "message_start",
    {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 9}}},
)


def test_a_claude_answer_that_never_wrote_is_not_said_cut_in_the_middle(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A Claude stream that sent `message_start` and then only pings until the idle
    limit was told "stopped sending for 1 s in the middle of the answer", though not a
    word of one had come: it is said as an answer that did not start, with what to do.
    One cut after some text still says it stopped in the middle."""
    setup = ws.run(["/source claude", f"/proxy set {endpoint.url_v1}", "/model claude-x"])
    assert setup.returncode == 0, setup.describe()
    ping = _claude_event("ping", {"type": "ping"})
    endpoint.stream = Stream(kind="raw", chunks=[_MESSAGE_START] + [ping] * 40, interval=0.1)
    run = ws.run(["Hello?", "/help"], PROVIDER_IDLE_TIMEOUT="1")
    run.assert_survived()
    shown = run.before_help()
    assert "did not start answering: it sent nothing of the answer for 1 s" in shown, shown
    assert "in the middle of the answer" not in shown and "/continue" not in shown, shown
    text = _claude_event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    )
    endpoint.stream = Stream(kind="raw", chunks=[_MESSAGE_START, text] + [ping] * 40, interval=0.1)
    run = ws.run(["/retry", "/help"], PROVIDER_IDLE_TIMEOUT="1")
    shown = run.before_help()
    assert "stopped sending for 1 s in the middle of the answer" in shown, shown


_UNTYPED = {"error": {}}, {"object": "error"}, {"object": "error", "message": "model crashed"}


@pytest.mark.parametrize(
    ("source", "error", "said"),
    [
        *(("custom", _event(body), body.get("message", "")) for body in _UNTYPED),
        ("custom", sse_chunk("", "error").decode(), ""),  # Mistral's, OpenRouter's
        ("claude", _claude_event("error", {"type": "error", "error": {}}), ""),
    ],
    ids=["bare-error", "object-error", "object-error-words", "finish-error", "claude-untyped"],
)
def test_an_error_event_naming_no_kind_is_not_called_an_overload(
    ws: Workspace, endpoint: HostileEndpoint, source: str, error: str, said: str
) -> None:
    """A mid-answer error with no type (a proxy's `{"error": {}}`, vLLM's `{"object":
    "error"}`, a `finish_reason` of `error`) was said as "is overloaded or failing",
    which the provider never said: it is said as the error it reported, its own words
    quoted when it has some."""
    lines = [f"/source {source}", f"/proxy set {endpoint.url_v1}", "/model m"]
    setup = ws.run(lines)
    assert setup.returncode == 0, setup.describe()
    first = _MESSAGE_START if source == "claude" else sse_chunk("The capital is").decode()
    endpoint.stream = Stream(kind="raw", chunks=[first, error])
    run = ws.run(["What is the capital of France?", "/help"], PROVIDER_MAX_RETRIES="0")
    run.assert_survived()
    shown = run.before_help()
    assert "reported an error while answering" in shown, shown
    assert "overloaded" not in shown and "ended the stream" not in shown, shown
    assert (f'The provider said: "{said}"' in shown) == bool(said), shown


def test_an_error_of_no_known_kind_says_what_to_do(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A status no rule knows (a 409 naming no type) was "answered with an error (HTTP
    409)." and nothing more: the member now reads what to do next."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    body = json.dumps({"error": {"message": "conflict"}}).encode()
    endpoint.on_chat = lambda rec: (409, {"Content-Type": "application/json"}, body)
    run = ws.run(["What is the capital of France?", "/help"])
    run.assert_survived()
    shown = run.before_help()
    assert 'answered with an error (HTTP 409). The provider said: "conflict".' in shown, shown
    assert "Try again; if it keeps failing, check the model and the endpoint's URL." in shown


_CLAUDE_ADVICE = (
    "Check that the proxy URL leads to Claude's API (Anthropic's Messages API); a proxy "
    "that speaks the OpenAI format is set with the custom source."
)


@pytest.mark.parametrize(
    ("source", "stream", "advice", "detail"),
    [
        (
            "claude",
            [_MESSAGE_START, _claude_event("content_block_delta", {"type": "content_block_delta"})],
            _CLAUDE_ADVICE,
            "a content_block_delta without `delta`",
        ),
        (
            "mistral",
            [_event({"choices": 5})],
            "Check that the proxy URL leads to Mistral AI's API or an OpenAI-compatible one.",
            "`choices` is not a list",
        ),
        (
            "custom",
            [_event({"choices": ["Paris"]})],
            "Check that the URL points at an OpenAI-compatible API.",
            "a choice that is not an object",
        ),
    ],
    ids=["claude", "mistral", "custom"],
)
def test_an_answer_in_a_format_the_bot_does_not_know_says_what_to_check_for_the_source(
    ws: Workspace,
    endpoint: HostileEndpoint,
    source: str,
    stream: list[str],
    advice: str,
    detail: str,
) -> None:
    """An answer the bot could not read told a Claude (or Mistral) channel to check that
    the URL points at "an OpenAI-compatible API", and every member read its field names
    ("(`choices` is not a list)"). It says what came in words and what to check for the
    source in use; which field was wrong goes to the log."""
    setup = ws.run([f"/source {source}", f"/proxy set {endpoint.url_v1}", "/model m"])
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = Stream(kind="raw", chunks=stream)
    run = ws.run(["Hello?", "/help"], args=["--user", "bob"])
    run.assert_survived()
    shown = run.before_help()
    assert "sent an answer in a format the bot does not know. " + advice in shown, shown
    assert "`" not in shown and detail not in shown, shown
    assert "an OpenAI-compatible API" not in shown or source == "custom", shown
    log = b"".join(ws.log_files().values()).decode()
    assert f"sent an answer the bot could not read: {detail}" in log, log[-2000:]


def test_a_model_list_that_stops_midway_says_the_model_list(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A model list whose body stopped coming (the status check, /models external) was
    said to stop "in the middle of the answer", as if a chat answer had been cut."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.models_stream = Stream(kind="raw", chunks=['{"data": [', "]}"], interval=5)
    run = ws.run(["/connect", "/help"], PROVIDER_IDLE_TIMEOUT="1")
    run.assert_survived()
    shown = run.before_help()
    assert "stopped sending for 1 s in the middle of the model list. Try again." in shown, shown
    assert "the answer" not in shown, shown


def test_an_answer_an_error_cut_names_who_may_go_on_from_it(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """ "What arrived is kept: /continue goes on from it" was said to everyone in the
    channel, though only the asker or an admin may continue: it names them, as the
    refusal another member then gets does."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = Stream(kind="raw", chunks=[sse_chunk("The capital is").decode()])
    run = ws.run(["What is the capital of France?", "/help"], args=["--user", "alice"])
    run.assert_survived()
    shown = run.before_help()
    assert (
        "What arrived is kept: alice or an admin can go on from it with /continue, or ask "
        "again with /retry." in shown
    ), shown
    run = ws.run(["/continue", "/help"], args=["--user", "bob"])
    assert "Only alice or an admin of this channel can do that." in run.before_help()


@pytest.mark.parametrize(
    ("source", "ended", "error"),
    [
        (
            "custom",
            sse_chunk("Paris.").decode() + sse_chunk("", "stop").decode(),
            _event({"error": {"message": "usage accounting failed"}}),
        ),
        (
            "claude",
            _MESSAGE_START
            + _claude_event(
                "content_block_delta",
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Paris."}},
            )
            + _claude_event(
                "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
            ),
            _claude_event("error", {"type": "error", "error": {"message": "usage failed"}}),
        ),
    ],
    ids=["custom", "claude"],
)
def test_an_error_after_the_answer_ended_leaves_it_complete(
    ws: Workspace, endpoint: HostileEndpoint, source: str, ended: str, error: str
) -> None:
    """An error event after the model had finished (`finish_reason: stop`, Claude's
    `end_turn`) was shown under the whole answer as "reported an error while answering …
    Try again.", and the answer stored as stopped and its call counted as failed in
    /usage. Nothing of it is missing: it is shown, stored and counted as the complete
    answer it is, and the provider's error goes to the log."""
    setup = ws.run([f"/source {source}", f"/proxy set {endpoint.url_v1}", "/model m"])
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = Stream(kind="raw", chunks=[ended, error])
    run = ws.run(["What is the capital of France?", "/usage", "/help"])
    run.assert_survived()
    shown = run.before_help()
    assert "Paris." in shown and "⚠" not in shown and "error" not in shown, shown
    assert "in 1 call." in shown, shown
    assert ws.messages()[-1] == ("assistant", "Paris.", None)
    [(state,)] = ws.query("SELECT state FROM messages WHERE role = 'assistant'")
    assert state == "done"
    log = b"".join(ws.log_files().values()).decode()
    assert "after the model had finished the answer" in log and "failed" in log, log[-2000:]


def test_an_answer_cut_at_max_tokens_names_who_may_go_on_from_it(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """An answer ended at max_tokens told everyone in the channel "/continue goes on from
    it", though only its asker or an admin may: it names them, as an error's cut does."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = Stream(
        kind="raw", chunks=[sse_chunk("The capital is", "length").decode(), "data: [DONE]\n\n"]
    )
    run = ws.run(["What is the capital of France?", "/help"], args=["--user", "alice"])
    run.assert_survived()
    shown = run.before_help()
    assert (
        "The answer reached its length limit (max_tokens), so it stops here: alice or an "
        "admin can go on from it with /continue, or an admin raises it with /params "
        "max_tokens." in shown
    ), shown
    run = ws.run(["/continue", "/help"], args=["--user", "bob"])
    assert "Only alice or an admin of this channel can do that." in run.before_help()


def test_a_model_list_that_never_starts_does_not_speak_of_an_answer(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A model list that never came (the status check, /models external) was said as an
    answer that "did not start answering … The model may be loading": no model is loaded
    to list them. It says the model list did not come, and what may hold it."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.models_stream = Stream(kind="raw", chunks=["", '{"data": []}'], interval=5)
    run = ws.run(["/connect", "/models external", "/help"], PROVIDER_FIRST_BYTE_TIMEOUT="1")
    run.assert_survived()
    shown = run.before_help()
    said = "did not start sending the model list within 1 s."
    assert shown.count(said) == 2, shown
    assert "answer" not in shown and "model may be loading" not in shown, shown
