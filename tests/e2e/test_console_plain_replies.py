"""Replies a new admin found confusing, typed into `python -m bot console`: each says what
happened in plain words and the next step, and to a member who must take it."""

from __future__ import annotations

import socket

from tests.e2e.hostile_endpoint import HostileEndpoint, status_only
from tests.e2e.test_hostile_console import Workspace


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _line(out: str, start: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(start))


def test_a_refused_connection_is_said_in_words_and_its_fix_as_an_admins(ws: Workspace) -> None:
    """A failed check said "could not be reached (ConnectError). Check the URL and that
    the server is running" to every member: httpx's class name, and a task only an admin
    can do. The admin is told the steps; a member that an admin fixes it, and who."""
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    admin = ws.run(["/source custom", f"/proxy set {url}", "/model m", "/help"])
    admin.assert_survived()
    failed = _line(admin.out, "Status check failed: ")
    assert "the connection was refused" in failed, failed
    assert "ConnectError" not in failed and "Check the URL and that the server is" in failed
    member = ws.run(["hello", "/settings", "/help"], args=["--user", "bob"])
    member.assert_survived()
    for said in (member.before_help().splitlines()[0], _line(member.out, "Status: failed")):
        assert "the connection was refused" in said, said
        assert "ConnectError" not in said and "Check the URL" not in said, said
        assert "Only an admin can fix that (the console run without --user" in said, said
    refused = ws.run(["/model other", "/help"], args=["--user", "bob"])
    refused.assert_survived()
    assert refused.before_help().startswith(
        "Only admins of this channel can use /model (the console run without --user, and "
        "the operator's ADMIN_IDS). "
    ), refused.describe()
    log = (ws.data_dir / "chatbot.log").read_text()
    assert "ConnectError" in log  # the operator still finds the class


def test_a_failed_check_kept_is_told_to_an_admin_as_their_step(ws: Workspace) -> None:
    """The kept outcome of a failed check was its member's wording: an admin who chatted,
    or read /settings, was told "Only an admin can fix that …", never what to check."""
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    admin = ws.run(
        ["/source custom", f"/proxy set {url}", "/model m", "hello", "/settings", "/help"]
    )
    admin.assert_survived()
    blocked = _line(admin.out, "The endpoint failed its last status check — ")
    for said in (blocked, _line(admin.out, "Status: failed")):
        assert "Check the URL and that the server is running" in said, said
        assert "Only an admin" not in said, said
    member = ws.run(["hello", "/settings", "/help"], args=["--user", "bob"])
    member.assert_survived()
    blocked = _line(member.out, "The endpoint failed its last status check — ")
    for said in (blocked, _line(member.out, "Status: failed")):
        assert "Check the URL" not in said, said
        assert "Only an admin can fix that (the console run without --user" in said, said


def test_a_credential_wanted_is_the_admins_to_set(ws: Workspace, endpoint: HostileEndpoint) -> None:
    """A 401 where no key or proxy password was sent told the admin who set the URL "an
    admin sets one", at /connect, in chat and in /settings; the admin reads it as theirs."""
    endpoint.on_models = status_only(401, "unauthorized")
    admin = ws.run(["/source custom", f"/proxy set {endpoint.url_v1}", "/model m", "hi", "/help"])
    admin.assert_survived()
    failed = _line(admin.out, "Status check failed: ")
    blocked = _line(admin.out, "I can't answer: the last status check failed — ")
    for said in (failed, blocked):
        assert (
            "none is set here. Set a proxy password for it with /proxy password, or a key "
            "with /key set custom." in said
        ), said
        assert "an admin" not in said.lower(), said
    member = ws.run(["hello", "/settings", "/help"], args=["--user", "bob"])
    member.assert_survived()
    blocked = _line(member.out, "I can't answer: the last status check failed — ")
    for said in (blocked, _line(member.out, "Status: failed")):
        assert "none is set here. Only an admin can fix that (the console" in said, said


def test_model_steps_name_the_models_and_custom_says_its_list_is_offered(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/models external` ended at the list without the next step; `/source custom` after
    a dropped model said to pick one without naming any; /settings said "Show external
    models: off" for custom, whose endpoint list /model offers all the same."""
    endpoint.models = ["llama-a", "llama-b", "qwen-c", "qwen-d"]
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",
            "/models external",
            "/source openai",
            "/model other-x",
            "/source custom",
            "/models external off",
            "/settings",
            "/help",
        ]
    )
    run.assert_survived()
    out = run.before_help()
    lines = out.splitlines()
    listed = lines.index(_line(out, "Show external models: on. The endpoint offers: "))
    assert lines[listed + 1] == "Pick one with /model <id>.", run.describe()
    dropped = _line(out, "Source set to custom. other-x was the model for openai")
    assert dropped.endswith(
        "pick one for custom with /model (offered: llama-a, llama-b, qwen-c …; /models list "
        "shows all 4)."
    ), dropped
    shown = _line(out, "Show external models: off (this channel)")
    assert "custom has no built-in list, so the endpoint's is offered anyway" in shown, shown


def test_a_url_with_a_space_says_what_to_do(ws: Workspace) -> None:
    """`The url has a space at position 21.` said where, not what to do next."""
    run = ws.run(['/proxy set "http://127.0.0.1:9/a b"', "/help"])
    run.assert_survived()
    said = run.before_help().strip()
    assert said == "The url has a space at position 21. Type it again without it.", said
