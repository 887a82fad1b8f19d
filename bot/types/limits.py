"""Limits the layers share, as values: quotas and access rules (the store and the usage
layer), and what one image decode may hold (media and character cards). No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# What one image decode may hold in memory: 40 MP is ~160 MB as RGBA.
MAX_PIXELS = 40_000_000

# The operator's defaults for what a provider call and a turn may take (the settings of
# the same names): Settings, ProviderSettings and TurnLimits read these, one place each.
CONNECT_TIMEOUT = 10.0  # PROVIDER_CONNECT_TIMEOUT, seconds
FIRST_BYTE_TIMEOUT = 60.0  # PROVIDER_FIRST_BYTE_TIMEOUT
IDLE_TIMEOUT = 60.0  # PROVIDER_IDLE_TIMEOUT
MAX_RETRIES = 2  # PROVIDER_MAX_RETRIES
ANSWER_TIMEOUT = 300.0  # PROVIDER_ANSWER_TIMEOUT: one whole answer
MAX_ANSWER_CHARS = 100_000
MAX_IMAGES = 4  # MAX_IMAGES_PER_TURN: one message's
HISTORY_IMAGE_TURNS = 2  # newest turns with images that send them again
MAX_ATTACHMENT_MB = 20.0
MEDIA_STORE_MB = 512  # prepared images kept, in all
MEDIA_RETENTION_DAYS = 30

# How long a limit's refusal shows: Discord's reply deletes itself after it, and while it
# is recent the engine says no other to that member in that conversation (read at the
# time, so a test may shorten it here for both).
REFUSAL_SECONDS = 15.0


# The words for "no limit", as an operator writes it in LIMIT_* and an admin in
# /limits set (where `off` is said): the operator's the same as an empty value.
NO_LIMIT = ("off", "none", "unlimited")


class LimitName(StrEnum):
    MESSAGES_PER_USER_MINUTE = "messages_per_user_minute"
    TOKENS_PER_USER_DAY = "tokens_per_user_day"
    TOKENS_PER_CHANNEL_DAY = "tokens_per_channel_day"
    # One budget for a whole server however many channels spend it: a per-channel cap
    # alone lets a server with many channels spend many times what its admins meant.
    TOKENS_PER_SERVER_DAY = "tokens_per_server_day"


@dataclass(frozen=True, slots=True)
class Counts:
    """What was spent where a turn is charged: settled usage plus reserved estimates.

    `user_recent`: when the user's calls of the last minute were made, oldest first;
    `user_failed`: those of them that ended in an error (the endpoint refused or failed
    it), apart.
    `*_held`: of each day's tokens, what reserved rows hold (answers being written, or a
    crash's until it is settled; their end replaces it with what they used). Read only
    where it is said (a refusal, /limits): 0 in a charge that goes.
    """

    user_tokens_today: int = 0
    channel_tokens_today: int = 0
    server_tokens_today: int = 0
    user_recent: tuple[datetime, ...] = ()
    user_failed: tuple[datetime, ...] = ()
    user_held: int = 0
    channel_held: int = 0
    server_held: int = 0


@dataclass(frozen=True, slots=True)
class Charge:
    """A reserved usage row, written only if `decide` (given the counts) says yes."""

    at: datetime  # UTC
    platform: str
    server_id: str
    channel_id: str
    thread_id: str
    user_id: str
    source: str
    model: str
    estimate: int
    count_recent: bool = True  # read the user's last minute (a messages limit holds)
    answer: int = 0  # of `estimate`, the answer's room: held as output tokens


class AccessKind(StrEnum):
    USER = "user"  # a user id (Discord snowflake, Matrix @user:server, console name)
    ROLE = "role"  # a Discord role id
    LEVEL = "level"  # a Matrix power level: matches members at or above it


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    # A server's bot-admin role (Discord): its members administer the server's channels as
    # Manage Server's holders do, not the server's own settings. Not a who-may-chat rule.
    ADMIN = "admin"


# Who-may-chat rules a channel, or a server, keeps: past a few dozen people, a role (or a
# Matrix power level) says it in one rule; and /access and /settings list every one.
MAX_ACCESS_RULES = 50


@dataclass(frozen=True, slots=True)
class AccessRule:
    kind: AccessKind
    subject: str
    effect: Effect
    server_wide: bool = False  # stored on the server's row rather than the channel's


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """Limits stored for one channel and its server: name → value (None: off there)."""

    channel: dict[str, int | None] = field(default_factory=dict)
    server: dict[str, int | None] = field(default_factory=dict)
