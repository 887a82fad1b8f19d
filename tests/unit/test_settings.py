"""Operator settings: defaults, parsing, one clear message per mistake, docs in sync."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from bot.app import operator_defaults, provider_settings, turn_limits
from bot.connection import endpoint_url
from bot.core import TurnLimits
from bot.fields import BY_NAME
from bot.providers import EndpointPolicy, ProviderSettings
from bot.settings import (
    PROXY_URL_CHARS,
    Settings,
    SettingsError,
    dotenv_typos,
    load_settings,
)
from bot.store import SecretBox, generate_key
from bot.types import SECRET_REGISTRY, Source, redact

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(f.name for f in fields(Settings))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in NAMES:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_put_sqlite_under_data(tmp_path: Path) -> None:
    s = load_settings()
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'chatbot.db'}"
    assert s.default_source is Source.OPENAI
    assert not s.discord_enabled and not s.matrix_enabled


def test_values_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_IDS", " 123, @a:b.org ,")
    monkeypatch.setenv("CUSTOM_EXTRA_HEADERS", '{"X-Team": "bots"}')
    monkeypatch.setenv("DEFAULT_CLAUDE_API_KEY", "sk-ant-operator-key-1234")
    monkeypatch.setenv("ALLOW_PRIVATE_ENDPOINTS", "true")
    s = load_settings()
    assert s.admin_ids == ("123", "@a:b.org")
    assert s.custom_extra_headers == {"X-Team": "bots"}
    assert s.allow_private_endpoints
    secrets = s.default_secrets()
    assert list(secrets) == ["claude_api_key"]
    assert secrets["claude_api_key"].reveal() == "sk-ant-operator-key-1234"
    assert "sk-ant" not in repr(s)


def test_numbers_and_switches_read_as_commands_read_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review: `/limits set … 100,000` took a grouped number, LIMIT_* in .env did not;
    the settings and the commands had each their own rule."""
    monkeypatch.setenv("LIMIT_TOKENS_PER_USER_DAY", "100,000")
    monkeypatch.setenv("ALLOW_PRIVATE_ENDPOINTS", "Y")
    s = load_settings()
    assert s.limit_tokens_per_user_day == 100_000
    assert s.allow_private_endpoints


def test_a_data_dir_under_home_is_in_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`DATA_DIR=~/chatbot` made a folder named `~` in the working folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / ".env").write_text("DATA_DIR=~/chatbot\n")
    s = load_settings()
    assert s.data_dir == tmp_path / "home" / "chatbot"
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path / 'home' / 'chatbot' / 'chatbot.db'}"
    s = load_settings(database_url="sqlite+aiosqlite:///~/other.db")
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path / 'home' / 'other.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://bot@/chatbot?host=/var/run/postgresql",  # a Unix socket
        "postgresql+asyncpg://bot@/chatbot?host=h1:5432&host=h2:5433&target_session_attrs=read-write",
        "postgresql+asyncpg://bot:pw@h/chatbot?sslmode=verify-full",
    ],
)
def test_postgresql_urls_as_sqlalchemy_documents_them_are_taken(url: str) -> None:
    """Checking `?` options refused the socket and several-hosts forms, which worked."""
    assert load_settings(database_url=url).db_url.startswith("postgresql+asyncpg://bot")


def test_ssl_given_twice_is_refused() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(database_url="postgresql+asyncpg://b:p@h/c?sslmode=require&ssl=disable")
    assert "both ?ssl= and ?sslmode=" in str(err.value)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("prepared_statement_cache_size=abc", "?prepared_statement_cache_size= must be a whole"),
        ("prepared_statement_cache_size=-1", "from 0 (no cache) to 1000000"),
        ("prepared_statement_cache_size=1e3", "from 0 (no cache) to 1000000"),
        ("prepared_statement_cache_size=1&prepared_statement_cache_size=2", "more than once"),
        ("sslmode=requir", "?ssl= must be one of disable, allow, prefer, require, verify-ca"),
        ("ssl=require&ssl=disable", "?ssl= is given more than once: keep one"),
        ("target_session_attrs=master", "must be one of any, primary, standby, prefer-standby"),
    ],
)
def test_a_postgresql_option_asyncpg_cannot_take_is_named_at_start(
    query: str, fragment: str
) -> None:
    """Met when the database was opened: a traceback (`abc`), a start that never ended
    (`-1`), or asyncpg's own words naming a Python object instead of the choices."""
    with pytest.raises(SettingsError) as err:
        load_settings(database_url=f"postgresql+asyncpg://bot:Pa55word-x@h/db?{query}")
    assert str(err.value).startswith("Setting DATABASE_URL is invalid: ")
    assert fragment in str(err.value) and "Pa55word" not in str(err.value)


def test_postgresql_option_values_are_read_as_libpq_writes_them() -> None:
    url = "postgresql+asyncpg://b@h/db?sslmode=Verify_Full&target_session_attrs=READ-WRITE"
    settings = load_settings(database_url=url + "&prepared_statement_cache_size=1,000")
    assert settings.db_url == (
        "postgresql+asyncpg://b@h/db?prepared_statement_cache_size=1000&ssl=verify-full"
        "&target_session_attrs=read-write"
    )


def test_a_name_in_dotenv_that_is_nearly_a_setting_is_said(tmp_path: Path) -> None:
    """`DEFAULT_SOURC=custom` was ignored without a word, and the default used."""
    (tmp_path / ".env").write_text(
        "DEFAULT_SOURC=custom\nallow_private_endpoint=true\nPOSTGRES_PASSWORD=x\nLOG_LEVEL=INFO\n"
        "DATABASE_USER=bot\nDEFAULT_SOURCE_URL=x\n"  # other programs' settings, near ours
    )
    said = dotenv_typos()
    assert said == [
        ".env sets DEFAULT_SOURC, which is no setting, so it is ignored: "
        "did you mean DEFAULT_SOURCE?",
        ".env sets ALLOW_PRIVATE_ENDPOINT, which is no setting, so it is ignored: "
        "did you mean ALLOW_PRIVATE_ENDPOINTS?",
    ]  # another program's setting (POSTGRES_PASSWORD) is left alone


def test_a_setting_given_twice_in_dotenv_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Operator probe: a second BOT_SECRET_KEYS line won without a word, and every stored
    key became unreadable."""
    (tmp_path / ".env").write_text(
        "BOT_SECRET_KEYS=a\nLOG_LEVEL=INFO\nOTHER=1\nOTHER=2\nbot_secret_keys=b\n"
        "BOT_SECRET_KEYS=c\n"
    )
    assert dotenv_typos() == [
        ".env sets BOT_SECRET_KEYS on lines 1, 5 and 6: line 6's value is used."
    ]  # another program's setting given twice (OTHER) is left alone
    # Review: the environment wins over the file; an empty last line means the default.
    (tmp_path / ".env").write_text(
        "LOG_LEVEL=INFO\nLOG_LEVEL=DEBUG\nDEFAULT_MODEL=m\nDEFAULT_MODEL=\n"
    )
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert dotenv_typos() == [
        ".env sets LOG_LEVEL on lines 1 and 2: the environment's value is used (it wins "
        "over the file).",
        ".env sets DEFAULT_MODEL on lines 3 and 4: line 4 leaves it empty, so the default is used.",
    ]


def test_a_misspelt_name_is_said_with_the_settings_it_leaves_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hint came only at the start after, once every other setting was right."""
    from bot.cli import main

    (tmp_path / ".env").write_text("DEFAULT_SOURC=claude\nLOG_LEVEL=verbose\n")
    assert main(["migrate"]) == 2
    said = capsys.readouterr().err
    assert "did you mean DEFAULT_SOURCE?" in said and "LOG_LEVEL" in said


def test_a_database_url_with_spaces_around_it_is_read_as_other_settings_are() -> None:
    """It was refused as "only sqlite+aiosqlite:// and postgresql+asyncpg:// URLs are
    supported", naming the wrong fault."""
    url = "postgresql+asyncpg://bot@db.example/chatbot"
    assert load_settings(database_url=f"  {url} ").database_url == url


def test_a_quote_left_open_in_dotenv_stops_the_start_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """python-dotenv skipped every line up to the next quote (here the comment's) with a
    warning, and the bot started without the key below it."""
    from bot.cli import main

    (tmp_path / ".env").write_text(
        "LOG_LEVEL=INFO\nDEFAULT_MODEL='gpt-4o\nDEFAULT_CLAUDE_API_KEY=sk-ant-abcdefgh12345678\n"
        "# the bot's defaults\nDEFAULT_SOURCE=claude\n"
    )
    assert main(["migrate"]) == 2
    said = capsys.readouterr().err
    assert said.startswith("chatbot: .env line 2 cannot be read (a quote opened"), said
    assert len(said.splitlines()) == 1 and "sk-ant" not in said
    assert not (tmp_path / "data").exists()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEFAULT_SOURCE=mistral\nLOG_LEVEL=debug\n")
    s = load_settings()
    assert s.default_source is Source.MISTRAL
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DATABASE_URL", "mysql://x", "Setting DATABASE_URL is invalid"),
        ("DATABASE_URL", "postgresql+asyncpg://u:pw@h:abc/x", "cannot be read as a database URL"),
        ("DATABASE_URL", "postgresql+asyncpg://u:pw@h:99999/x", "port must be from 1 to 65535"),
        ("DATABASE_URL", "postgresql+asyncpg://u:Tr0ub@HorseBattery@h/x", "must be written %40"),
        ("CUSTOM_EXTRA_HEADERS", "{not json", "Setting CUSTOM_EXTRA_HEADERS is invalid"),
        ("DEFAULT_SOURCE", "gemini", "use one of openai, claude, mistral, custom"),
        ("PROVIDER_IDLE_TIMEOUT", "-1", "Setting PROVIDER_IDLE_TIMEOUT is invalid"),
        ("LOG_LEVEL", "loud", "Setting LOG_LEVEL is invalid"),
        ("ALLOW_PRIVATE_ENDPOINTS", "maybe", "use true or false"),
        ("CUSTOM_EXTRA_HEADERS", '{"X-Team": 1}', "not a JSON object of text values"),
        ("CUSTOM_EXTRA_HEADERS", '["X-Team"]', "not a JSON object of text values"),
        # Lists that matched no one, read as they were written (operator probe).
        ("ADMIN_IDS", "12 34", "'12 34' has a space in it: separate ids with commas"),
        ("ALLOWED_USERS", "@a:b.org, 5 6", "'5 6' has a space in it"),
        ("MATRIX_ALLOWED_INVITERS", "al ice", "'al ice' has a space in it"),
        ("MATRIX_ALLOWED_INVITERS", "alice@example.org", "is neither a user (@name:server)"),
        # The password's @ unencoded before a /: read as host `SuperSecret99` (said in
        # errors), the rest of the password as the database's name.
        (
            "DATABASE_URL",
            "postgresql+asyncpg://u:hunter2@SuperSecret99/abc@127.0.0.1:5432/b",
            "an @ in the password must be written %40",
        ),
        ("ALLOWED_SERVERS", "foo", "'foo' is no Discord server id (digits)"),
        # Past any clock: every start, or every image, failed with an OverflowError.
        ("PROVIDER_ANSWER_TIMEOUT", "1e12", "must be at most 86400"),
        ("PROVIDER_IDLE_TIMEOUT", "99999999999999999999", "must be at most 3600"),
        ("MEDIA_RETENTION_DAYS", "800000", "36500"),
        # Every chat said "cannot be reached (LocalProtocolError)" instead.
        ("CUSTOM_EXTRA_HEADERS", '{"Bad Header": "x"}', "'Bad Header' is no header name"),
        ("CUSTOM_EXTRA_HEADERS", '{"X-Bad": "a\\nb"}', "value of X-Bad must be one line"),
        ("CUSTOM_EXTRA_HEADERS", '{"X-Bad": "caf\u00e9"}', "value of X-Bad must be one line"),
        ("CUSTOM_EXTRA_HEADERS", "[" * 100_000, "not valid JSON"),
        ("PROVIDER_CONNECT_TIMEOUT", "nan", "must be a number above 0"),
        ("PROVIDER_CONNECT_TIMEOUT", "inf", "must be a number above 0"),
        ("PROVIDER_MAX_RETRIES", "11", "must be from 0 to 10"),
        ("MAX_ANSWER_CHARS", "1e9", "not a whole number"),
        # Quotas probe: read as 10, 5 and 1000, while /limits and the README take ASCII.
        ("LIMIT_TOKENS_PER_USER_DAY", "\u0661\u0660", "not a whole number"),
        ("LIMIT_TOKENS_PER_USER_DAY", "\uff15", "not a whole number"),
        ("LIMIT_TOKENS_PER_USER_DAY", "1_000", "not a whole number"),
        ("PROVIDER_CONNECT_TIMEOUT", "\u0665", "must be a number above 0"),
        ("PROVIDER_CONNECT_TIMEOUT", "1_0", "must be a number above 0"),
        ("MAX_ATTACHMENT_MB", "101", "must be at most 100"),
        ("DEFAULT_REPLY_MODE", "sometimes", "use one of mention, always"),
        # `/proxy set localhost:1234` refuses a URL without its scheme too.
        ("DEFAULT_PROXY_URL", "localhost:18081", "must be a full http:// or https:// URL"),
        ("DEFAULT_PROXY_URL", "ftp://example.org", "must be a full http:// or https:// URL"),
        ("DEFAULT_PROXY_URL", "http://", "must be a full http:// or https:// URL"),
        ("DEFAULT_PROXY_URL", "http://host/ v1", "has a space"),
        ("DEFAULT_PROXY_URL", "http://u:Secr3tPassw0rd@h/v1", "must not hold a user name"),
        ("DEFAULT_PROXY_URL", "http://h/v1?key=abc", "must not hold a query"),
        (
            "DEFAULT_MODEL",
            "gpt\u200b-4o",
            "has an invisible character (U+200B ZERO WIDTH SPACE) at position 4",
        ),
        ("DEFAULT_MODEL", "m" * 201, "longer than 200 characters"),
        ("MATRIX_USER_ID", "bot", "e.g. @bot:example.org"),
        ("MATRIX_USER_ID", "@bot", "e.g. @bot:example.org"),
        ("MATRIX_USER_ID", "@:example.org", "e.g. @bot:example.org"),
        ("MATRIX_USER_ID", "@bot:", "e.g. @bot:example.org"),
        ("MATRIX_USER_ID", "@b ot:example.org", "e.g. @bot:example.org"),
    ],
)
def test_bad_values_give_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert fragment in str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_model_id_refused_ends_its_line_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`DEFAULT_MODEL=gpt 4o` said "… has a space at position 4.." (the id's refusal kept
    its full stop, and the line added its own)."""
    monkeypatch.setenv("DEFAULT_MODEL", "gpt 4o")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "Setting DEFAULT_MODEL is invalid: has a space at position 4." in str(err.value)
    assert ".." not in str(err.value), str(err.value)


def test_every_mistake_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "loud")
    monkeypatch.setenv("MEDIA_STORE_MB", "0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).splitlines() == [
        "Setting LOG_LEVEL is invalid: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL.",
        "Setting MEDIA_STORE_MB is invalid: must be from 1 to 10000000.",
    ]


@pytest.mark.parametrize(
    "name",
    ["DEFAULT_SOURCE", "LOG_LEVEL", "MATRIX_TRUST_DEVICES", "PROVIDER_MAX_RETRIES", "USAGE_PRICES"],
)
def test_a_key_pasted_into_the_wrong_setting_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    key = "sk-proj-AbCdEf0123456789abcdef0123456789"
    monkeypatch.setenv(name, key)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert f"Setting {name} is invalid" in str(err.value)
    assert "AbCdEf" not in str(err.value)


def test_choices_are_named_whatever_secrets_the_process_has_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The process has seen a secret that happens to be a word of the message (set for this
    # test only: a real SecretValue would stay in the registry for the rest of the run).
    seen = SECRET_REGISTRY.values
    monkeypatch.setattr(SECRET_REGISTRY, "values", lambda: (*seen(), "openai"))
    assert redact("openai") != "openai"
    monkeypatch.setenv("DEFAULT_SOURCE", "gemini")
    with pytest.raises(SettingsError, match="use one of openai, claude, mistral, custom"):
        load_settings()


def test_names_and_choices_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("default_source", " Claude ")
    monkeypatch.setenv("MATRIX_E2EE", "OFF")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    s = load_settings()
    assert (s.default_source, s.matrix_e2ee, s.log_level) == (Source.CLAUDE, False, "WARNING")


def test_the_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEFAULT_MODEL=from-file\nDEFAULT_SOURCE=mistral\n")
    monkeypatch.setenv("DEFAULT_MODEL", "from-env")
    s = load_settings()
    assert (s.default_model, s.default_source) == ("from-env", Source.MISTRAL)


def test_a_value_in_quotes_from_the_environment_loses_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`docker run --env-file` passes `NAME="value"` with its quotes; a .env read here (or
    by a shell) drops them. A setting was refused as `"true"`, a token sent with them."""
    monkeypatch.setenv("ALLOW_PRIVATE_ENDPOINTS", '"true"')
    monkeypatch.setenv("PROVIDER_MAX_RETRIES", " '5' ")
    monkeypatch.setenv("DEFAULT_MODEL", '"gpt-4o"')
    monkeypatch.setenv("DEFAULT_SYSTEM_PROMPT", 'Say "hi" first')  # quotes inside stay
    monkeypatch.setenv("DISCORD_SHARD_COUNT", '""')  # empty quotes: not given
    s = load_settings()
    assert s.allow_private_endpoints is True and s.provider_max_retries == 5
    assert s.default_model == "gpt-4o"
    assert s.default_system_prompt == 'Say "hi" first'
    assert s.discord_shard_count == default("discord_shard_count")


def test_a_model_in_the_example_lines_brackets_is_taken_as_model_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`DEFAULT_MODEL=<gpt-4o>`, as `/model <gpt-4o>` takes it: without the brackets."""
    monkeypatch.setenv("DEFAULT_MODEL", "<gpt-4o>")
    assert load_settings().default_model == "gpt-4o"


def test_the_operators_system_prompt_is_kept_as_a_channels_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It went into every channel's prompt with no length limit (a channel's takes 8,000
    characters) and with the control characters `/system` takes out."""
    monkeypatch.setenv("DEFAULT_SYSTEM_PROMPT", "Be brief.\x1b[2J\x07")
    assert load_settings().default_system_prompt == "Be brief.[2J"
    monkeypatch.setenv("DEFAULT_SYSTEM_PROMPT", "x" * 8_001)
    with pytest.raises(
        SettingsError, match=r"DEFAULT_SYSTEM_PROMPT.*8,001 characters; at most 8,000"
    ):
        load_settings()


def test_a_nul_in_dotenv_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(
        b"DEFAULT_MODEL=gpt\x00-4o\nDATABASE_URL=sqlite+aiosqlite:///a\x00\n"
    )
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).splitlines() == [
        "Setting DATABASE_URL is invalid: contains a NUL character."
        " Fix: use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db.",
        "Setting DEFAULT_MODEL is invalid: contains a NUL character.",
    ]


@pytest.mark.parametrize("raw", [b"DEFAULT_MODEL=caf\xe9\n", b"\xff\xfe\x00D\x00"])
def test_a_dotenv_that_is_not_utf8_is_named(tmp_path: Path, raw: bytes) -> None:
    (tmp_path / ".env").write_bytes(raw)
    with pytest.raises(SettingsError, match=r"^\.env is not UTF-8 text: save it as UTF-8\.$"):
        load_settings()


def test_operator_secrets_stay_hidden_and_are_redacted_in_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "discord.token-value-0123456789"
    monkeypatch.setenv("DISCORD_TOKEN", token)
    s = load_settings()
    assert s.discord_enabled and s.discord_token.reveal() == token
    assert token not in repr(s) and token not in f"{s}"
    assert token not in redact(f"login with {token}")


def test_readme_and_env_example_list_every_setting() -> None:
    names = {n.upper() for n in NAMES}
    # DATA_DIR is listed commented out (see .env.example).
    example_text = (ROOT / ".env.example").read_text()
    example = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example_text, re.M))
    readme = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    assert example == names
    assert readme == names


def test_platform_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "0, 2")
    monkeypatch.setenv("DISCORD_COMMAND_GUILDS", "111,222")
    # A bare server name reads as `:example.org` (bot/frontends/matrix/access.py).
    monkeypatch.setenv("MATRIX_ALLOWED_INVITERS", "@alice:example.org, :example.org, example.net")
    monkeypatch.setenv("MATRIX_TRUST_DEVICES", "verified")
    s = load_settings()
    assert s.discord_shard_count == 4 and s.discord_shard_ids == (0, 2)
    assert s.discord_command_guilds == (111, 222)
    assert s.matrix_allowed_inviters == ("@alice:example.org", ":example.org", "example.net")
    assert s.matrix_trust_devices == "verified"
    assert s.matrix_e2ee and s.matrix_command_prefix == "!"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DISCORD_SHARD_IDS": "0,1"}, "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "1,2"}, "[2] are outside 0..1"),
        ({"DISCORD_SHARD_IDS": "zero"}, "Setting DISCORD_SHARD_IDS is invalid"),
        ({"MATRIX_TRUST_DEVICES": "everyone"}, "invalid: use one of unverified, verified."),
        ({"MATRIX_COMMAND_PREFIX": "!!!!"}, "Setting MATRIX_COMMAND_PREFIX is invalid"),
        (
            {"MATRIX_HOMESERVER": "https://matrix.example.org"},
            "MATRIX_HOMESERVER is set but MATRIX_USER_ID is not",
        ),
        ({"MATRIX_USER_ID": "@bot:example.org"}, "MATRIX_USER_ID is set but MATRIX_HOMESERVER"),
        ({"MATRIX_HOMESERVER": "ftp://matrix.example.org"}, "e.g. https://matrix.example.org"),
        ({"MATRIX_HOMESERVER": "https://"}, "e.g. https://matrix.example.org"),
        (
            {"MATRIX_HOMESERVER": "https://matrix.example.org", "MATRIX_USER_ID": "@bot:a.b"},
            "neither MATRIX_PASSWORD nor MATRIX_ACCESS_TOKEN is: Matrix needs one of them",
        ),
    ],
)
def test_platform_settings_mistakes(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert fragment in str(info.value)
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize(
    ("given", "password"),
    [
        ("correct horse battery\n", "correct horse battery"),  # a secret file's last line
        ("Hunter-2-long\r", "Hunter-2-long"),  # a CRLF env file
        ("\r\n pass word \r\n", " pass word "),  # spaces may be the password's own
    ],
)
def test_a_matrix_password_loses_the_line_breaks_around_it(
    monkeypatch: pytest.MonkeyPatch, given: str, password: str
) -> None:
    monkeypatch.setenv("MATRIX_PASSWORD", given)
    assert load_settings().matrix_password.reveal() == password


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("first-Line-pw\nsecond-Line", "has a line break at position 14: a password is one"),
        ("bell-in-it\x07-pw", "has a control character (U+0007) at position 11."),
    ],
)
def test_a_matrix_password_with_a_line_break_inside_is_named_not_echoed(
    monkeypatch: pytest.MonkeyPatch, given: str, fragment: str
) -> None:
    monkeypatch.setenv("MATRIX_PASSWORD", given)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith("Setting MATRIX_PASSWORD is invalid: "), err.value
    said = str(err.value)
    assert fragment in said and "-pw" not in said and "Line" not in said


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("matrix.example.org", "https://matrix.example.org"),  # as Element takes it
        ("https://matrix.example.org/", "https://matrix.example.org"),
        ("http://127.0.0.1:8008", "http://127.0.0.1:8008"),
        ("HTTPS://matrix.example.org", "https://matrix.example.org"),  # as a phone may type it
        # A route pasted with it (API docs, a curl line): Synapse said M_UNRECOGNIZED.
        ("https://matrix.example.org/_matrix/client/v3/login", "https://matrix.example.org"),
        ("matrix.example.org/_matrix/", "https://matrix.example.org"),
        ("https://example.org/chat/_matrix/client", "https://example.org/chat"),  # a prefix
        ("https://example.org/_matrixish", "https://example.org/_matrixish"),
    ],
)
def test_a_homeserver_given_as_a_host_name_is_its_https_url(
    monkeypatch: pytest.MonkeyPatch, typed: str, url: str
) -> None:
    monkeypatch.setenv("MATRIX_HOMESERVER", typed)
    monkeypatch.setenv("MATRIX_USER_ID", "@bot:example.org")
    monkeypatch.setenv("MATRIX_PASSWORD", "correct horse")
    assert load_settings().matrix_homeserver == url


def test_a_database_url_scheme_in_capitals_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings take names and choices in any case; DATABASE_URL's scheme was refused."""
    monkeypatch.setenv("DATABASE_URL", "POSTGRESQL+ASYNCPG://bot:Pw@db.example:5432/Bot")
    assert load_settings().db_url == "postgresql+asyncpg://bot:Pw@db.example:5432/Bot"


@pytest.mark.parametrize("typed", ["MTIz.abc.def", "Bot MTIz.abc.def", " bot  MTIz.abc.def "])
def test_a_discord_token_pasted_with_its_bot_prefix(
    monkeypatch: pytest.MonkeyPatch, typed: str
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", typed)
    assert load_settings().discord_token.reveal() == "MTIz.abc.def"


def default(name: str) -> Any:
    return getattr(Settings(), name)


BLANKS = ("", "   ", "\t")


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_value_in_the_environment_means_the_default(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for blank in BLANKS:
        monkeypatch.setenv(name.upper(), blank)
        assert getattr(load_settings(), name) == default(name), repr(blank)


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_value_in_dotenv_means_the_default(tmp_path: Path, name: str) -> None:
    for line in (f"{name.upper()}=", f"{name.upper()}=   ", f'{name.upper()}="  "'):
        (tmp_path / ".env").write_text(line + "\n")
        assert getattr(load_settings(), name) == default(name), line


def test_a_blank_in_the_environment_leaves_the_dotenv_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("DISCORD_SHARD_COUNT=4\nPROVIDER_MAX_RETRIES=5\n")
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "")
    monkeypatch.setenv("PROVIDER_MAX_RETRIES", "  ")
    s = load_settings()
    assert (s.discord_shard_count, s.provider_max_retries) == (4, 5)


def env_as_run_sh_writes_it(key: str) -> str:
    """.env.example with BOT_SECRET_KEYS filled in, as ./scripts/run.sh's sed does."""
    example = (ROOT / ".env.example").read_text()
    return re.sub(r"^BOT_SECRET_KEYS=.*$", f"BOT_SECRET_KEYS={key}", example, flags=re.M)


def docker_env_file(text: str, host: Mapping[str, str]) -> dict[str, str]:
    """The variables `docker run --env-file` passes for `text`."""
    # docker: BOM, leading blanks dropped; skip blank/# lines; split at first =; value verbatim
    found: dict[str, str] = {}
    for line in text.removeprefix("\ufeff").splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name, has_value, value = line.partition("=")
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"docker refuses the line {line!r}")
        if has_value:
            found[name] = value
        elif name in host:  # a bare NAME passes the host's value, if any
            found[name] = host[name]
    return found


def assert_defaults_except(s: Settings, *names: str) -> None:
    for name in NAMES:
        if name not in names:
            assert getattr(s, name) == default(name), name


def test_env_example_as_run_sh_writes_it_gives_the_defaults(tmp_path: Path) -> None:
    key = generate_key()
    (tmp_path / ".env").write_text(env_as_run_sh_writes_it(key))
    s = load_settings()
    assert s.bot_secret_keys.reveal() == key
    assert_defaults_except(s, "bot_secret_keys")


def test_env_example_works_as_docker_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv("DATA_DIR", "/data")  # the image's ENV; --env-file comes on top
    for name, value in docker_env_file(env_as_run_sh_writes_it(key), host={}).items():
        monkeypatch.setenv(name, value)
    s = load_settings()  # the image's working folder has no .env
    assert s.data_dir == Path("/data")
    assert s.db_url == "sqlite+aiosqlite:////data/chatbot.db"
    SecretBox.from_setting(s.bot_secret_keys.reveal())
    assert s.bot_secret_keys.reveal() == key
    assert_defaults_except(s, "data_dir", "bot_secret_keys")


def test_docker_env_file_reading_rules() -> None:
    text = '\ufeffA=1\n  # note\n\n  B= spaced \nC="q" # not a comment\nD=x=y\nE\nF\n'
    assert docker_env_file(text, host={"E": "from host"}) == {
        "A": "1",
        "B": " spaced ",
        "C": '"q" # not a comment',
        "D": "x=y",
        "E": "from host",
    }


def test_operator_defaults_lose_the_spaces_and_quotes_around_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEFAULT_MODEL", " `fake-model` ")  # copied as the bot quotes ids
    monkeypatch.setenv("DEFAULT_PROXY_URL", " http://localhost:18081/v1/ ")
    monkeypatch.setenv("MATRIX_HOMESERVER", "matrix.example.org")
    monkeypatch.setenv("MATRIX_USER_ID", " @bot:example.org ")
    monkeypatch.setenv("MATRIX_ACCESS_TOKEN", "syt_token")
    s = load_settings()
    assert s.default_model == "fake-model"
    assert s.default_proxy_url == "http://localhost:18081/v1"
    assert s.matrix_user_id == "@bot:example.org"


def test_operator_keys_and_tokens_are_cleaned_as_key_set_cleans_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`/key set` took the spaces, quotes and a `Bearer ` off a pasted key; the same key in
    the environment went out as it was (a LocalProtocolError, or a 401 that blamed the
    channel's key)."""
    monkeypatch.setenv("DEFAULT_CUSTOM_API_KEY", " sk-local-0123456789 ")
    monkeypatch.setenv("DEFAULT_OPENAI_API_KEY", '"sk-proj-0123456789abcdef"')
    monkeypatch.setenv("DEFAULT_MISTRAL_API_KEY", "Bearer mistral-0123456789")
    monkeypatch.setenv("DEFAULT_CLAUDE_API_KEY", "\u200bsk-ant-0123456789\u200b")
    monkeypatch.setenv("DISCORD_TOKEN", "'Bot tok.en-0123456789'")
    monkeypatch.setenv("MATRIX_ACCESS_TOKEN", " syt_0123456789 ")
    s = load_settings()
    assert s.default_custom_api_key.reveal() == "sk-local-0123456789"
    assert s.default_openai_api_key.reveal() == "sk-proj-0123456789abcdef"
    assert s.default_mistral_api_key.reveal() == "mistral-0123456789"
    assert s.default_claude_api_key.reveal() == "sk-ant-0123456789"
    assert s.discord_token.reveal() == "tok.en-0123456789"
    assert s.matrix_access_token.reveal() == "syt_0123456789"
    monkeypatch.setenv("DEFAULT_CUSTOM_API_KEY", "  ")
    assert load_settings().default_custom_api_key.reveal() == ""  # empty: not set


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("sk-local 0123456789", "has a space at position 9"),
        ("sk-local\u200b0123456789", "has U+200B ZERO WIDTH SPACE at position 9"),
        ("sk-lоcal-0123456789", "has U+043E CYRILLIC SMALL LETTER O at position 5"),
    ],
)
def test_an_operator_key_that_cannot_be_sent_stops_the_start_unquoted(
    monkeypatch: pytest.MonkeyPatch, value: str, said: str
) -> None:
    monkeypatch.setenv("DEFAULT_CUSTOM_API_KEY", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert f"Setting DEFAULT_CUSTOM_API_KEY is invalid: {said}." in str(err.value)
    assert "0123456789" not in str(err.value)


async def _public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]  # no lookup: every name is a public host here


@pytest.mark.parametrize(
    ("typed", "used"),
    [
        ("http://localhost:1234/v1", "http://localhost:1234/v1"),
        ("http://localhost:1234", "http://localhost:1234"),
        ("http://localhost:1234/v1/chat/completions", "http://localhost:1234/v1"),
        ("http://localhost:1234/chat/completions", "http://localhost:1234"),
        ("http://localhost:1234/v1/completions", "http://localhost:1234/v1"),
        ("http://localhost:1234/v1/models/", "http://localhost:1234/v1"),
        ("http://localhost:1234/v1///", "http://localhost:1234/v1"),
        ("http://localhost:1234//v1/chat/completions//", "http://localhost:1234/v1"),
        ("HTTP://localhost:1234/V1/chat/completions", "http://localhost:1234/v1"),
        ("https://api.example.com/v1/chat/completions/", "https://api.example.com/v1"),
        ("https://openrouter.ai/api/v1/models", "https://openrouter.ai/api/v1"),
        ("http://10.0.0.5:8080/v1/embeddings", "http://10.0.0.5:8080/v1"),
        ("http://models:8080", "http://models:8080"),  # a host called models stays
    ],
)
async def test_default_proxy_url_is_kept_as_proxy_set_keeps_the_same_paste(
    monkeypatch: pytest.MonkeyPatch, typed: str, used: str
) -> None:
    monkeypatch.setenv("DEFAULT_PROXY_URL", typed)
    defaults = operator_defaults(load_settings())
    assert defaults.proxy_url == used
    # What `/proxy set <typed>` stores: its URL cut back, then passed by the policy.
    policy = EndpointPolicy(allow_private=True, resolver=_public)
    assert await policy.check(endpoint_url(typed)[0]) == used


KEY = "sk-proj-AbCdEf0123456789abcdef0123456789"


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        (f"http://h/v1\x00{KEY}", "contains a NUL character"),
        (f"http://h/v1\nDEFAULT_OPENAI_API_KEY={KEY}", "has a space or line break in it"),
        (f"http://h/v1\r{KEY}", "has a space or line break in it"),
        (f"http://h/{KEY}/" + "v" * 10_000, "longer than 2000 characters"),
        (
            f"http://l\u043ecalhost:1234/{KEY}",  # a Cyrillic о
            "has a character that is not ASCII (U+043E CYRILLIC SMALL LETTER O) at position 9",
        ),
        (f"http://h\u200b/{KEY}", "not ASCII (U+200B ZERO WIDTH SPACE) at position 9"),
        (f"http://h/{KEY}\x1b[2J", "has a control character (U+001B) at position 50"),
        (f"http://h/{KEY}\x7f", "has a control character (U+007F) at position 50"),
    ],
    ids=["nul", "newline", "carriage-return", "10-kb", "look-alike", "zero-width", "esc", "del"],
)
def test_a_hostile_default_proxy_url_is_one_line_that_never_echoes_it(
    typed: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(default_proxy_url=typed)  # as .env or the environment give it
    message = str(err.value)
    assert message.startswith("Setting DEFAULT_PROXY_URL is invalid: ")
    assert fragment in message
    assert len(message.splitlines()) == 1
    assert "AbCdEf" not in message and "\x1b" not in message and "\u043e" not in message


def test_default_proxy_url_holds_what_a_channel_s_url_may_hold() -> None:
    assert PROXY_URL_CHARS == BY_NAME["proxy_url"].max_chars
    url = "http://h/" + "v" * (PROXY_URL_CHARS - len("http://h/"))
    assert operator_defaults(load_settings(default_proxy_url=url)).proxy_url == url


def prices_file_error(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    monkeypatch.setenv("USAGE_PRICES_FILE", str(path))
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith("Setting USAGE_PRICES_FILE is invalid: ")
    assert len(message.splitlines()) == 1
    return message


def test_a_prices_file_over_1_mb_is_refused_unread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "prices.txt"
    with path.open("wb") as file:
        file.truncate(300 * 1024 * 1024)  # sparse: no disk used, 300 MB to read
    message = prices_file_error(monkeypatch, path)
    assert "is larger than 1 MB" in message
    path.write_text("m=1/2\n" + "#" * (1024 * 1024 - 6))  # exactly 1 MB: read
    assert load_settings().price_table().price_of("m") is not None


def test_a_bad_prices_line_is_quoted_clean_and_short(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "prices.txt"
    path.write_text("gpt-4o*=2.5/10\nroot:$6$salt\x1b[2J\x07" + "x" * 500 + ":19000:0:99999:7:::\n")
    message = prices_file_error(monkeypatch, path)
    assert "is not `model-pattern=input/output`" in message
    assert "\x1b" not in message and "\x07" not in message and "x" * 60 not in message
    assert "root:$6$salt" in message  # the start of it, to find the line by
    path.write_bytes(b"\x00" * 4096)
    message = prices_file_error(monkeypatch, path)
    assert "\x00" not in message and "NUL" in message
    path.write_text("m=\x1b[31mfree/0\n")
    message = prices_file_error(monkeypatch, path)
    assert "\x1b" not in message and "is not a number of USD" in message


def test_an_operator_who_sets_nothing_gets_the_layers_own_defaults() -> None:
    """The numbers were written twice, in Settings and again as the dataclasses'
    defaults that tests and Core(…) use (review): one place now, bot/types/limits.py."""
    defaults = load_settings()
    assert turn_limits(defaults) == TurnLimits()
    assert provider_settings(defaults) == ProviderSettings()
