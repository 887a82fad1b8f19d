"""Operator default limits reach a real console session: the second question in a minute
is refused with a line that says when it frees up, and the model never sees it."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from bot.store import generate_key
from tests.e2e.hostile_endpoint import HostileEndpoint, status_only
from tests.e2e.test_console import console
from tests.e2e.test_hostile_console import Workspace
from tests.peers.llamacpp import LlamaCppPeer


@pytest.mark.llamacpp
def test_operator_limit_refuses_in_the_console(tmp_path: Path, llamacpp_peer: LlamaCppPeer) -> None:
    done = console(
        tmp_path,
        [
            "/source custom",
            f"/proxy set {llamacpp_peer.url}",
            f"/model {llamacpp_peer.model}",
            "/params max_tokens 8",
            "Name one colour.",
            "Name another colour.",
            "/limits",
        ],
        BOT_SECRET_KEYS=generate_key(),
        LIMIT_MESSAGES_PER_USER_MINUTE="1",
        LIMIT_TOKENS_PER_USER_DAY="100000",
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "Limit reached: messages_per_user_minute (1 message a minute per person)" in out
    assert "frees up at" in out and "Nothing was sent to the model" in out
    assert "messages_per_user_minute = 1 (operator default)" in out
    assert "messages_per_user_minute: 0 of 1 messages left for you" in out
    # A day's limit that counts says when it refills, not only once nothing is left.
    [tokens] = [line for line in out.splitlines() if "tokens_per_user_day: " in line]
    # Within the hour before midnight the time says its seconds too (00:00:00 UTC).
    assert re.search(
        r" of 100,000 tokens left for you, refills at 00:00(:00)? UTC \(in ", tokens
    ), tokens
    with sqlite3.connect(tmp_path / "data" / "chatbot.db") as conn:
        questions = conn.execute("SELECT content FROM messages WHERE role='user'").fetchall()
        assert questions == [("Name one colour.",)]
        assert conn.execute("SELECT state, count(*) FROM usage GROUP BY state").fetchall() == [
            ("settled", 1)
        ]


def test_a_limit_of_zero_says_it_allows_nothing(tmp_path: Path) -> None:
    """Probe: `/limits set tokens_per_channel_day 0` said only "set to 0", where many
    tools read 0 as "no limit": here it allows nothing, to anyone (admins too), and a
    limit of 1 to 255 tokens was warned about but 0 was not. The reply says so, and
    how to have no limit."""
    done = console(
        tmp_path,
        [
            "/limits set tokens_per_channel_day 0",
            "/limits set messages_per_user_minute 0",
            "/limits set tokens_per_user_day 100",
        ],
        BOT_SECRET_KEYS=generate_key(),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "tokens_per_channel_day set to 0 for this channel. A limit of 0 allows nothing: no "
        "one, admins included, can chat in this channel until it is raised (/limits set "
        "tokens_per_channel_day off: no limit)."
    ), lines
    assert lines[1].startswith("messages_per_user_minute set to 0 for this channel. A limit")
    assert "/limits set messages_per_user_minute off: no limit" in lines[1], lines
    assert "A limit of 0" not in lines[2] and "a limit this small" in lines[2], lines


def test_a_retry_a_limit_refuses_leaves_the_question_failed(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Probe: a question the endpoint failed is kept out of what the model reads (it got
    no answer), until /retry asks it again. A /retry that a limit refused (nothing sent)
    marked it asked all the same: stored as a question without its error, so the next
    question went to the model with it before, never answered."""
    endpoint.on_chat = status_only(500, "the server fell over")
    setup = ["/source custom", f"/proxy set {endpoint.url_v1}", "/model m", "/connect bypass:on"]
    first = ws.run([*setup, "Which colour?", "/limits set tokens_per_user_day 0", "/retry"])
    assert first.returncode == 0, first.describe()
    assert "Limit reached: tokens_per_user_day" in first.out, first.describe()
    [(role, text, error)] = ws.messages()
    assert (role, text) == ("user", "Which colour?") and error, ws.messages()  # still failed
    endpoint.on_chat = None  # the endpoint answers again
    second = ws.run(["/limits set tokens_per_user_day off", "Which animal?"])
    assert second.returncode == 0, second.describe()
    assert "Hello there!" in second.out, second.describe()
    sent = json.loads(endpoint.chat_requests()[-1].body)
    asked = [m["content"] for m in sent["messages"] if m["role"] == "user"]
    assert asked == ["Which animal?"], asked


def test_a_question_the_endpoint_refused_does_not_use_up_the_minute(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Probe: with messages_per_user_minute 1, a question the endpoint refused (HTTP 429)
    used up the minute: the retry was refused by the bot's own limit, for a turn that was
    never answered. A failed question is given back while a person's failed ones are no
    more than the limit; past that they count, so a failing endpoint is asked at most
    twice the limit in a minute."""
    endpoint.on_chat = status_only(429, "Rate limit reached for requests")
    setup = ["/source custom", f"/proxy set {endpoint.url_v1}", "/model m", "/connect bypass:on"]
    done = ws.run(
        [*setup, "Which colour?", "Which colour, again?", "And now?", "/limits"],
        LIMIT_MESSAGES_PER_USER_MINUTE="1",
    )
    assert done.returncode == 0, done.describe()
    assert len(endpoint.chat_requests()) == 2, done.describe()  # the retry went
    refused = [line for line in done.out.splitlines() if line.startswith("Limit reached")]
    assert len(refused) == 1, done.describe()  # the third: two failed, past the limit of 1
    failed = "; 2 questions of the last minute failed, which count past 1. It frees up"
    assert failed in refused[0], refused
    assert (
        "messages_per_user_minute: 0 of 1 messages left for you (2 questions of the last "
        "minute failed, which count past 1), frees up at"
    ) in done.out, done.describe()


def test_an_operator_writes_no_limit_as_off_none_or_unlimited(ws: Workspace) -> None:
    """Probe: `LIMIT_TOKENS_PER_USER_DAY=off` (or `none`, `unlimited`) stopped the bot with
    "not a whole number", where the README says `off` is no limit and /limits set takes
    it: the words read as an empty value does, and a value still refused says what to
    write for no limit."""
    done = ws.run(
        ["/limits", "/limits set tokens_per_channel_day None", "/limits"],
        LIMIT_MESSAGES_PER_USER_MINUTE="off",
        LIMIT_TOKENS_PER_USER_DAY="Unlimited",
        LIMIT_TOKENS_PER_SERVER_DAY=" none ",
    )
    assert done.returncode == 0, done.describe()
    lines = done.out.splitlines()
    assert lines[0].startswith("No limits hold here."), done.describe()
    assert lines[1] == "tokens_per_channel_day is off for this channel.", done.describe()
    assert lines[2].startswith("No limits hold here."), done.describe()
    wrong = ws.run(["/limits"], LIMIT_TOKENS_PER_USER_DAY="-1")
    assert wrong.returncode != 0, wrong.describe()
    assert (
        "Setting LIMIT_TOKENS_PER_USER_DAY is invalid: must be from 0 to 1000000000000. Fix: "
        "leave it empty or write off for no limit (0 allows nothing)."
    ) in wrong.err, wrong.describe()


def test_each_line_past_a_limit_gets_its_refusal_in_the_console(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Discord and Matrix tell a member flooding past a limit once while the refusal is
    recent; the console is one person at their terminal, nobody else's answers waiting
    behind it: every line they type past the limit is answered with its refusal."""
    setup = ["/source custom", f"/proxy set {endpoint.url_v1}", "/model m", "/connect bypass:on"]
    done = ws.run(
        [*setup, "Which colour?", "And now?", "Still?", "Once more?"],
        LIMIT_MESSAGES_PER_USER_MINUTE="1",
    )
    assert done.returncode == 0, done.describe()
    assert len(endpoint.chat_requests()) == 1, done.describe()
    refused = [line for line in done.out.splitlines() if line.startswith("Limit reached")]
    assert len(refused) == 3, done.describe()
