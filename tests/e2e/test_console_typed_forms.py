"""The README's commands typed into `python -m bot console` the ways people type them: an
option written first or as Discord shows it (`scope:channel` before the text, `key:…`), and
Matrix's `!` form. Driven through stdin against the loopback endpoint of
`hostile_endpoint.py`, which records every request; the database is read afterwards.
"""

from __future__ import annotations

from tests.e2e.hostile_endpoint import HostileEndpoint
from tests.e2e.test_hostile_console import (
    HELP_MARK,
    SENTINEL,
    Workspace,
    assert_found_nowhere,
    custom_setup,
    segments,
    with_sentinels,
)


def test_a_secret_written_with_its_option_name_is_stored_without_it(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`key:…` and `password:…`, as Discord shows the options: the name was kept as part
    of the secret (`key:sk-…` sent as the key, the status check failing), and `key:` before
    the source quoted the key back as a source that is not one."""
    key_a, key_b, password = "KeyAlpha0123456789", "KeyBravo0123456789", "PassCharlie012345"
    run = ws.run(
        with_sentinels(
            [
                *custom_setup(endpoint),
                f"/key set custom key:{key_a}",
                f"/key set KEY: {key_b} custom",  # the name first, a space after its colon
                f"/proxy set {endpoint.url_v1} password={password}",
                "/help",
            ]
        )
    )
    run.assert_survived()
    said = segments(run.out)
    assert "Saved the custom key for this channel (ends …6789)" in said[3], said[3]
    assert "Saved the custom key for this channel (ends …6789)" in said[4], said[4]
    assert "with a password" in said[5], said[5]
    sent = [a for a in endpoint.authorizations() if a]
    for secret in (key_a, key_b, password):
        assert f"Bearer {secret}" in sent, sent
        assert secret not in run.out + run.err
    assert not [a for a in sent if "key:" in a.lower() or "password=" in a.lower()], sent
    assert sorted(ws.secret_names()) == ["custom_api_key", "proxy_password"], ws.secret_names()


def test_an_option_named_before_free_text_is_the_option_not_the_text(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/system scope:server Be nice.` (the option first, the text after) set this
    channel's system prompt to "scope:server Be nice." where the scope is refused; and
    `/params temperature scope:channel 0.5` said 0.5 was no number."""
    run = ws.run(
        with_sentinels(
            [
                *custom_setup(endpoint),
                "/system scope:server Be nice.",
                "/prompts post_history scope:channel Stay brief.",
                "/params temperature scope:channel 0.5",
                "/help",
            ]
        )
    )
    run.assert_survived()
    said = segments(run.out)
    assert "There is no server here" in said[3], said[3]
    assert "Post-history instructions set." in said[4], said[4]
    assert "temperature set to 0.5." in said[5], said[5]
    config = ws.config()
    assert config is not None
    assert config["system_prompt"] is None, config["system_prompt"]
    assert config["post_history_prompt"] == "Stay brief.", config["post_history_prompt"]
    assert config["temperature"] == 0.5, config["temperature"]


def test_a_scope_after_free_text_is_the_scope_however_it_is_typed(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/system Be nice. scope: server` (a space after the colon, as Discord shows an
    option) and `scope:guild`: where there is no server, each set this channel's prompt
    (or stop strings) with the scope as part of the text, "System prompt set.", where
    `scope:server` is refused before anything changes. A prompt that only reads like one
    (`Scope: channel moderation only.` at its start, review: it had lost its first two
    words; `within scope: cooking`) stays the prompt."""
    prose = "Scope: channel moderation only. Stay within scope: cooking"
    run = ws.run(
        with_sentinels(
            [
                *custom_setup(endpoint),
                "/system Be nice. scope: server",
                "/params stop END scope: server",
                "/prompts post_history Stay brief. scope:guild",
                f"/system {prose}",
                "/help",
            ]
        )
    )
    run.assert_survived()
    said = segments(run.out)
    for refused in said[3:5]:
        assert "There is no server here" in refused, refused
    assert "`guild` is not a valid scope" in said[5], said[5]
    assert "System prompt set." in said[6], said[6]
    config = ws.config()
    assert config is not None
    assert config["system_prompt"] == prose, config["system_prompt"]
    assert config["stop"] is None and config["post_history_prompt"] is None, config


def test_a_command_typed_as_on_matrix_is_not_chat_and_its_key_goes_nowhere(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """The README's Matrix lines pasted into the console (`!key set custom <key>`,
    `!proxy password` with the password on the next line, `!access allow level 50`) were
    chat lines: sent to the model, the key and password with them, and kept in the
    history in plain text. They are sent nowhere now, and the reply says to type `/`."""
    inline, following = "Qz3Xc6Vb9Nm2Lk5Jh800", "hunter2-matrix-pass"
    steps = [
        *([line] for line in custom_setup(endpoint)),
        [f"!key set custom {inline}"],
        ["!proxy password", following],  # the README's piped form: the secret next
        ["!model other-model"],
        ["!access allow level 50"],
        ["/help"],
    ]
    run = ws.run([line for step in steps for line in (*step, SENTINEL)])
    run.assert_survived()
    said = segments(run.out)
    assert "type /key set, and the key or password is asked for hidden" in said[3], said[3]
    assert "type /proxy password," in said[4], said[4]
    assert "taken as the secret it asked for and dropped" in said[4], said[4]
    assert (
        "Commands here start with /, not ! (that is Matrix's): type /model … instead" in (said[5])
    ), said[5]
    assert "type /access … instead" in said[6], said[6]
    assert HELP_MARK in run.out
    assert not endpoint.chat_requests()
    assert ws.messages() == []
    assert ws.secret_names() == []
    config = ws.config()
    assert config is not None and config["model"] == "m", config
    assert_found_nowhere(ws, run, {"inline": inline, "following": following})
    for request in endpoint.requests:
        assert inline.encode() not in request.body and following.encode() not in request.body


def test_a_url_typed_with_its_password_and_no_scheme_is_refused_without_showing_it(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/proxy set user:password@host:port/v1` (the scheme left out, or a slash short) was
    answered with the whole text quoted back, the password with it, to the channel; the
    refusal with `http://` already named nothing. Nothing is saved or sent either way."""
    password = "Pw4Proxy77"
    where = f"127.0.0.1:{endpoint.port}/v1"
    typed = [f"user:{password}@{where}", f"http:/user:{password}@{where}", f"{password}@{where}"]
    run = ws.run(
        with_sentinels(["/source custom", *(f"/proxy set {url}" for url in typed), "/help"])
    )
    run.assert_survived()
    said = segments(run.out)
    for answer in said[1:4]:
        assert "The URL must not contain a user name or password." in answer, run.describe()
    assert_found_nowhere(ws, run, {"raw": password})
    config = ws.config()
    assert config is None or config["proxy_url"] is None
    assert endpoint.requests == []


def test_scope_server_is_not_offered_where_there_is_no_server(ws: Workspace) -> None:
    """The console's help says `/usage [me|channel]` and no scope at all for /model, but a
    mistyped scope was told "Choose one of: me, channel, server" (and "channel, server"):
    a choice the console has no use for. Its choices are now those Platform.has, and
    `scope:server` typed all the same is still refused with why, changing nothing."""
    run = ws.run(["/usage everywhere", "/model m-x scope:srv", "/model m-x scope:server", "/help"])
    run.assert_survived()
    said = run.before_help().splitlines()
    assert said[0].endswith("Choose one of: me, channel."), said
    assert said[1].endswith("Choose one of: channel."), said
    assert said[2].startswith("There is no server here, so nothing can be set server-wide"), said
