"""A new admin's first ten minutes, through the real console (`python -m bot console`).

Each flow is one console process fed on stdin, against a real peer: the llama.cpp server
(an LM Studio style endpoint: no key, served only under /v1) or the LiteLLM proxy (a
master key; serves both `/…` and `/v1/…`). Between steps the script runs `/system`, whose
fixed answer splits stdout into one piece per step, so every reply is checked where it
belongs. The SQLite database is read afterwards.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.store import generate_key
from tests.peers.litellm import LiteLLMPeer
from tests.peers.llamacpp import LlamaCppPeer

CHANNEL = "first-ten"
# `/system` without text shows the prompt; no flow sets one, so this line ends each step.
SEPARATOR_COMMAND = "/system"
SEPARATOR = "System prompt: (none)\n"
NO_WARNING = ("Warning", "Note:")


@dataclass
class Session:
    steps: list[list[str]]
    replies: list[str]  # what the console printed for each step, in order
    stdout: str
    stderr: str
    returncode: int
    db: Path
    log: Path

    def reply(self, first_line: str) -> str:
        """The output of the step that starts with `first_line` (its first occurrence)."""
        for step, reply in zip(self.steps, self.replies, strict=True):
            if step[0] == first_line:
                return reply
        raise AssertionError(f"no step {first_line!r} in {[s[0] for s in self.steps]}")

    def replies_of(self, first_line: str) -> list[str]:
        return [r for s, r in zip(self.steps, self.replies, strict=True) if s[0] == first_line]

    def row(self, columns: str) -> tuple[object, ...]:
        with sqlite3.connect(self.db) as conn:
            found = conn.execute(
                f"SELECT {columns} FROM channel_configs WHERE platform='console' AND channel_id=?",
                (CHANNEL,),
            ).fetchone()
        assert found is not None, "no channel_configs row for the console channel"
        return tuple(found)

    def count(self, table: str) -> int:
        with sqlite3.connect(self.db) as conn:
            (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(n)

    def messages(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()
        return [(str(r), str(c)) for r, c in rows]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def warned_only_of_length(answer: str) -> bool:
    """An answer with no warning but, from a small model at /params max_tokens 24, that
    it was cut there."""
    return "⚠️" not in answer.replace("⚠️ The answer reached its length limit (max_tokens)", "")


def run_console(
    tmp_path: Path, steps: list[list[str]], timeout: float = 180, **settings: str
) -> Session:
    """One console process; each step is a line (a command or a chat line) plus any
    lines it reads next (a secret), then the separator. `settings`: the operator's
    (`DEFAULT_PROXY_URL=…`)."""
    lines: list[str] = []
    for step in steps:
        lines += step
        lines.append(SEPARATOR_COMMAND)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEFAULT_", "DISCORD", "MATRIX", "OPENAI", "ANTHROPIC", "MISTRAL"))
    }
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db",
        DATA_DIR=str(tmp_path / "data"),
        BOT_SECRET_KEYS=generate_key(),
        ALLOW_PRIVATE_ENDPOINTS="true",
        LOG_LEVEL="INFO",
        PROVIDER_MAX_RETRIES="0",
        **settings,
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--channel", CHANNEL],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    pieces = result.stdout.split(SEPARATOR)
    assert pieces[-1] == "", f"output after the last step: {pieces[-1]!r}"
    replies = pieces[:-1]
    assert len(replies) == len(steps), (len(replies), len(steps), result.stdout)
    return Session(
        steps,
        replies,
        result.stdout,
        result.stderr,
        result.returncode,
        tmp_path / "data" / "chatbot.db",
        tmp_path / "data" / "chatbot.log",
    )


def assert_no_key_leak(session: Session, *secrets: str) -> None:
    raw = b"".join(
        p.read_bytes() for p in session.db.parent.iterdir() if p.name.startswith("chatbot.db")
    )
    for secret in secrets:
        assert secret not in session.stdout + session.stderr
        assert secret not in session.log_text()
        assert secret.encode() not in raw


def status_ok(reply: str) -> None:
    assert "Status check: OK" in reply, reply
    assert "failed" not in reply, reply


def status_401(reply: str) -> None:
    """An authentication failure, named as such, never taken for a wrong path."""
    assert "Status check failed" in reply, reply
    assert "HTTP 401" in reply, reply
    assert "rejected the credentials" in reply, reply
    assert "does not exist" not in reply and not re.search(r"(?<!\d)404(?!\d)", reply), reply


# --- 1. OpenAI + a passwordless reverse proxy (LM Studio style), typed without /v1 -----


@pytest.mark.llamacpp
def test_openai_through_a_passwordless_reverse_proxy_without_v1(
    tmp_path: Path, llamacpp_peer: LlamaCppPeer
) -> None:
    peer = llamacpp_peer
    s = run_console(
        tmp_path,
        [
            ["/source openai"],
            [f"/proxy set {peer.url}"],
            ["/proxy show"],
            ["/models external"],
            [f"/model {peer.model}"],
            ["/params max_tokens 24"],
            ["Name one colour."],
            ["/settings"],
        ],
    )
    assert "Source set to openai" in s.reply("/source openai")

    proxy = s.reply(f"/proxy set {peer.url}")
    assert f"Endpoint set to {peer.url}." in proxy, proxy
    status_ok(proxy)
    assert f"Using {peer.url_v1} (added /v1 for you)." in proxy, proxy
    assert "password" not in proxy.lower(), proxy  # no password needed, none asked for

    shown = s.reply("/proxy show")
    assert f"Proxy URL: {peer.url}\n" in shown and f"In use: {peer.url_v1}" in shown, shown
    assert "Password: not set" in shown, shown

    external = s.reply("/models external")
    assert "Show external models: on." in external and peer.model in external, external

    model = s.reply(f"/model {peer.model}")
    assert model.strip() == f"Model set to {peer.model}.", model
    assert not any(w in model for w in NO_WARNING), model

    answer = s.reply("Name one colour.").strip()
    assert answer and warned_only_of_length(answer), answer

    settings = s.reply("/settings")
    assert "Source: openai" in settings and f"Model: {peer.model}" in settings, settings
    assert f"Endpoint: {peer.url_v1}" in settings, settings
    assert "API key: not set" in settings and "Proxy password: not set" in settings, settings
    assert "Status: OK" in settings, settings

    source, proxy_url, resolved, model_id = s.row("source, proxy_url, resolved_url, model")
    assert (source, proxy_url, model_id) == ("openai", peer.url, peer.model)
    assert isinstance(resolved, str) and resolved.endswith("/v1") and resolved == peer.url_v1
    assert s.count("secrets") == 0
    messages = s.messages()
    assert [r for r, _ in messages] == ["user", "assistant"], messages
    assert messages[0][1] == "Name one colour."
    assert messages[1][1].strip() and messages[1][1].strip() in answer


# --- 2. a key-protected endpoint set up before its key ---------------------------------


@pytest.mark.litellm
def test_custom_endpoint_set_before_its_key(tmp_path: Path, litellm_peer: LiteLLMPeer) -> None:
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            ["/models external"],
            [f"/model {peer.model}"],
            ["Hello there."],
            ["/settings"],
        ],
    )
    first = s.reply("/source custom")
    assert "Source set to custom" in first and "/proxy set" in first, first

    proxy = s.reply(f"/proxy set {peer.url}")
    assert f"Endpoint set to {peer.url}." in proxy, proxy
    status_401(proxy)
    assert "/proxy password" in proxy, proxy  # says how to give the password

    password = s.reply("/proxy password")
    assert f"Saved the proxy password (ends …{peer.master_key[-4:]})." in password, password
    status_ok(password)

    external = s.reply("/models external")
    assert peer.model in external, external
    model = s.reply(f"/model {peer.model}")
    assert model.strip() == f"Model set to {peer.model}.", model

    assert s.reply("Hello there.").strip() == peer.mock_text
    settings = s.reply("/settings")
    assert "Proxy password: set (…" in settings and "Status: OK" in settings, settings
    assert s.count("secrets") == 1
    assert s.messages() == [("user", "Hello there."), ("assistant", peer.mock_text)]
    (status_ok_flag,) = s.row("status_ok")
    assert status_ok_flag
    assert_no_key_leak(s, peer.master_key)


@pytest.mark.litellm
def test_openai_reverse_proxy_with_a_password_set_after_the_url(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source openai"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            ["/models external"],
            [f"/model {peer.model}"],
            ["Hello there."],
            ["/settings"],
        ],
    )
    status_401(s.reply(f"/proxy set {peer.url}"))
    status_ok(s.reply("/proxy password"))
    assert peer.model in s.reply("/models external")
    model = s.reply(f"/model {peer.model}")
    assert model.strip() == f"Model set to {peer.model}.", model
    assert s.reply("Hello there.").strip() == peer.mock_text
    settings = s.reply("/settings")
    # No OpenAI key was ever set: the proxy password is the only credential there is.
    assert "API key: not set" in settings, settings
    assert "Proxy password: set (…" in settings, settings
    with sqlite3.connect(s.db) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM secrets")]
    assert names == ["proxy_password"], names
    assert_no_key_leak(s, peer.master_key)


@pytest.mark.litellm
def test_a_proxy_password_set_before_the_url_goes_to_that_url(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """The other order: the password first (it was refused, "set the proxy URL first",
    and the pasted password dropped), then the URL, which takes it."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source mistral"],
            ["/proxy password", peer.master_key],
            ["/settings"],
            [f"/proxy set {peer.url}"],
            [f"/model {peer.model}"],
            ["Hello there."],
            [f"/proxy set {peer.url}/v1/chat/completions"],  # the same server, pasted again
            ["/proxy set http://127.0.0.1:9/v1"],  # a new host: the password stays behind
            ["/settings"],
        ],
    )
    early = s.reply("/proxy password")
    assert "Saved the proxy password (ends …" in early, early
    waiting = s.reply("/settings")  # the first /settings: before the URL
    assert "Proxy password: set (" in waiting and "waiting for /proxy set <url>" in waiting
    assert "goes to the endpoint you set next with /proxy set <url>" in early, early
    url = s.reply(f"/proxy set {peer.url}")
    assert "with the proxy password saved before it" in url, url
    status_ok(url)
    assert s.reply("Hello there.").strip() == peer.mock_text
    again = s.reply(f"/proxy set {peer.url}/v1/chat/completions")
    assert "with the proxy password saved before." in again, again
    status_ok(again)
    moved = s.reply("/proxy set http://127.0.0.1:9/v1")
    assert f"The proxy password set for {peer.url}/v1 was removed" in moved, moved
    assert "Proxy password: not set" in s.replies_of("/settings")[-1]
    assert_no_key_leak(s, peer.master_key)


@pytest.mark.litellm
def test_the_openai_key_never_goes_to_a_reverse_proxy(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """The OpenAI key stored for the channel is the proxy's master key here: were it sent
    to the proxy, the check would pass. It must not be: only a proxy password is sent."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source openai"],
            [f"/proxy set {peer.url}"],
            ["/key set openai", peer.master_key],
            ["/connect"],
            [f"/model {peer.model}"],
            ["Hello there."],
        ],
    )
    status_401(s.reply(f"/proxy set {peer.url}"))
    saved = s.reply("/key set openai")
    assert "Saved the openai key for this channel" in saved, saved
    status_401(saved)
    status_401(s.reply("/connect"))
    chat = s.reply("Hello there.")
    assert peer.mock_text not in chat, chat
    assert "status check failed" in chat, chat
    assert [r for r, _ in s.messages() if r == "assistant"] == []


# --- 3. a pasted full route ---------------------------------------------------------------


@pytest.mark.llamacpp
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/models/"])
def test_a_pasted_route_is_cut_back_to_the_base(
    tmp_path: Path, llamacpp_peer: LlamaCppPeer, route: str
) -> None:
    peer = llamacpp_peer
    pasted = peer.url + route
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set {pasted}"],
            ["/proxy show"],
            [f"/model {peer.model}"],
            ["/params max_tokens 24"],
            ["Name one colour."],
        ],
    )
    proxy = s.reply(f"/proxy set {pasted}")
    assert f"Endpoint set to {peer.url_v1}." in proxy, proxy
    assert (
        f"Cut the URL back to {peer.url_v1}: the bot adds the routes it needs "
        "(/chat/completions, /models) itself." in proxy
    ), proxy
    status_ok(proxy)
    assert "added /v1" not in proxy, proxy  # /v1 was typed, only the route was cut

    shown = s.reply("/proxy show")
    assert f"Proxy URL: {peer.url_v1}\n" in shown, shown
    assert route not in shown.replace(peer.url_v1, ""), shown

    answer = s.reply("Name one colour.").strip()
    assert answer and warned_only_of_length(answer), answer
    proxy_url, resolved = s.row("proxy_url, resolved_url")
    assert proxy_url == peer.url_v1 and resolved == peer.url_v1
    assert [r for r, _ in s.messages()] == ["user", "assistant"]


# --- 4. Claude and Mistral reverse proxies without /v1 -----------------------------------


@pytest.mark.litellm
@pytest.mark.parametrize("source", ["claude", "mistral"])
def test_claude_and_mistral_reverse_proxies_without_v1(
    tmp_path: Path, litellm_peer: LiteLLMPeer, source: str
) -> None:
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            [f"/source {source}"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            ["/models external"],
            [f"/model {peer.model}"],
            ["Hello there."],
            ["/settings"],
        ],
    )
    assert f"Source set to {source}" in s.reply(f"/source {source}")
    status_401(s.reply(f"/proxy set {peer.url}"))
    password = s.reply("/proxy password")
    status_ok(password)
    assert peer.model in s.reply("/models external")
    model = s.reply(f"/model {peer.model}")
    assert model.strip() == f"Model set to {peer.model}.", model

    answer = s.reply("Hello there.").strip()
    assert answer == peer.mock_text, (answer, s.log_text()[-3000:])
    assert s.messages() == [("user", "Hello there."), ("assistant", peer.mock_text)]

    # Which base the channel settled on. LiteLLM answers GET /models at its root as well
    # as under /v1, so the root passes the check. For Mistral (OpenAI-shaped) the root
    # serves /chat/completions too; for Claude, POST {root}/messages is a 404 in LiteLLM
    # (only /v1/messages exists): the chat moves to /v1 and the channel keeps that base,
    # so the next process does not pay the 404 again and /settings shows what is used.
    (resolved,) = s.row("resolved_url")
    if source == "claude":
        assert resolved == peer.url_v1, resolved
        log = s.log_text()
        assert f"POST {peer.url}/messages → 404" in log, log[-3000:]
        assert f"{peer.url} works with /v1 added; using {peer.url_v1}" in log, log[-3000:]
    else:
        assert resolved in (peer.url, peer.url_v1), resolved
    settings = s.reply("/settings")
    assert "API key: not set" in settings and "Status: OK" in settings, settings
    assert_no_key_leak(s, peer.master_key)


@pytest.mark.llamacpp
@pytest.mark.parametrize("pasted", ["<{url}/v1>", "{url}/V1", "{url}//v1/", "{url}/v1,"])
def test_a_url_pasted_from_chat_or_a_sentence_is_understood(
    tmp_path: Path, llamacpp_peer: LlamaCppPeer, pasted: str
) -> None:
    """Discord's `<link>` (no preview), an upper-case `/V1`, doubled slashes, the comma of
    the sentence it was copied from: the endpoint is still the one meant."""
    peer = llamacpp_peer
    typed = pasted.format(url=peer.url)
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set {typed}"],
            [f"/model {peer.model}"],
            ["/params max_tokens 24"],
            ["Name one colour."],
        ],
    )
    proxy = s.reply(f"/proxy set {typed}")
    assert f"Endpoint set to {peer.url_v1}." in proxy, proxy
    status_ok(proxy)
    assert s.reply("Name one colour.").strip()
    assert [r for r, _ in s.messages() if r == "assistant"], "no answer was stored"


def test_a_space_before_the_urls_path_is_not_taken_for_a_password(tmp_path: Path) -> None:
    """`/proxy set http://host:1234 /v1`: `/v1` is not saved (or sent) as the password."""
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            ["/proxy set http://127.0.0.1:9 /v1"],
            ["/proxy set http://127.0.0.1:9 /v1/chat/completions"],
            ["/proxy show"],
        ],
    )
    for typed in (
        "/proxy set http://127.0.0.1:9 /v1",
        "/proxy set http://127.0.0.1:9 /v1/chat/completions",
    ):
        reply = s.reply(typed)
        assert "Nothing was saved: the password would start with /" in reply, reply
        assert "Type the URL without the space" in reply, reply
    assert "No proxy URL is set" in s.reply("/proxy show")
    assert s.count("secrets") == 0  # no password either


def test_a_mistyped_option_name_is_named_not_taken_for_a_value(tmp_path: Path) -> None:
    """`/connect bypas:on` said "`bypass` must be on or off, not `bypas:on`" (it was on);
    `/models list filtr:gpt` looked for models containing `filtr:gpt`. A model id with a
    colon (`llama3:8b`, as Ollama names them) is still a model id."""
    s = run_console(
        tmp_path,
        [
            ["/connect bypas:on"],
            ["/models list filtr:4o"],
            ["/source openai scpe:channel"],
            ["/model qwen:7b"],
        ],
    )
    bypass = s.reply("/connect bypas:on")
    assert "`/connect` has no option `bypas`. Did you mean `bypass:`?" in bypass, bypass
    assert "must be on or off" not in bypass, bypass
    assert "Usage: /connect [bypass:on|off|default]" in bypass, bypass
    found = s.reply("/models list filtr:4o")
    assert "`/models list` has no option `filtr`. Did you mean `filter:`?" in found, found
    scope = s.reply("/source openai scpe:channel")
    assert "`/source` has no option `scpe`. Did you mean `scope:`?" in scope, scope
    assert s.reply("/model qwen:7b").startswith("Model set to qwen:7b."), s.reply("/model qwen:7b")
    assert s.row("bypass_status_check, source, model") == (None, None, "qwen:7b")


def test_a_misspelt_scope_after_key_set_is_not_saved_as_the_key(tmp_path: Path) -> None:
    """`/key set openai scpe:server` saved `scpe:server` as the openai key ("Saved the
    openai key for this channel.") instead of asking for the key."""
    s = run_console(
        tmp_path,
        [["/key set openai scpe:server"], ["/proxy password scop:channel"], ["/settings"]],
    )
    for typed, command, name in (
        ("/key set openai scpe:server", "/key set", "scpe"),
        ("/proxy password scop:channel", "/proxy password", "scop"),
    ):
        said = s.reply(typed)
        assert f"`{command}` has no option `{name}`. Did you mean `scope:`?" in said, said
        assert "Saved" not in said, said
    assert "API key: not set" in s.reply("/settings")
    assert s.count("secrets") == 0


def test_swipe_after_a_question_that_got_no_answer_says_so(tmp_path: Path) -> None:
    """The endpoint was down, so the question has no answer: `/swipe next` said "There is
    only one answer here; regenerate for another.", and /regenerate then said there is
    none."""
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            ["/proxy set http://127.0.0.1:9/v1"],
            ["/connect bypass:on"],
            ["/model m"],
            ["Hello?"],
            ["/swipe next"],
        ],
    )
    assert "could not be reached" in s.reply("Hello?"), s.reply("Hello?")
    said = s.reply("/swipe next")
    assert said.strip() == "The last question has no answer yet; /retry asks it again.", said


def test_help_after_a_command_or_a_command_after_help_shows_its_usage(tmp_path: Path) -> None:
    """`/model help` set the model `help`, `/system help` the system prompt "help";
    `/proxy help` and `/help proxy` were refused (no `help` subcommand, not a source)."""
    s = run_console(
        tmp_path,
        [
            ["/model help"],
            ["/proxy help"],
            ["/help proxy set"],
            ["/key set ?"],
            ["/help openai"],
            ["/system help"],
        ],
    )
    model = s.reply("/model help").strip()
    assert model == "/model <id> — Choose the model that answers in this channel.", model
    proxy = s.reply("/proxy help")
    for line in ("/proxy set <url> [password] — Set the URL", "/proxy password", "/proxy show"):
        assert line in proxy, proxy
    assert s.reply("/help proxy set").strip().startswith("/proxy set <url> [password] — ")
    assert s.reply("/key set ?").strip().startswith("/key set <openai|claude|mistral|custom>")
    assert "How to connect:\nopenai:" in s.reply("/help openai")  # a source: its steps
    assert s.reply("/system help").strip().startswith("/system [prompt] — Set the system")
    assert s.count("channel_configs") == 0 and s.count("secrets") == 0  # nothing was set


def test_help_on_a_console_command_or_an_unknown_word_says_what_help_takes(
    tmp_path: Path,
) -> None:
    """`/help attach` and `/help quit` (both listed by /help in the console) were refused
    as "not a valid topic. Choose one of: openai, claude, mistral, custom", and so was a
    misspelt command (`/help prxy`), as if only sources had help; `/attach help` looked
    for a file named `help`; `/help proxy foo` called `proxy` no valid topic."""
    s = run_console(
        tmp_path,
        [
            ["/help attach"],
            ["/attach help"],
            ["/help /quit"],
            ["/help prxy"],
            ["/help proxy foo"],
            ["/help klingon"],
        ],
    )
    attach = "/attach <path> — Attach a file (an image, a text file, a PDF) to your next message"
    assert s.reply("/help attach").startswith(attach), s.reply("/help attach")
    assert s.reply("/attach help").startswith(attach), s.reply("/attach help")
    quit_line = s.reply("/help /quit").strip()
    assert quit_line == "/quit or /exit — Leave (Ctrl-D on an empty line does the same).", quit_line
    prxy = s.reply("/help prxy")
    assert prxy.startswith("`prxy` is neither a source nor a command. Did you mean `proxy`?"), prxy
    assert "/help <source> shows how to connect one (openai, claude, mistral, custom)" in prxy
    assert "/help <command> what a command takes" in prxy, prxy
    assert s.reply("/help proxy foo").startswith("/proxy set <url> [password] — ")
    klingon = s.reply("/help klingon")
    assert klingon.startswith("`klingon` is neither a source nor a command."), klingon
    assert "Did you mean" not in klingon and "not a valid topic" not in s.stdout, s.stdout


def test_help_with_its_option_named_shows_that_source(tmp_path: Path) -> None:
    """Review: `/help topic:openai`, as /help's own usage line writes it, was called
    "neither a source nor a command"."""
    s = run_console(tmp_path, [["/help openai"], ["/help topic:openai"], ["/help topic openai"]])
    source = s.reply("/help openai")
    assert "neither a source nor a command" not in source, source
    assert s.reply("/help topic:openai") == s.reply("/help topic openai") == source


def test_a_chat_line_with_a_console_command_s_word_is_chat(tmp_path: Path) -> None:
    """Review: the chat line `attach help` (no `/`) printed /attach's help, `quit ?` that
    of /quit, instead of going to the model as `hello` does."""
    s = run_console(tmp_path, [["hello"], ["attach help"], ["quit ?"], ["/attach help"]])
    chat = s.reply("hello")
    assert "/attach" not in chat and "Leave" not in chat, chat
    assert s.reply("attach help") == s.reply("quit ?") == chat, s.stdout
    assert s.reply("/attach help").startswith("/attach <path> — ")


def test_a_left_out_action_is_named_not_the_value_after_it(tmp_path: Path) -> None:
    """`/limits tokens_per_user_day 5` (no `set`) said "`5` is not a valid action", and
    `/access user bob` (no `allow`) "`bob` is not a valid action": the value blamed was
    right; the action left out before the name was what was missing."""
    s = run_console(
        tmp_path,
        [
            ["/limits tokens_per_user_day 5"],
            ["/access user bob"],
            ["/limits foo"],
            ["/limits set tokens_per_user_day 5"],
        ],
    )
    limits = s.reply("/limits tokens_per_user_day 5")
    assert limits.startswith(
        "The action is missing before `tokens_per_user_day`: one of show, set. Usage: /limits "
    ), limits
    access = s.reply("/access user bob")
    assert access.startswith(
        "The action is missing before `user`: one of list, allow, deny, remove. Usage: /access "
    ), access
    assert "not a valid action" not in limits + access
    # A word that is no action, with nothing after it, is still called one.
    assert s.reply("/limits foo").startswith("`foo` is not a valid action."), s.reply("/limits foo")
    assert s.reply("/limits set tokens_per_user_day 5").startswith("tokens_per_user_day set to 5")
    assert s.count("access_rules") == 0 and s.count("limits") == 1  # only the last one set


NO_MODEL_STEP = (
    "No model is selected for this channel. Pick one with /model <id> (see /models list)."
)


@pytest.mark.litellm
def test_a_status_check_that_passes_before_a_model_is_chosen_names_that_step(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """README's order for a custom endpoint: `/source custom`, `/proxy set`, its password.
    The check passed ("Status check: OK — 3 models available.") and said nothing more, as
    did `/connect`: the step left, a model, came only as the refusal of the first chat
    line. `/source` said it already; now every check that passes says it, until one is
    chosen."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            ["/connect"],
            [f"/model {peer.model}"],
            ["/connect bypass:off"],
        ],
    )
    password = s.reply("/proxy password")
    assert password.endswith(f"Status check: OK — 3 models available.\n{NO_MODEL_STEP}\n"), password
    connect = s.reply("/connect")
    assert connect == f"Status check: OK — 3 models available.\n{NO_MODEL_STEP}\n", connect
    # Refused, the URL's check names the password, not the model; chosen, no step is left.
    assert NO_MODEL_STEP not in s.reply(f"/proxy set {peer.url}")
    assert NO_MODEL_STEP not in s.reply("/connect bypass:off"), s.reply("/connect bypass:off")
    assert s.reply("/connect bypass:off").endswith("Status check: OK — 3 models available.\n")


def test_usage_server_where_there_is_none_names_the_console_s_channel(tmp_path: Path) -> None:
    """The console (no server, a channel) was told "/usage channel shows this room's
    usage": the word Matrix uses (Platform.place chooses it)."""
    s = run_console(tmp_path, [["/usage server"]])
    said = s.reply("/usage server").strip()
    assert said == "There is no server here; /usage channel shows this channel's usage.", said


def test_model_default_with_no_model_to_fall_back_to_names_the_next_step(
    tmp_path: Path,
) -> None:
    """`/model default` where the operator set no DEFAULT_MODEL said "This channel now
    uses the operator's model (none yet)." and no more; the next chat line was refused."""
    s = run_console(tmp_path, [["/model m-1"], ["/model default"]])
    said = s.reply("/model default")
    assert said.startswith("This channel now uses the operator's model (none yet)."), said
    assert "Pick one with /model <id> (see /models list)." in said, said
    assert s.row("model") == (None,)


def test_models_external_off_for_custom_does_not_promise_a_built_in_list(
    tmp_path: Path,
) -> None:
    """For custom, `/models external off` said "/model offers the built-in list": custom
    has none, and /model kept offering the endpoint's models."""
    off = ["/models external off"]
    s = run_console(tmp_path, [off, ["/source custom"], off])
    openai, said = s.replies_of(off[0])
    assert "/model offers the built-in list." in openai, openai
    assert "built-in list." not in said, said
    assert "/model still offers the models the endpoint listed: custom has no built-in" in said


@pytest.mark.litellm
def test_a_model_the_endpoint_does_not_list_is_named_by_the_status_check(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """The model was chosen before the endpoint: the check that lists the endpoint's
    models says the chosen one is not among them, instead of a bare OK before chat
    fails with the endpoint's 400."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            ["/model smollm2"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            ["/models list"],
            [f"/model {peer.model}"],
            ["/connect"],
        ],
    )
    listed = s.reply("/models list")  # what the check just fetched, without /models external
    assert f"custom models (the endpoint): {peer.model}" in listed, listed
    saved = s.reply("/proxy password")
    assert "models available, but not smollm2, so the endpoint may refuse it." in saved, saved
    assert "Pick one with /model." in saved, saved
    checked = s.reply("/connect").strip()
    assert checked.startswith("Status check: OK — ") and "but not" not in checked, checked


@pytest.mark.litellm
def test_every_check_that_meets_a_password_it_lacks_names_proxy_password(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """Only `/proxy set` named `/proxy password` when the endpoint wanted one and none
    was sent; `/connect` and `/source openai` through the proxy said only "an admin sets
    one" (the console's user is that admin). One sent and refused is not told to set one.
    The step is said once, naming the command: a line of its own after it said it again
    ("Set a key or a proxy password for it." … "If the endpoint wants a password, set it
    with /proxy password."), and after "Fix it and run /connect again"."""
    peer = litellm_peer
    hint = "Set a proxy password for it with /proxy password"
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set {peer.url}"],
            ["/connect"],
            ["/key set openai", "sk-not-sent-to-a-proxy-0123456789"],
            ["/source openai"],
            ["/proxy password", "wrong-password-0123"],
        ],
    )
    for typed in (f"/proxy set {peer.url}", "/connect", "/source openai"):
        said = s.reply(typed)
        status_401(said)
        assert said.count(hint) == 1, (typed, said)
        # What is wanted, then the command that sets one: no other line about a password.
        assert said.lower().count("password") == 3, (typed, said)
        assert said.index(hint) < said.index("Fix it and run /connect again"), (typed, said)
    refused = s.reply("/proxy password")
    status_401(refused)
    assert "Check the proxy password" in refused and hint not in refused, refused


@pytest.mark.llamacpp
def test_a_wrong_path_is_called_a_wrong_url_not_a_wrong_model(
    tmp_path: Path, llamacpp_peer: LlamaCppPeer
) -> None:
    """No model is chosen yet, so a 404 from the model list is about the URL."""
    peer = llamacpp_peer
    wrong = f"{peer.url}/api"
    s = run_console(tmp_path, [["/source custom"], [f"/proxy set {wrong}"]])
    reply = s.reply(f"/proxy set {wrong}")
    assert "/models (HTTP 404). Check the URL" in reply, reply
    assert "Check the model" not in reply, reply


# --- 5. steps in a different order ------------------------------------------------------


@pytest.mark.litellm
def test_steps_in_a_different_order_and_a_key_pasted_with_a_bom_and_quotes(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    peer = litellm_peer
    pasted_key = '\ufeff"' + peer.master_key + '"  '
    s = run_console(
        tmp_path,
        [
            [f"/model {peer.model}"],  # while the source is still the default, openai
            [f"/proxy set {peer.url}"],  # before the source
            ["/source custom"],
            ["/key set custom", pasted_key],
            [f"/model {peer.model}"],
            ["Hello there."],
            ["/settings"],
        ],
    )
    first_model, second_model = s.replies_of(f"/model {peer.model}")
    assert f"Model set to {peer.model}." in first_model, first_model

    status_401(s.reply(f"/proxy set {peer.url}"))

    switched = s.reply("/source custom")
    assert (
        f"Source set to custom. {peer.model} was the model for openai, so pick one for custom "
        "with /model (none is listed yet: /models external fetches the endpoint's list)."
        in switched
    ), switched
    status_401(switched)  # the same endpoint, still without its key

    saved = s.reply("/key set custom")
    assert f"Saved the custom key for this channel (ends …{peer.master_key[-4:]})." in saved
    status_ok(saved)
    assert second_model.strip() == f"Model set to {peer.model}.", second_model

    assert s.reply("Hello there.").strip() == peer.mock_text
    settings = s.reply("/settings")
    assert f"API key: set (…{peer.master_key[-4:]}, channel)" in settings, settings
    assert "Source: custom" in settings and f"Model: {peer.model}" in settings, settings
    source, proxy_url, model = s.row("source, proxy_url, model")
    assert (source, proxy_url, model) == ("custom", peer.url, peer.model)
    assert_no_key_leak(s, peer.master_key)


@pytest.mark.litellm
def test_the_usage_lines_brackets_typed_around_the_values_are_left_out(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """`/model <id>` and `/key set <source> <key>` copied with the values typed inside the
    brackets: the model was saved as `<model>` (a custom endpoint has no list to warn
    from, so chat failed with "model not found") and the key as `<key>` (401)."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set <{peer.url}>"],
            [f"/key set custom <{peer.master_key}>"],
            [f"/model <{peer.model}>"],
            ["Hello there."],
        ],
    )
    assert s.reply(f"/model <{peer.model}>").startswith(f"Model set to {peer.model}.")
    status_ok(s.reply(f"/key set custom <{peer.master_key}>"))
    assert s.reply("Hello there.").strip() == peer.mock_text
    assert s.row("proxy_url, model") == (peer.url, peer.model)
    assert_no_key_leak(s, peer.master_key)


@pytest.mark.litellm
def test_a_model_the_new_source_knows_survives_the_switch_and_a_model_list(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """The model typed before its source stays when the source lists it; turning on the
    external list to browse keeps a model the list does not name (any id is accepted)."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/model claude-sonnet-4-5"],
            ["/source claude"],
            ["/source custom"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            ["/model not-in-the-list"],
            ["/models external"],
            ["/settings"],
        ],
    )
    switched = s.reply("/source claude")
    assert "Source set to claude. Model: claude-sonnet-4-5." in switched, switched
    dropped = s.reply("/source custom")  # a custom endpoint lists its own models
    assert "claude-sonnet-4-5 was the model for claude, so pick one" in dropped, dropped
    listed = s.reply("/models external")
    assert peer.model in listed and "does not name not-in-the-list; it stays" in listed, listed
    assert "Model: not-in-the-list" in s.reply("/settings")
    assert_no_key_leak(s, peer.master_key)


@pytest.mark.litellm
def test_a_source_switch_clears_a_model_the_new_source_does_not_list(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """A model the endpoint lists stays (tests/integration/test_setup_polish.py); one
    neither the new source nor the endpoint knows goes, and the reply says to pick one."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            ["/model not-on-this-proxy"],
            ["/source mistral"],
            ["Hello there."],
            ["/settings"],
        ],
    )
    status_ok(s.reply("/proxy password"))
    switched = s.reply("/source mistral")
    # The custom endpoint's URL stays, now as Mistral's proxy: the reply says so (a user
    # switching to reach Mistral itself was answered by the local server, unaware).
    assert (
        f"Source set to mistral, through the proxy at {peer.url} (/proxy clear to reach "
        "mistral itself). not-on-this-proxy was the model for custom, so pick one for "
        "mistral with /model (offered: mistral-large-latest, mistral-medium-latest, "
        "mistral-small-latest …; /models list shows all 10)." in switched
    ), switched
    chat = s.reply("Hello there.")
    assert "No model is selected" in chat and "/model <id>" in chat, chat
    assert "Model: (not set)" in s.reply("/settings")
    (model,) = s.row("model")
    assert model is None
    assert "assistant" not in [role for role, _ in s.messages()]


@pytest.mark.litellm
def test_a_setup_script_saved_with_a_bom_still_starts_with_a_command(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """A script written in an editor that saves UTF-8 with a BOM (`chatbot console < setup.txt`):
    the BOM is the first character of stdin, so of the first command line."""
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["\ufeff/source custom"],
            [f"/proxy set {peer.url}"],
            ["/proxy password", peer.master_key],
            [f"/model {peer.model}"],
            ["Hello there."],
        ],
    )
    first = s.reply("\ufeff/source custom")
    assert "Source set to custom" in first, first
    assert "No model is selected" not in first, first  # not taken for a chat line
    (source,) = s.row("source")
    assert source == "custom"
    assert s.reply("Hello there.").strip() == peer.mock_text


# --- attachments from the console ------------------------------------------------------


@pytest.mark.litellm
def test_an_image_and_a_file_attached_in_the_console_reach_litellm(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """The real OpenAI-compatible peer accepts an image turn (content parts with a data URL)."""
    from PIL import Image as PILImage

    picture = tmp_path / "red.png"
    PILImage.new("RGB", (64, 48), "red").save(picture)
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nThe answer is 42.\n")
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            [f"/proxy set {peer.url_v1}"],
            ["/proxy password", peer.master_key],
            [f"/model {peer.model}"],
            ["/params vision on"],
            [f"/attach {picture}"],
            [f"/attach {notes}"],
            ["/attach"],
            ["What is in the picture and the notes?"],
            ["/attach"],
        ],
    )
    assert "Attached red.png" in s.reply(f"/attach {picture}")
    listed = [r for step, r in zip(s.steps, s.replies, strict=True) if step == ["/attach"]]
    assert "red.png, notes.md" in listed[0]
    assert "Nothing is attached" in listed[1]  # sent with the message, then cleared
    assert s.reply("What is in the picture and the notes?").strip() == peer.mock_text
    [(_, question), (_, answer)] = s.messages()
    assert question.startswith("What is in the picture and the notes?\nnotes.md\n```markdown")
    assert "The answer is 42." in question and answer == peer.mock_text
    with sqlite3.connect(s.db) as conn:
        assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (1,)
        assert conn.execute("SELECT name FROM message_images").fetchall() == [("red.png",)]


@pytest.mark.litellm
def test_a_cleared_key_is_checked_again_and_vision_off_is_named(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """`/key clear` left "Status: OK" from the key it removed (the next chat got a 401);
    an image with vision turned off said the model was "not known to see images"."""
    from PIL import Image as PILImage

    picture = tmp_path / "red.png"
    PILImage.new("RGB", (8, 8), "red").save(picture)
    peer = litellm_peer
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            ["/settings"],
            [f"/proxy set {peer.url}"],
            ["/key set custom", peer.master_key],
            [f"/model {peer.model}"],
            ["/params vision off"],
            [f"/attach {picture}"],
            ["What is in it?"],
            ["/key clear custom"],
        ],
    )
    assert "Endpoint: (none yet: set one with /proxy set <url>)" in s.reply("/settings")
    status_ok(s.reply("/key set custom"))
    said = s.reply("What is in it?")
    assert "images are turned off here (/params vision default: automatic)" in said, said
    assert "not known to see images" not in said
    status_401(s.reply("/key clear custom"))
    assert_no_key_leak(s, peer.master_key)


# --- 6. moving and clearing the endpoint: what stays with which server --------------------


def test_proxy_clear_says_what_it_removed_and_which_url_still_applies(tmp_path: Path) -> None:
    """With the operator's DEFAULT_PROXY_URL in use, `/proxy clear` said "Removed the proxy
    URL for this channel." (and "…and its proxy password") though the channel had none of
    its own, and the operator's URL went on being used."""
    operator = "http://127.0.0.1:9/v1"
    s = run_console(
        tmp_path,
        [
            ["/proxy clear"],
            ["/proxy password", "pw-for-the-operators-url-1234"],
            ["/proxy clear"],
            ["/proxy set http://127.0.0.1:10/v1"],
            ["/proxy clear"],
            ["/settings"],
        ],
        DEFAULT_PROXY_URL=operator,
        DEFAULT_SOURCE="custom",
    )
    applies = f"The operator's DEFAULT_PROXY_URL applies here: {operator}."
    nothing, password, own = s.replies_of("/proxy clear")
    assert nothing == f"No proxy URL was set for this channel; nothing changed.\n{applies}\n"
    assert password == (
        f"This channel had no proxy URL of its own; removed its proxy password.\n{applies}\n"
    ), password
    assert own == f"Removed the proxy URL for this channel.\n{applies}\n", own
    assert f"Endpoint: {operator} (operator default)" in s.reply("/settings")
    assert s.count("secrets") == 0
    assert_no_key_leak(s, "pw-for-the-operators-url-1234")

    (tmp_path / "alone").mkdir()
    alone = run_console(tmp_path / "alone", [["/proxy clear"]])  # no URL anywhere
    assert alone.replies == ["No proxy URL was set for this channel; nothing changed.\n"]


def test_the_same_server_written_with_its_default_port_keeps_the_key(tmp_path: Path) -> None:
    """`https://host` and `https://host:443` are one server (the same socket), as are two
    spellings of one IPv6 address: the key set for one was removed as if sent elsewhere."""
    s = run_console(
        tmp_path,
        [
            ["/source custom"],
            ["/proxy set https://127.0.0.1/v1"],
            ["/key set custom", "sk-custom-default-port-1111"],
            ["/proxy set https://127.0.0.1:443/v1/chat/completions"],
            ["/proxy set http://[::1]:9/v1"],
            ["/proxy password", "pw-for-the-ipv6-host-2222"],
            ["/proxy set http://[0:0:0:0:0:0:0:1]:9"],
            ["/settings"],
        ],
    )
    for typed in ("/proxy set https://127.0.0.1:443/v1/chat/completions",):
        assert "removed" not in s.reply(typed), s.reply(typed)
    moved = s.reply("/proxy set http://[::1]:9/v1")
    assert (
        "The custom key set for https://127.0.0.1:443/v1 was removed: a key or password goes "
        "only to the server it was set for." in moved
    ), moved
    again = s.reply("/proxy set http://[0:0:0:0:0:0:0:1]:9")
    assert "with the proxy password saved before." in again and "removed" not in again, again
    assert "Proxy password: set (…2222, channel)" in s.reply("/settings")


@pytest.mark.litellm
def test_a_key_set_under_the_operators_url_stays_for_that_server_only(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """A key set while the operator's DEFAULT_PROXY_URL applies was set for that server:
    `/proxy set` to the same server (a route pasted) keeps it and it is still sent; to
    another server, `localhost` for `127.0.0.1` included (it may reach ::1, where another
    program may listen), it is removed, and the reply names the URL it was set for."""
    peer = litellm_peer
    local = peer.url.replace("127.0.0.1", "localhost")
    s = run_console(
        tmp_path,
        [
            ["/key set custom", peer.master_key],
            [f"/proxy set {peer.url}/v1/chat/completions"],
            [f"/proxy set {local}/v1"],
            ["/settings"],
        ],
        DEFAULT_PROXY_URL=peer.url,
        DEFAULT_SOURCE="custom",
    )
    status_ok(s.reply("/key set custom"))
    same = s.reply(f"/proxy set {peer.url}/v1/chat/completions")
    assert "removed" not in same, same
    status_ok(same)  # the key is still sent
    moved = s.reply(f"/proxy set {local}/v1")
    assert moved.startswith(
        f"Endpoint set to {local}/v1. The custom key set for {peer.url}/v1 was removed: a key "
        "or password goes only to the server it was set for.\n"
        "If it needs a key, set it with /key set custom.\n"
    ), moved
    status_401(moved)  # not sent to the other name
    assert "API key: not set" in s.reply("/settings")
    assert_no_key_leak(s, peer.master_key)
