"""Operator settings from the environment and `.env`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.types import ReplyMode, SecretValue, Source
from bot.types.prices import PriceError, PriceTable

DEFAULT_DATA_DIR = Path("data")

CommaList = Annotated[tuple[str, ...], NoDecode]
IntList = Annotated[tuple[int, ...], NoDecode]
# "unverified": encrypt for every device of the room's members (trust on first use);
# "verified": only for devices someone verified.
MatrixTrust = Literal["unverified", "verified"]


class SettingsError(Exception):
    """A configuration mistake; the message names the setting and the fix."""


# How to fix each setting, shown with validation errors instead of a stack trace.
_FIX_HINTS: dict[str, str] = {
    "BOT_SECRET_KEYS": "run `chatbot keygen` and put the result in BOT_SECRET_KEYS",
    "DATABASE_URL": "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db",
    "LOG_LEVEL": "use one of DEBUG, INFO, WARNING, ERROR",
    "CUSTOM_EXTRA_HEADERS": 'use a JSON object, e.g. {"X-Team": "bots"}',
    "DEFAULT_SOURCE": "use one of openai, claude, mistral, custom",
    "DISCORD_SHARD_IDS": "use comma-separated shard numbers below DISCORD_SHARD_COUNT, e.g. 0,1",
    "DISCORD_COMMAND_GUILDS": "use comma-separated guild ids",
    "MATRIX_TRUST_DEVICES": "use unverified or verified",
    "USAGE_PRICES": "use model-pattern=input/output USD per million tokens, e.g. gpt-4o*=2.5/10",
    "USAGE_PRICES_FILE": "point it at a readable file of pattern=input/output lines",
}


class Settings(BaseSettings):
    """Every operator setting; README's table and .env.example list the same names."""

    # An empty value means "use the default": .env.example and `docker run --env-file`
    # both hand over `NAME=` lines as empty strings.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    bot_secret_keys: SecretStr = SecretStr("")
    log_level: str = "INFO"

    discord_token: SecretStr = SecretStr("")
    discord_shard_count: int | None = Field(default=None, ge=1)
    discord_shard_ids: IntList = ()
    discord_message_content: bool = True
    discord_command_guilds: IntList = ()
    discord_api_url: str = ""
    discord_gateway_url: str = ""

    matrix_homeserver: str = ""
    matrix_user_id: str = ""
    matrix_password: SecretStr = SecretStr("")
    matrix_access_token: SecretStr = SecretStr("")
    matrix_device_name: str = "chat-completion-bot"
    matrix_command_prefix: str = Field(default="!", min_length=1, max_length=3)
    matrix_admin_power_level: int = Field(default=50, ge=0)
    matrix_e2ee: bool = True
    matrix_trust_devices: MatrixTrust = "unverified"
    matrix_allowed_inviters: CommaList = ()

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
    provider_answer_timeout: float = Field(default=300.0, gt=0)
    max_answer_chars: int = Field(default=100_000, ge=100)

    max_images_per_turn: int = Field(default=4, ge=0, le=20)
    history_image_turns: int = Field(default=2, ge=0, le=20)
    max_attachment_mb: float = Field(default=20.0, gt=0, le=100)
    media_store_mb: int = Field(default=512, ge=1)
    media_retention_days: int = Field(default=30, ge=1)

    # USD per million input/output tokens by model pattern: `gpt-4o*=2.5/10, claude-*=3/15`.
    usage_prices: str = ""
    usage_prices_file: Path | None = None

    # Default quotas for every channel (empty: none); /limits overrides them per channel
    # or server. Who may use the bot at all (empty: everyone).
    limit_messages_per_user_minute: int | None = Field(default=None, ge=0, le=10**12)
    limit_tokens_per_user_day: int | None = Field(default=None, ge=0, le=10**12)
    limit_tokens_per_channel_day: int | None = Field(default=None, ge=0, le=10**12)
    limit_tokens_per_server_day: int | None = Field(default=None, ge=0, le=10**12)
    allowed_servers: CommaList = ()
    allowed_users: CommaList = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env_ignore_empty skips only "": a value of spaces is just as unset, and dropping
        # it per source lets a blank in the environment fall through to .env like "" does.
        for source in (env_settings, dotenv_settings):
            if isinstance(source, EnvSettingsSource):
                source.env_vars = {
                    name: value
                    for name, value in source.env_vars.items()
                    if value is None or value.strip()
                }
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator(
        "admin_ids",
        "allowed_servers",
        "allowed_users",
        "matrix_allowed_inviters",
        "discord_shard_ids",
        "discord_command_guilds",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_shards(self) -> Settings:
        if self.discord_shard_ids:
            if self.discord_shard_count is None:
                raise ValueError(
                    "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total number of shards)"
                )
            wrong = [i for i in self.discord_shard_ids if not 0 <= i < self.discord_shard_count]
            if wrong:
                raise ValueError(
                    f"DISCORD_SHARD_IDS {wrong} are outside 0..{self.discord_shard_count - 1}"
                )
        return self

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

    @field_validator("usage_prices")
    @classmethod
    def _check_prices(cls, value: str) -> str:
        try:
            PriceTable.parse(value)
        except PriceError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("usage_prices_file")
    @classmethod
    def _check_prices_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            PriceTable.parse(value.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read {value}: {type(err).__name__}") from None
        except PriceError as err:
            raise ValueError(f"{value}: {err}") from None
        return value

    def limit_defaults(self) -> dict[str, int]:
        """LIMIT_* settings that are set, by limit name (messages_per_user_minute …)."""
        found = {
            name.removeprefix("limit_"): getattr(self, name)
            for name in type(self).model_fields
            if name.startswith("limit_")
        }
        return {name: value for name, value in found.items() if value is not None}

    def price_table(self) -> PriceTable:
        """USAGE_PRICES, then USAGE_PRICES_FILE's entries (the first matching pattern wins)."""
        text = self.usage_prices
        if self.usage_prices_file is not None:
            text += "\n" + self.usage_prices_file.read_text(encoding="utf-8")
        return PriceTable.parse(text)

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("discord_api_url", "discord_gateway_url")
    @classmethod
    def _check_discord_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value.rstrip("/")

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


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning validation errors into one readable SettingsError."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        lines = []
        for problem in err.errors(include_input=False, include_url=False):
            reason = str(problem["msg"]).removeprefix("Value error, ")
            if not problem["loc"]:  # a rule across settings names them itself
                lines.append(f"Settings are inconsistent: {reason}.")
                continue
            name = str(problem["loc"][0]).upper()
            hint = _FIX_HINTS.get(name)
            lines.append(
                f"Setting {name} is invalid: {reason}." + (f" Fix: {hint}." if hint else "")
            )
        raise SettingsError("\n".join(lines)) from None
