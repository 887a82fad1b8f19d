"""Operator settings: defaults, parsing, one clear message per mistake, docs in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings
from bot.types import Source

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
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


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEFAULT_SOURCE=mistral\nLOG_LEVEL=debug\n")
    s = load_settings()
    assert s.default_source is Source.MISTRAL
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DATABASE_URL", "mysql://x", "Setting DATABASE_URL is invalid"),
        ("CUSTOM_EXTRA_HEADERS", "{not json", "Setting CUSTOM_EXTRA_HEADERS is invalid"),
        ("DEFAULT_SOURCE", "gemini", "use one of openai, claude, mistral, custom"),
        ("PROVIDER_IDLE_TIMEOUT", "-1", "Setting PROVIDER_IDLE_TIMEOUT is invalid"),
        ("LOG_LEVEL", "loud", "Setting LOG_LEVEL is invalid"),
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


def test_readme_and_env_example_list_every_setting() -> None:
    names = {n.upper() for n in Settings.model_fields}
    example = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    readme = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    assert example == names
    assert readme == names


def test_platform_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "0, 2")
    monkeypatch.setenv("DISCORD_COMMAND_GUILDS", "111,222")
    monkeypatch.setenv("MATRIX_ALLOWED_INVITERS", "@alice:example.org, :example.org")
    monkeypatch.setenv("MATRIX_TRUST_DEVICES", "verified")
    s = load_settings()
    assert s.discord_shard_count == 4 and s.discord_shard_ids == (0, 2)
    assert s.discord_command_guilds == (111, 222)
    assert s.matrix_allowed_inviters == ("@alice:example.org", ":example.org")
    assert s.matrix_trust_devices == "verified"
    assert s.matrix_e2ee and s.matrix_command_prefix == "!"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DISCORD_SHARD_IDS": "0,1"}, "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "1,2"}, "[2] are outside 0..1"),
        ({"DISCORD_SHARD_IDS": "zero"}, "Setting DISCORD_SHARD_IDS is invalid"),
        ({"MATRIX_TRUST_DEVICES": "everyone"}, "Fix: use unverified or verified"),
        ({"MATRIX_COMMAND_PREFIX": ""}, "Setting MATRIX_COMMAND_PREFIX is invalid"),
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
