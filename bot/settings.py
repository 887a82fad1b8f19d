"""Operator settings from the environment and `.env`.

`Settings` is the one table: each field names a setting (its variable is the name in
capitals), its default, how its text is read and how to fix a mistake. Read with the
standard library and python-dotenv: pydantic-settings did the same for ~9 MB of every
bot process's memory (bench/RESULTS.md, "settings without pydantic, uvloop, …").
"""

from __future__ import annotations

import difflib
import io
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.types import ReplyMode, SecretValue, Source, limits, redact
from bot.types.prices import PriceError, PriceTable
from bot.types.secrets import KEYGEN_HINT, too_short
from bot.types.text import (
    MODEL_ID_CHARS,
    PROXY_URL_CHARS,
    SYSTEM_PROMPT_CHARS,
    TextError,
    clean_text,
    describe_char,
    header_safe,
    out_of_range,
    parse_decimal,
    parse_whole_number,
    range_text,
    refuse_controls,
    switch_value,
    unmarked,
    untrusted_json,
    unwrapped,
    visible_id,
)

DEFAULT_DATA_DIR = Path("data")
ENV_FILE = ".env"
PRICES_FILE_BYTES = 1024 * 1024  # USAGE_PRICES_FILE is read up to this, or refused

# "unverified": encrypt for every device of the room's members (trust on first use);
# "verified": only for devices someone verified.
MatrixTrust = Literal["unverified", "verified"]

Reader = Callable[[str], Any]  # a value's text → the value; ValueError(reason) if wrong


class SettingsError(Exception):
    """A configuration mistake; the message names the setting and the fix."""


def _text(value: str) -> str:
    return value


def _flag(value: str) -> bool:
    switch = switch_value(value.strip())
    if switch is None:
        raise ValueError("use true or false")
    return switch


def _whole(low: int | None = None, high: int | None = None) -> Reader:
    def read(value: str) -> int:
        # ASCII digits, as the README says (not `١٠`, `1_000`); thousands may be grouped.
        number = parse_whole_number(value)
        if number is None:
            raise ValueError("not a whole number")
        if out_of_range(number, low, high):
            raise ValueError(f"must be {range_text(low, high)}")
        return number

    return read


def _positive(high: float | None = None) -> Reader:
    def read(value: str) -> float:
        number = parse_decimal(value)  # ASCII, as the README says; never inf or nan
        if number is None:
            raise ValueError("must be a number above 0")
        if not math.isfinite(number) or number <= 0:
            raise ValueError("must be a number above 0")
        if high is not None and number > high:
            raise ValueError(f"must be at most {high:g}")
        return number

    return read


def _one_of(*choices: str) -> Reader:
    """One of `choices`, in any case; the choice as written here."""
    by_word = {choice.lower(): choice for choice in choices}

    def read(value: str) -> str:
        choice = by_word.get(value.strip().lower())
        if choice is None:  # the value itself is not echoed: it may be a pasted key
            raise ValueError(f"use one of {', '.join(choices)}")
        return choice

    return read


def _enum(kind: type[StrEnum]) -> Reader:
    pick = _one_of(*(member.value for member in kind))
    return lambda value: kind(pick(value))


def _words(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _ids(value: str) -> tuple[str, ...]:
    """User ids, comma-separated: a Discord id, a Matrix id, a console user's. None has a
    space, so `12 34` is two ids a comma was left out of (read as one, it matched no one)."""
    ids = _words(value)
    for item in ids:
        if any(c.isspace() for c in item):
            raise ValueError(f"{item[:40]!r} has a space in it: separate ids with commas")
    return ids


def _inviters(value: str) -> tuple[str, ...]:
    found = _ids(value)
    for item in found:
        bare_server = _SERVER_NAME.fullmatch(item)  # `example.org`, read as `:example.org`
        if not (_MATRIX_ID.fullmatch(item) or _server_part(item) or bare_server):
            raise ValueError(
                f"{item[:40]!r} is neither a user (@name:server) nor a server (:server)"
            )
    return found


def _places(value: str) -> tuple[str, ...]:
    found = _ids(value)
    for item in found:
        room = item.startswith("!") and len(item) > 1
        if not (item.isdigit() or room or _server_part(item)):
            raise ValueError(
                f"{item[:40]!r} is no Discord server id (digits), Matrix room id (!…) or "
                "Matrix homeserver (:example.org)"
            )
    return found


_SERVER_NAME = re.compile(r"[A-Za-z0-9.\-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")


def _server_part(item: str) -> bool:
    return item.startswith(":") and len(item) > 1


def _numbers(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _words(value))
    except ValueError:
        raise ValueError("not a comma-separated list of whole numbers") from None


# A header's name as HTTP allows it (RFC 9110's token).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _headers(value: str) -> dict[str, str]:
    try:
        found = untrusted_json(value)
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise ValueError("not a JSON object of text values")
    for name, text in found.items():  # said here, not as every chat's "cannot be reached"
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name[:40]!r} is no header name (letters, digits, - and _)")
        if not text.isascii() or any((c < " " and c != "\t") or c == "\x7f" for c in text):
            raise ValueError(f"the value of {name} must be one line of ASCII")
    return found


def _lower_scheme(url: str) -> str:
    """`HTTPS://host` as `https://host`: every check of a URL here reads the scheme so."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.lower()}{sep}{rest}" if sep else url


def _web_url(value: str) -> str:
    value = _lower_scheme(value)
    if not value.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError("must be an http(s):// or ws(s):// URL")
    return value.rstrip("/")


def _credential(what: str, *, chat: bool = False) -> Callable[[str], SecretValue]:
    """A key or token as `/key set` takes one (text.header_safe): the edges' spaces and
    invisible characters, one pair of quotes and a `Bearer ` taken off; a space or an
    invisible character inside refused here, not met as an error from the endpoint.
    Unset when empty. Messages name the position, never the value. `chat`: a key a
    channel's requests carry, whose answers are cleaned of it, refused when too short as
    `/key set` refuses one (too_short)."""

    def read(value: str) -> SecretValue:
        if not unwrapped(value):
            return _NO_KEY
        try:
            key = header_safe(value, what)
        except TextError as err:  # in this setting's one line: what is wrong, and where
            raise ValueError(err.problem) from None
        short = too_short(key) if chat else None
        if short is not None:
            raise ValueError(
                f"is too short {short} in every channel that uses it; an endpoint that "
                "asks for no key needs none set: leave it empty"
            )
        return SecretValue(key)

    return read


def _discord_token(value: str) -> SecretValue:
    """The token as the Developer Portal shows it; a pasted `Bot ` prefix (how it is sent,
    which the library adds itself) is taken off, and it is cleaned as a key is."""
    token = unwrapped(value)
    if token[:4].lower() == "bot ":
        token = token[4:]
    return _credential("token")(token)


def _proxy_url(value: str) -> str:
    """A full http(s) URL, as `/proxy set` takes one (a bare `host:port` is refused there
    too). bot/app.py cuts the routes pasted with it as `/proxy set` does, and the endpoint
    policy judges it at start and on each request, as it judges a channel's URL.

    Messages never quote the value: a key pasted on the wrong line of .env lands here.
    """
    url = value.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ValueError("must be a full http:// or https:// URL, e.g. http://localhost:1234/v1")
    if len(url) > PROXY_URL_CHARS:
        raise ValueError(f"longer than {PROXY_URL_CHARS} characters")
    if any(c.isspace() for c in url):
        raise ValueError("has a space or line break in it")
    try:
        refuse_controls(url, "URL")
    except TextError as err:  # its first sentence, in this setting's one line
        raise ValueError(str(err).split(". ")[0].removeprefix("The URL ")) from None
    odd = next((i for i, c in enumerate(url) if not c.isascii()), None)
    if odd is not None:  # `lоcalhost` with a Cyrillic о: a host that is not the one meant
        raise ValueError(
            f"has a character that is not ASCII ({describe_char(url[odd])}) at position "
            f"{odd + 1}: type it again; an international host name is written in its "
            "xn-- form"
        )
    authority = rest.split("/", 1)[0]
    if "@" in authority:  # never echoed: it holds a password; /proxy show would show it
        raise ValueError(
            "must not hold a user name or password; give the key as the source's "
            "DEFAULT_…_API_KEY instead"
        )
    if "?" in rest or "#" in rest:
        raise ValueError("must not hold a query (?…) or fragment (#…)")
    return url.rstrip("/")


def _login_password(value: str) -> SecretValue:
    """MATRIX_PASSWORD as a login form takes one: the line breaks around it taken off (a
    secret file's last newline, a CRLF file's `\r`: the homeserver refused the login, and
    the password looked right), spaces kept (a passphrase has them); a line break or a
    control character inside refused, by its position, never the value."""
    password = value.strip("\r\n")
    if (inside := next((i for i, c in enumerate(password) if c in "\r\n"), None)) is not None:
        raise ValueError(f"has a line break at position {inside + 1}: a password is one line")
    try:
        refuse_controls(password, "password")
    except TextError as err:  # its first sentence, in this setting's one line
        raise ValueError(str(err).split(". ")[0].removeprefix("The password ")) from None
    return SecretValue(password)


def _model(value: str) -> str:
    """A model id as `/model` takes it: visible characters, the edges' spaces dropped."""
    try:
        model = visible_id(unmarked(unwrapped(value)), "model id")  # as /model takes it
    except TextError as err:  # its first sentence, in this setting's one line
        first = str(err).split(". ")[0].removeprefix("The model id ")
        raise ValueError(first.rstrip(".")) from None  # the line ends it with its own
    if len(model) > MODEL_ID_CHARS:
        raise ValueError(f"longer than {MODEL_ID_CHARS} characters")
    return model


def _system_prompt(value: str) -> str:
    """A system prompt as `/system` keeps one: control characters out, as long as a
    channel's may be."""
    prompt = clean_text(value)
    if len(prompt) > SYSTEM_PROMPT_CHARS:
        raise ValueError(f"{len(prompt):,} characters; at most {SYSTEM_PROMPT_CHARS:,}")
    return prompt


_MATRIX_ID = re.compile(r"@[^:\s]+:[^\s]+")


def _matrix_user(value: str) -> str:
    user = value.strip()
    if not _MATRIX_ID.fullmatch(user):
        raise ValueError("not a full Matrix user id")
    return user


# A route of the client API pasted with the homeserver's address (`…/_matrix/client/v3`
# or `…/login`, as API docs and curl lines show it): the bot adds the routes itself.
_MATRIX_ROUTE = re.compile(r"/_matrix(?:/.*)?$")


def _homeserver(value: str) -> str:
    """An http(s) URL; a bare host name (as Element takes it) means https://host, and a
    pasted `/_matrix/…` route is cut back to the address before it (Synapse refused the
    login there with M_UNRECOGNIZED, said as a wrong user id or password)."""
    url = _lower_scheme(value.strip())
    if "://" not in url:
        url = "https://" + url
    scheme, _, rest = url.partition("://")
    host, sep, path = rest.partition("/")
    url = f"{scheme}://{host}" + _MATRIX_ROUTE.sub("", sep + path)
    if not url.startswith(("http://", "https://")) or not host.strip("/"):
        raise ValueError("must be the homeserver's URL, e.g. https://matrix.example.org")
    return url.rstrip("/")


def read_database_url(value: str) -> str:
    """A DATABASE_URL as the bot reads it (ValueError saying what is wrong, never the
    password)."""
    value = _lower_scheme(value.strip())  # spaces around it, as any other setting's
    if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ValueError("only sqlite+aiosqlite:// and postgresql+asyncpg:// URLs are supported")
    try:  # read as the engine will read it; its message is not shown: it may hold the password
        url = make_url(value)
        port = url.port
    except (ArgumentError, ValueError):
        raise ValueError(
            "it cannot be read as a database URL (in the password, write @ : / # ? % and "
            "spaces percent-encoded: %40 %3A %2F %23 %3F %25 %20)"
        ) from None
    if url.drivername.startswith("postgresql"):
        url = _asyncpg_options(url)
        value = url.render_as_string(hide_password=False)
    if url.drivername.startswith("sqlite") and (url.database or "").startswith("~"):
        # `sqlite+aiosqlite:///~/chatbot.db`: in the home folder, as DATA_DIR's `~` is.
        value = url.set(database=str(_path(url.database or ""))).render_as_string(False)
    if "@" in (url.host or "") or (url.host and "@" in (url.database or "")):
        # `user:pa@ss@host`: the host would be read as `ss@host`, and quoted in errors;
        # `user:pa@ss/x@host/db`: as host `ss`, the rest of the password its database.
        raise ValueError("an @ in the password must be written %40 (the URL's own @ comes once)")
    if port is not None and not 0 < port < 65536:
        raise ValueError("the port must be from 1 to 65535")
    return value


# What a PostgreSQL URL may carry after `?`: asyncpg's connect options that take text,
# and `host` (a Unix socket's folder, or several `host:port`, as SQLAlchemy reads it).
_ASYNCPG_OPTIONS = ("host", "ssl", "target_session_attrs", "prepared_statement_cache_size")
# libpq's name for one: managed PostgreSQL services hand out `?sslmode=require`.
_LIBPQ_NAMES = {"sslmode": "ssl"}
# The values asyncpg takes for the options that are choices (libpq's, as written there).
_ASYNCPG_CHOICES = {
    "ssl": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": (
        "any",
        "primary",
        "standby",
        "prefer-standby",
        "read-write",
        "read-only",
    ),
}
# SQLAlchemy's cache of prepared statements per connection (0: none); below 0 it never
# returned from the first query.
_STATEMENT_CACHE = _whole(0, 1_000_000)


def _asyncpg_options(url: URL) -> URL:
    """`url` with libpq's `sslmode` as asyncpg's `ssl` (the same values); any option asyncpg
    does not take, and any value it does not take, is refused here, not met as a traceback
    (or a start that never ends) when the database is opened."""
    if all(name in url.query for name in ("ssl", "sslmode")):
        raise ValueError("it has both ?ssl= and ?sslmode=, which are one option: keep one")
    query = {_LIBPQ_NAMES.get(k, k): v for k, v in url.query.items()}
    unknown = sorted(set(query) - set(_ASYNCPG_OPTIONS))
    if unknown:
        raise ValueError(
            f"?{unknown[0]}= is no option asyncpg takes; a PostgreSQL URL may carry "
            f"{', '.join(o + '=' for o in _ASYNCPG_OPTIONS)} (sslmode= is read as ssl=)"
        )
    for name, value in query.items():
        if name == "host":  # several are several hosts, tried in turn
            continue
        if not isinstance(value, str):
            raise ValueError(f"?{name}= is given more than once: keep one")
        if name in _ASYNCPG_CHOICES:
            choice = value.strip().lower().replace("_", "-")
            if choice not in _ASYNCPG_CHOICES[name]:  # the value is not quoted: see above
                raise ValueError(f"?{name}= must be one of {', '.join(_ASYNCPG_CHOICES[name])}")
            query[name] = choice
        else:
            try:
                query[name] = str(_STATEMENT_CACHE(value))
            except ValueError:
                raise ValueError(
                    f"?{name}= must be a whole number from 0 (no cache) to 1000000"
                ) from None
    return url.set(query=query)


def _prefix(value: str) -> str:
    if not 1 <= len(value) <= 3:
        raise ValueError("must be 1 to 3 characters")
    return value


def _prices(value: str) -> str:
    try:
        PriceTable.parse(value)
    except PriceError as err:  # it quotes the entry, which may be a key pasted here
        raise ValueError(redact(str(err))) from None
    return value


def read_prices_file(path: Path) -> str:
    """The text of USAGE_PRICES_FILE, read no further than PRICES_FILE_BYTES; ValueError
    saying what is wrong with it (never its content: it may be any file)."""
    try:
        with path.open("rb") as file:
            data = file.read(PRICES_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path}: {type(err).__name__}") from None
    if len(data) > PRICES_FILE_BYTES:
        raise ValueError(f"{path} is larger than {PRICES_FILE_BYTES // (1024 * 1024)} MB")
    if "\x00" in text:
        raise ValueError(f"{path} is not a text file (it has NUL bytes)")
    return text


def _path(value: str) -> Path:
    """A folder or file as a shell would read it: `~/chatbot` is in the home folder (not
    a folder named `~` here, which a later `rm -rf ~` would take for the home folder)."""
    return Path(value).expanduser()


def _prices_file(value: str) -> Path:
    path = _path(value)
    try:
        PriceTable.parse(read_prices_file(path))
    except PriceError as err:
        raise ValueError(f"{path}: {redact(str(err))}") from None
    return path


def setting(default: Any, read: Reader, fix: str = "") -> Any:
    """A field of `Settings`: its default, how its text is read, how to fix a mistake."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"read": read, "fix": fix})
    return field(default=default, metadata={"read": read, "fix": fix})


_QUOTA = _whole(0, 10**12)
_QUOTA_FIX = "leave it empty or write off for no limit (0 allows nothing)"


def _quota(value: str) -> int | None:
    """A default limit: a whole number, or none (`off`, as /limits set says it)."""
    return None if value.strip().lower() in limits.NO_LIMIT else _QUOTA(value)


_HOUR, _DAY = 3600.0, 86400.0
_NO_KEY = SecretValue("")


@dataclass(frozen=True)
class Settings:
    """Every operator setting; README's table and .env.example list the same names."""

    data_dir: Path = setting(DEFAULT_DATA_DIR, _path)
    database_url: str = setting(
        "",
        read_database_url,
        "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db",
    )
    bot_secret_keys: SecretValue = setting(_NO_KEY, SecretValue, KEYGEN_HINT)
    log_level: str = setting("INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))

    discord_token: SecretValue = setting(_NO_KEY, _discord_token)
    discord_shard_count: int | None = setting(None, _whole(1, 100_000))
    discord_shard_ids: tuple[int, ...] = setting(
        (),
        _numbers,
        "use comma-separated shard numbers below DISCORD_SHARD_COUNT, e.g. 0,1",
    )
    discord_message_content: bool = setting(True, _flag)
    discord_command_guilds: tuple[int, ...] = setting((), _numbers, "use comma-separated guild ids")
    discord_api_url: str = setting("", _web_url)
    discord_gateway_url: str = setting("", _web_url)

    matrix_homeserver: str = setting("", _homeserver)
    matrix_user_id: str = setting("", _matrix_user, "use the bot's full id, e.g. @bot:example.org")
    matrix_password: SecretValue = setting(_NO_KEY, _login_password)
    matrix_access_token: SecretValue = setting(_NO_KEY, _credential("access token"))
    matrix_device_name: str = setting("chat-completion-bot", _text)
    matrix_command_prefix: str = setting("!", _prefix)
    matrix_admin_power_level: int = setting(50, _whole(0, 2**53 - 1))  # the spec's largest
    matrix_e2ee: bool = setting(True, _flag)
    matrix_trust_devices: MatrixTrust = setting("unverified", _one_of("unverified", "verified"))
    matrix_allowed_inviters: tuple[str, ...] = setting((), _inviters)

    admin_ids: tuple[str, ...] = setting((), _ids)
    allow_private_endpoints: bool = setting(False, _flag)
    custom_extra_headers: dict[str, str] = setting(
        {}, _headers, 'use a JSON object, e.g. {"X-Team": "bots"}'
    )

    default_source: Source = setting(Source.OPENAI, _enum(Source))
    default_model: str = setting("", _model)
    default_proxy_url: str = setting("", _proxy_url)
    default_system_prompt: str = setting("", _system_prompt)
    default_reply_mode: ReplyMode = setting(ReplyMode.MENTION, _enum(ReplyMode))
    default_openai_api_key: SecretValue = setting(_NO_KEY, _credential("key", chat=True))
    default_claude_api_key: SecretValue = setting(_NO_KEY, _credential("key", chat=True))
    default_mistral_api_key: SecretValue = setting(_NO_KEY, _credential("key", chat=True))
    default_custom_api_key: SecretValue = setting(_NO_KEY, _credential("key", chat=True))

    # Bounded: a number no clock reaches (1e12 s) failed every start with an OverflowError.
    provider_connect_timeout: float = setting(limits.CONNECT_TIMEOUT, _positive(_HOUR))
    provider_first_byte_timeout: float = setting(limits.FIRST_BYTE_TIMEOUT, _positive(_HOUR))
    provider_idle_timeout: float = setting(limits.IDLE_TIMEOUT, _positive(_HOUR))
    provider_max_retries: int = setting(limits.MAX_RETRIES, _whole(0, 10))
    provider_answer_timeout: float = setting(limits.ANSWER_TIMEOUT, _positive(_DAY))
    max_answer_chars: int = setting(limits.MAX_ANSWER_CHARS, _whole(100, 10_000_000))

    max_images_per_turn: int = setting(limits.MAX_IMAGES, _whole(0, 20))
    history_image_turns: int = setting(limits.HISTORY_IMAGE_TURNS, _whole(0, 20))
    max_attachment_mb: float = setting(limits.MAX_ATTACHMENT_MB, _positive(100))
    media_store_mb: int = setting(limits.MEDIA_STORE_MB, _whole(1, 10_000_000))
    media_retention_days: int = setting(limits.MEDIA_RETENTION_DAYS, _whole(1, 36_500))

    # USD per million input/output tokens by model pattern: `gpt-4o*=2.5/10, claude-*=3/15`.
    usage_prices: str = setting("", _prices)  # its error shows the form, with an example
    usage_prices_file: Path | None = setting(
        None, _prices_file, "point it at a readable file of pattern=input/output lines"
    )

    # Default quotas for every channel (empty: none); /limits overrides them per channel
    # or server. Who may use the bot at all (empty: everyone).
    limit_messages_per_user_minute: int | None = setting(None, _quota, _QUOTA_FIX)
    limit_tokens_per_user_day: int | None = setting(None, _quota, _QUOTA_FIX)
    limit_tokens_per_channel_day: int | None = setting(None, _quota, _QUOTA_FIX)
    limit_tokens_per_server_day: int | None = setting(None, _quota, _QUOTA_FIX)
    allowed_servers: tuple[str, ...] = setting((), _places)
    allowed_users: tuple[str, ...] = setting((), _ids)

    def limit_defaults(self) -> dict[str, int]:
        """LIMIT_* settings that are set, by limit name (messages_per_user_minute …)."""
        found = {
            f.name.removeprefix("limit_"): getattr(self, f.name)
            for f in fields(self)
            if f.name.startswith("limit_")
        }
        return {name: value for name, value in found.items() if value is not None}

    def price_table(self) -> PriceTable:
        """USAGE_PRICES, then USAGE_PRICES_FILE's entries (the first matching pattern wins)."""
        text = self.usage_prices
        if self.usage_prices_file is not None:
            try:
                text += "\n" + read_prices_file(self.usage_prices_file)
            except ValueError as err:  # changed since start-up
                raise SettingsError(f"Setting USAGE_PRICES_FILE is invalid: {err}.") from None
        return PriceTable.parse(text)

    @property
    def db_url(self) -> str:
        """DATABASE_URL, or an SQLite file under the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'chatbot.db').resolve()}"

    @property
    def discord_enabled(self) -> bool:
        return bool(self.discord_token)

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
        return {name: key for name, key in keys.items() if key}


def _given(values: Mapping[str, str | None]) -> dict[str, str]:
    """`values` by lower-case name, without blanks: an empty value (or one of spaces, as
    .env.example and `docker run --env-file` hand over `NAME=`) means "use the default",
    and a blank in the environment lets the .env value through."""
    return {name.lower(): v for name, v in values.items() if v is not None and v.strip()}


def _environment() -> dict[str, str]:
    """The process environment's settings. A value in one pair of quotes loses them:
    `docker run --env-file` hands `NAME="value"` over with its quotes, where a .env file
    read here (and by a shell) drops them. (Not `unwrapped`, which keeps `""` whole: here
    it is an empty value, the default.)"""
    values = {}
    for name, value in os.environ.items():
        text = value.strip()
        quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'"
        values[name] = text[1:-1] if quoted else value
    return _given(values)


def _dotenv() -> dict[str, str]:
    text = _dotenv_text()
    return _given(dotenv_values(stream=io.StringIO(text))) if text else {}


def _dotenv_text() -> str:
    """.env's text, checked line by line ("" without the file)."""
    path = Path(ENV_FILE)
    if not path.is_file():
        return ""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{ENV_FILE} is not UTF-8 text: save it as UTF-8.") from None
    except OSError as err:
        raise SettingsError(
            f"{ENV_FILE} cannot be read ({type(err).__name__}): make it readable by the user "
            "the bot runs as, or remove it."
        ) from None
    _unreadable_lines(text)
    return text


def _unreadable_lines(text: str) -> None:
    """A line python-dotenv cannot read takes the lines after it along, up to the next
    quote (a comment's `it's` too), and python-dotenv only warns: a `'` left open in
    DEFAULT_MODEL dropped every key after it, and the bot ran without them."""
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise SettingsError(
                f"{ENV_FILE} line {binding.original.line} cannot be read (a quote opened and "
                "not closed, or a line that is not NAME=value), and the lines after it up to "
                "the next quote went with it: fix that line, then start again."
            )


def dotenv_typos() -> list[str]:
    """A line each for a name in .env that is no setting but nearly one (`DEFAULT_SOURC`):
    without a word it would be ignored and the default used. Names far from every setting
    are left alone (a .env may hold other programs' settings too). And a setting given on
    two lines: the last is used, and the first may be the one meant (a second
    BOT_SECRET_KEYS left every stored key unreadable without a word)."""
    names = [f.name for f in fields(Settings)]
    said = []
    typos: set[str] = set()
    lines: dict[str, list[tuple[int, str]]] = {}
    for binding in parse_stream(io.StringIO(_dotenv_text())):
        if not binding.key:
            continue
        name = binding.key.lower()
        if name in names:
            lines.setdefault(name.upper(), []).append((binding.original.line, binding.value or ""))
        elif (
            (binding.value or "").strip()
            and (close := difflib.get_close_matches(name, names, 1, 0.9))
            and name not in typos
        ):
            typos.add(name)
            said.append(
                f"{ENV_FILE} sets {name.upper()}, which is no setting, so it is ignored: "
                f"did you mean {close[0].upper()}?"
            )
    environment = _environment()
    for name, at in lines.items():
        if len(at) < 2:
            continue
        listed = ", ".join(str(n) for n, _ in at[:-1])
        last, value = at[-1]
        if name.lower() in environment:
            used = "the environment's value is used (it wins over the file)"
        elif not value.strip():
            used = f"line {last} leaves it empty, so the default is used"
        else:
            used = f"line {last}'s value is used"
        said.append(f"{ENV_FILE} sets {name} on lines {listed} and {last}: {used}.")
    return said


def _inconsistencies(s: Settings) -> list[str]:
    """Rules across settings, each naming the settings it involves."""
    found = []
    if bool(s.matrix_homeserver) != bool(s.matrix_user_id):
        missing, given = (
            ("MATRIX_USER_ID", "MATRIX_HOMESERVER")
            if s.matrix_homeserver
            else ("MATRIX_HOMESERVER", "MATRIX_USER_ID")
        )
        found.append(f"{given} is set but {missing} is not: Matrix needs both")
    elif s.matrix_enabled and not (s.matrix_password.reveal() or s.matrix_access_token.reveal()):
        # Said here, not at login: that was after the database was made and migrated, as a
        # front-end failure (status 1) that a restart might mend.
        found.append(
            "MATRIX_HOMESERVER and MATRIX_USER_ID are set but neither MATRIX_PASSWORD nor "
            "MATRIX_ACCESS_TOKEN is: Matrix needs one of them to log in"
        )
    if not s.discord_shard_ids:
        return found
    if s.discord_shard_count is None:
        return [*found, "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total number of shards)"]
    wrong = [i for i in s.discord_shard_ids if not 0 <= i < s.discord_shard_count]
    if wrong:
        found.append(f"DISCORD_SHARD_IDS {wrong} are outside 0..{s.discord_shard_count - 1}")
    return found


# A comment after a value, as .env files write them: python-dotenv drops it from an
# unquoted value in .env, but the environment keeps it (`docker run --env-file` passes a
# line on as written), and so does a value in quotes.
_COMMENT = re.compile(r"\s#")


def _comment_fix(*, from_environment: bool) -> str:
    """How to fix a value that a comment after it made wrong (the value never quoted)."""
    if from_environment:
        return (
            "a ` # …` comment after a value is part of the value in the environment "
            "(`docker run --env-file` passes each line on as written): put the comment on "
            "a line of its own"
        )
    return (
        f"in {ENV_FILE}, a ` # …` comment inside the quotes is part of the value: put it "
        "after the closing quote, or on a line of its own"
    )


def load_settings(**overrides: Any) -> Settings:
    """Settings from `overrides`, else the environment, else `.env` (names in any case),
    else the defaults; every mistake in one readable SettingsError."""
    environment = _environment()
    given = {**_dotenv(), **environment, **overrides}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields(Settings):
        if f.name not in given:
            continue
        raw = given[f.name]
        if not isinstance(raw, str):
            values[f.name] = raw  # a value already (a caller's override)
            continue
        try:
            if "\x00" in raw:  # no setting has a use for it; a driver or a URL would choke
                raise ValueError("contains a NUL character")
            values[f.name] = f.metadata["read"](raw)
        except ValueError as err:
            fix = f.metadata["fix"]
            if _COMMENT.search(raw):
                fix = _comment_fix(from_environment=f.name in environment)
            problems.append(
                f"Setting {f.name.upper()} is invalid: {err}." + (f" Fix: {fix}." if fix else "")
            )
    if problems:
        raise SettingsError("\n".join(problems))
    settings = Settings(**values)
    if found := _inconsistencies(settings):
        raise SettingsError("\n".join(f"Settings are inconsistent: {p}." for p in found))
    return settings
