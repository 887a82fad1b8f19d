"""Operator settings from the environment and `.env`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.types import ReplyMode, SecretValue, Source

DEFAULT_DATA_DIR = Path("data")

CommaList = Annotated[tuple[str, ...], NoDecode]


class SettingsError(Exception):
    """A configuration mistake; the message names the setting and the fix."""


# How to fix each setting, shown with validation errors instead of a stack trace.
_FIX_HINTS: dict[str, str] = {
    "BOT_SECRET_KEYS": "run `chatbot keygen` and put the result in BOT_SECRET_KEYS",
    "DATABASE_URL": "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db",
    "LOG_LEVEL": "use one of DEBUG, INFO, WARNING, ERROR",
    "CUSTOM_EXTRA_HEADERS": 'use a JSON object, e.g. {"X-Team": "bots"}',
    "DEFAULT_SOURCE": "use one of openai, claude, mistral, custom",
}


class Settings(BaseSettings):
    """Every operator setting; README's table and .env.example list the same names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    bot_secret_keys: SecretStr = SecretStr("")
    log_level: str = "INFO"

    discord_token: SecretStr = SecretStr("")
    matrix_homeserver: str = ""
    matrix_user_id: str = ""
    matrix_password: SecretStr = SecretStr("")
    matrix_access_token: SecretStr = SecretStr("")

    admin_ids: CommaList = ()
    allow_private_endpoints: bool = False
    custom_extra_headers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    default_source: Source = Source.OPENAI
    default_model: str = ""
    default_proxy_url: str = ""
    default_system_prompt: str = ""
    default_reply_mode: ReplyMode = ReplyMode.MENTION
    default_openai_api_key: SecretStr = SecretStr("")
    default_claude_api_key: SecretStr = SecretStr("")
    default_mistral_api_key: SecretStr = SecretStr("")
    default_custom_api_key: SecretStr = SecretStr("")

    provider_connect_timeout: float = Field(default=10.0, gt=0)
    provider_first_byte_timeout: float = Field(default=60.0, gt=0)
    provider_idle_timeout: float = Field(default=60.0, gt=0)
    provider_max_retries: int = Field(default=2, ge=0, le=10)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("custom_extra_headers", mode="before")
    @classmethod
    def _parse_headers(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("not valid JSON") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "only sqlite+aiosqlite:// and postgresql+asyncpg:// URLs are supported"
            )
        return value

    @property
    def db_url(self) -> str:
        """DATABASE_URL, or an SQLite file under the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'chatbot.db').resolve()}"

    @property
    def discord_enabled(self) -> bool:
        return bool(self.discord_token.get_secret_value())

    @property
    def matrix_enabled(self) -> bool:
        return bool(self.matrix_homeserver and self.matrix_user_id)

    def default_secrets(self) -> dict[str, SecretValue]:
        """Operator default keys, named as the store names secrets."""
        keys = {
            "openai_api_key": self.default_openai_api_key,
            "claude_api_key": self.default_claude_api_key,
            "mistral_api_key": self.default_mistral_api_key,
            "custom_api_key": self.default_custom_api_key,
        }
        return {
            name: SecretValue(v.get_secret_value())
            for name, v in keys.items()
            if v.get_secret_value()
        }

    def is_operator_admin(self, user_id: str) -> bool:
        return user_id in self.admin_ids


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning validation errors into one readable SettingsError."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        lines = []
        for problem in err.errors(include_input=False, include_url=False):
            name = str(problem["loc"][0]).upper() if problem["loc"] else "settings"
            reason = str(problem["msg"]).removeprefix("Value error, ")
            hint = _FIX_HINTS.get(name)
            lines.append(
                f"Setting {name} is invalid: {reason}." + (f" Fix: {hint}." if hint else "")
            )
        raise SettingsError("\n".join(lines)) from None
