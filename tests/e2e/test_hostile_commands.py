"""Every command of the table fed the hostile forms of its options, through the real
entry points: `python -m bot console` (stdin as bytes) and `python -m bot run` against
the fake Discord (slash-command options). Each value is refused with a message that says
what to do, and nothing changes: the database rows and /settings are the same before and
after, and no traceback or secret reaches the reply, the log or a row."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.store import generate_key
from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script
from tests.e2e.hostile_endpoint import HostileEndpoint
from tests.e2e.test_hostile_console import Workspace, assert_found_nowhere, custom_setup

SETUP_KEY = "sk-setup-0123456789abcdefXYZ"
HOSTILE_KEY = "sk-hostile-9876543210zyxwvu"
SENT = "/zzsentinel"
SENT_SAID = "Unknown command `/zzsentinel`. Type /help for the list."
BIG = "x" * 100_000
# What each table holds that a command could change (a refused one changes none of it).
TABLES = ("channel_configs", "secrets", "access_rules", "limits", "characters", "audit_log")


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}


# --------------------------------------------------------------------------------------
# The console: one workspace set up once; each case must leave it as it found it.
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def set_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    endpoint = HostileEndpoint().start()
    ws = Workspace(cwd=tmp_path_factory.mktemp("hostile-commands"), secret_keys=generate_key())
    try:
        run = ws.run(
            [
                *custom_setup(endpoint),
                f"/key set custom {SETUP_KEY}",
                "/params temperature 0.7",
                "/params stop END",
                "/system You are terse.",
                "/access allow user alice",
                "/limits set tokens_per_user_day 5000",
            ]
        )
        assert run.returncode == 0, run.describe()
        assert "Traceback" not in run.err, run.describe()
        yield ws
    finally:
        endpoint.stop()


# (what is fed, a part of the reply that says what is wrong or what to do instead)
CONSOLE_CASES: dict[str, tuple[bytes | str, str]] = {
    # /source
    "source-empty-quotes": ('/source ""', "needs a value"),
    "source-100kb": (f"/source {BIG}", "is too long"),
    "source-nul": ("/source cust\x00om", "control character (U+0000)"),
    "source-invalid-utf8": (b"/source cust\xffom", "not utf-8 text"),
    "source-lone-surrogate": (b"/source cust\xed\xa0\x80om", "not utf-8 text"),
    "source-zero-width": ("/source cust\u200bom", "Did you mean `custom`?"),
    "source-cyrillic": ("/source cl\u0430ude", "Did you mean `claude`?"),
    "source-percent": ("/source %63laude", "is not a valid source"),
    "source-json-escape": ("/source \\u0063laude", "is not a valid source"),
    "source-open-quote": ('/source "claude', "A quote is not closed"),
    # /key
    "key-zero-width": (f"/key set custom {HOSTILE_KEY[:6]}\u200b{HOSTILE_KEY[6:]}", "U+200B"),
    "key-nul": (f"/key set custom {HOSTILE_KEY[:6]}\x00{HOSTILE_KEY[6:]}", "U+0000"),
    "key-fullwidth": ("/key set custom \uff53\uff4b-abcdef0123456789", "FULLWIDTH"),
    "key-100kb": (f"/key set custom {BIG}", "too long for the API key"),
    "key-cyrillic-source": (f"/key set cust\u043em {HOSTILE_KEY}", "Did you mean `custom`?"),
    "key-clear-rtl": ("/key clear cus\u202etom", "is not a valid source"),
    # /proxy
    "proxy-userinfo": ("/proxy set http://user:pw@127.0.0.1:9/v1", "user name or password"),
    "proxy-ipv6-zone": ("/proxy set http://[fe80::1%25eth0]:8080/v1", "zone"),
    "proxy-file": ("/proxy set file:///etc/passwd", "Only http:// and https://"),
    "proxy-javascript": ("/proxy set javascript:alert(1)", "needs http:// or https://"),
    "proxy-2000": (f"/proxy set http://h.example/{'a' * 2000}", "is too long"),
    "proxy-percent-scheme": ("/proxy set http%3A%2F%2F127.0.0.1%3A9%2Fv1", "needs http://"),
    "proxy-fullwidth-host": ("/proxy set http://\uff11\uff12\uff17.0.0.1:9/v1", "not ASCII"),
    "proxy-cyrillic-host": ("/proxy set http://\u0435xample.com/v1", "xn--"),
    "proxy-rtl-inside": ("/proxy set https://exa\u202emple.com/v1", "U+202E"),
    "proxy-open-quote": ('/proxy set "http://127.0.0.1:9/v1', "A quote is not closed"),
    "proxy-key-in-query": (f"/proxy set http://127.0.0.1:9/v1?key={HOSTILE_KEY}", "looks like"),
    "proxy-password-zero-width": ("/proxy password pass\u200bword1", "U+200B"),
    # /connect, /models
    "connect-nan": ("/connect NaN", "must be on or off"),
    "connect-nul": ("/connect o\x00n", "control character"),
    "models-external-fullwidth": ("/models external \uff4f\uff4e\uff46", "must be on or off"),
    "models-list-nul": ("/models list gpt\x00", "control character"),
    # /model
    "model-zero-width": ("/model gpt\u200b-4o", "invisible character"),
    "model-nul": ("/model gpt\x00-4o", "control character"),
    "model-100kb": (f"/model {BIG}", "is too long"),
    "model-invalid-utf8": (b"/model gpt-\xc3(4o", "not utf-8 text"),
    "model-open-quote": ("/model 'gpt-4o", "A quote is not closed"),
    # /system, /prompts
    "system-100kb": (f"/system {BIG}", "is too long"),
    "prompts-cyrillic-name": ("/prompts m\u0430in Be brief.", "is not a valid name"),
    "prompts-100kb": (f"/prompts post_history {BIG}", "is too long"),
    # /params: numbers typed in other notations, a control character inside one
    "params-nul-in-number": ("/params max_tokens 1\x000", "control character (U+0000)"),
    "params-nul-in-decimal": ("/params temperature 0\x00.5", "control character (U+0000)"),
    "params-nul-in-switch": ("/params reasoning o\x00n", "control character (U+0000)"),
    "params-nul-in-choice": ("/params vision o\x00ff", "control character (U+0000)"),
    "params-fullwidth": ("/params temperature \uff10.\uff15", "Write it with the digits 0-9"),
    "params-fullwidth-exp": ("/params max_tokens \uff11e3", "Write it with the digits 0-9"),
    "params-nan": ("/params temperature NaN", "must be a number"),
    "params-inf": ("/params temperature inf", "must be a number"),
    "params-underscore": ("/params max_tokens 1_000", "must be a whole number"),
    "params-percent": ("/params max_tokens %31", "must be a whole number"),
    "params-json-escape": ("/params max_tokens \\u0031", "must be a whole number"),
    "params-huge": ("/params temperature 1e400", "must be"),
    "params-name-cyrillic": ("/params t\u0435mperature 1", "is not a valid name"),
    "params-value-100kb": (f"/params stop {BIG}", "is too long"),
    "params-stop-open-quote": ('/params stop "END', "A quote is not closed"),
    # /reply, /character, /preset, /swipe, /usage
    "reply-cyrillic": ("/reply mode \u0430lways", "is not a valid mode"),
    "character-import-missing": ("/character import %2Fetc%2Fpasswd", "Cannot read"),
    "character-import-nul": ("/character import card\x00.png", "control character"),
    "character-import-not-a-card": ("/character import /etc/passwd", "not valid JSON"),
    "character-export-lookalike": ("/character export pn\u0261", "Did you mean `png`?"),
    "preset-import-device": ("/preset import /dev/zero", "it is not a file"),
    "swipe-cyrillic": ("/swipe n\u0435xt", "Did you mean `next`?"),
    "usage-period-100kb": (f"/usage channel {BIG}", "is too long"),
    # /limits, /access
    "limits-fullwidth": ("/limits set tokens_per_user_day \uff11e3", "digits 0-9"),
    "limits-nan": ("/limits set tokens_per_user_day NaN", "is not a limit"),
    "limits-minus-zero": ("/limits set tokens_per_user_day -0", "is not a limit"),
    "limits-underscore": ("/limits set tokens_per_user_day 1_000", "is not a limit"),
    "limits-zero-width": ("/limits set tokens_per_user_day 1\u200b0", "U+200B"),
    "access-rtl-inside": ("/access allow user al\u202eice", "U+202E"),
    "access-zero-width": ("/access deny user bo\u200bb", "U+200B"),
    "access-percent": ("/access allow user %61lice", "is not a user name"),
    "access-100kb": (f"/access allow user {BIG}", "is too long"),
    # /help and the controls
    "help-nul": ("/help a\x00b", "neither a source nor a command"),
    "regenerate-extra": ("/regenerate now", "Too many values"),
    "stop-extra": ("/stop \u202eall", "Too many values"),
    "reset-extra": ("/reset everything", "Too many values"),
}


@pytest.mark.parametrize("case", list(CONSOLE_CASES), ids=list(CONSOLE_CASES))
def test_a_hostile_value_in_the_console_is_refused_and_changes_nothing(
    set_up: Workspace, case: str
) -> None:
    ws = set_up
    line, said = CONSOLE_CASES[case]
    before = _rows(ws.db_path)
    run = ws.run(["/settings", SENT, line, SENT, "/settings"])
    assert run.returncode == 0 and "Traceback" not in run.err, run.describe()
    settings_before, reply, settings_after = run.out.split(SENT_SAID)
    assert said in reply, run.describe()
    assert "Traceback" not in reply, run.describe()
    assert settings_after.strip() == settings_before.strip(), run.describe()
    assert "Source: custom (this channel)" in settings_after, run.describe()
    assert _rows(ws.db_path) == before, f"a refused command changed the database{run.describe()}"
    assert_found_nowhere(ws, run, {"setup key": SETUP_KEY, "hostile key": HOSTILE_KEY[6:]})


# --------------------------------------------------------------------------------------
# The fake Discord: the same forms as slash-command options (Discord sends any string).
# --------------------------------------------------------------------------------------

TOKEN = "loopback.bot.token-hostile-commands-01"

# (command, subcommand, options, a part of the reply)
DISCORD_CASES: dict[str, tuple[str, str, dict[str, str], str]] = {
    "source-cyrillic": ("source", "", {"source": "cl\u0430ude"}, "Did you mean `claude`?"),
    "source-nul": ("source", "", {"source": "cust\x00om"}, "control character (U+0000)"),
    "source-lone-surrogate": ("source", "", {"source": "cust\udc80om"}, "is not a valid source"),
    "source-100kb": ("source", "", {"source": BIG}, "is too long"),
    "proxy-userinfo": (
        "proxy",
        "set",
        {"url": "http://user:pw@127.0.0.1:9/v1"},
        "user name or password",
    ),
    "proxy-zone": ("proxy", "set", {"url": "http://[fe80::1%25eth0]:8080/v1"}, "zone"),
    "proxy-javascript": ("proxy", "set", {"url": "javascript:alert(1)"}, "http://"),
    "proxy-file": ("proxy", "set", {"url": "file:///etc/passwd"}, "Only http:// and https://"),
    "proxy-2000": ("proxy", "set", {"url": f"https://h.example/{'a' * 2000}"}, "is too long"),
    "proxy-newline": ("proxy", "set", {"url": "http://127.0.0.1:9/v1\nX: y"}, "U+000A"),
    "model-rtl-inside": ("model", "", {"id": "gpt\u202e-4o"}, "U+202E"),
    "model-empty": ("model", "", {"id": ""}, "needs a value"),
    "params-nul-in-number": (
        "params",
        "",
        {"name": "max_tokens", "value": "1\x000"},
        "control character (U+0000)",
    ),
    "params-fullwidth": (
        "params",
        "",
        {"name": "temperature", "value": "\uff11e3"},
        "Write it with the digits 0-9",
    ),
    "params-nan": ("params", "", {"name": "temperature", "value": "NaN"}, "must be a number"),
    "params-bad-name": ("params", "", {"name": "t\u0435mperature", "value": "1"}, "valid name"),
    "limits-nan": (
        "limits",
        "",
        {"action": "set", "name": "tokens_per_user_day", "value": "NaN"},
        "is not a limit",
    ),
    "access-fullwidth-id": (
        "access",
        "",
        {"action": "allow", "kind": "user", "id": "\uff11\uff12\uff13"},
        "is not a Discord user id",
    ),
    "access-zero-width": (
        "access",
        "",
        {"action": "allow", "kind": "user", "id": "12\u200b3"},
        "U+200B",
    ),
    "reply-cyrillic": ("reply", "mode", {"mode": "\u0430lways"}, "is not a valid mode"),
    "connect-nan": ("connect", "", {"bypass": "NaN"}, "must be on or off"),
    "usage-nul": ("usage", "", {"period": "we\x00ek"}, "control character"),
    "swipe-cyrillic": ("swipe", "", {"direction": "n\u0435xt"}, "Did you mean `next`?"),
    "help-percent": ("help", "", {"topic": "%63ustom"}, "is not a valid topic"),
}


async def _said(fake: FakeDiscord, command: str, sub: str, /, **options: str) -> str:
    """A server admin runs the command: what it answered (at once or in a follow-up)."""
    known, followups = set(fake.originals), len(fake.followups)
    await fake.slash(command, sub, manager=True, **options)

    def shown() -> list[str]:
        now = [fake.originals[iid] for iid in fake.originals if iid not in known]
        later = [str(f.get("content", "")) for f in fake.followups[followups:]]
        return [text for text in (*now, *later) if text]

    await fake.wait_until(lambda: bool(shown()), 60)
    return "\n".join(shown())


async def test_hostile_slash_options_are_refused_and_change_nothing(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    db = tmp_path / "data" / "chatbot.db"
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _model):
        said = await _said(fake, "params", "", name="temperature", value="0.7")
        assert said.startswith("temperature set to 0.7"), said
        failures = []
        for case, (name, sub, options, expected) in DISCORD_CASES.items():
            settings = await _said(fake, "settings", "")
            before = _rows(db)
            reply = await _said(fake, name, sub, **options)
            after = await _said(fake, "settings", "")
            if expected not in reply or "Traceback" in reply:
                failures.append(f"{case}: the reply was {reply[:300]!r}")
            if after != settings:
                failures.append(f"{case}: /settings changed:\n{settings}\n---\n{after}")
            if _rows(db) != before:
                failures.append(f"{case}: the database changed")
        assert not failures, "\n".join(failures)
        assert "Traceback" not in bot.log, bot.log[-3000:]
