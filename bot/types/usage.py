"""What a provider call used, and the stored usage records built from it. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

# More than any model's context and answer together (the largest hold ~10M tokens): a
# count above it, like a negative one, is a broken or hostile report, not usage.
MAX_TOKENS_PER_CALL = 100_000_000


def reported_tokens(value: object) -> int | None:
    """A token count as an endpoint reported it, or None when it is no plausible count
    (not a whole number, negative, or beyond MAX_TOKENS_PER_CALL): then the call's
    usage is estimated, and no report can overflow a sum in /usage or a quota."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= MAX_TOKENS_PER_CALL else None
    return None


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one provider call used as the endpoint reported them (None: not reported)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # The thinking tokens of the answer (completion_tokens_details): inside
    # completion_tokens as OpenAI counts them, beside them as some gateways do (Gemini's
    # thoughts). Only what tells a length stop's cause; no record counts them.
    reasoning_tokens: int | None = None

    def merged(self, newer: Usage) -> Usage:
        """This report updated by a later one (Claude's counts are cumulative)."""
        return Usage(
            newer.prompt_tokens if newer.prompt_tokens is not None else self.prompt_tokens,
            newer.completion_tokens
            if newer.completion_tokens is not None
            else self.completion_tokens,
            newer.reasoning_tokens if newer.reasoning_tokens is not None else self.reasoning_tokens,
        )


class KeyScope(StrEnum):
    """Whose secret a call was sent with: where it was stored (never the secret)."""

    CHANNEL = "channel"
    SERVER = "server"
    OPERATOR = "operator"
    NONE = "none"  # a passwordless endpoint or reverse proxy


USAGE_COLUMNS = (
    "time",
    "platform",
    "server_id",
    "channel_id",
    "thread_id",
    "user_id",
    "source",
    "model",
    "input_tokens",
    "output_tokens",
    "estimated",
    "error",
    "key_scope",
    "reserved",
)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One provider call that costs (a chat turn, regenerate, continue, retry)."""

    at: datetime  # UTC
    platform: str
    server_id: str
    channel_id: str
    thread_id: str
    user_id: str
    source: str
    model: str
    input_tokens: int
    output_tokens: int
    estimated: bool = False  # the endpoint reported (part of) it not: counted by the bot
    error: bool = False  # the call ended with an error (stopped, cut, refused)
    key_scope: KeyScope = KeyScope.NONE
    # Not settled yet: what a call being answered (or one a stopped process cut off,
    # until housekeeping settles it) reserved, not what it used.
    reserved: bool = False

    @property
    def day(self) -> date:
        return self.at.date()

    def as_dict(self) -> dict[str, object]:
        """Plain values by USAGE_COLUMNS (export formats)."""
        values: tuple[object, ...] = (
            self.at.isoformat(),
            self.platform,
            self.server_id,
            self.channel_id,
            self.thread_id,
            self.user_id,
            self.source,
            self.model,
            self.input_tokens,
            self.output_tokens,
            self.estimated,
            self.error,
            self.key_scope.value,
            self.reserved,
        )
        return dict(zip(USAGE_COLUMNS, values, strict=True))


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which usage rows to sum: one platform, optionally one server, channel or user,
    over the UTC days `since` … `until` (both included)."""

    platform: str
    since: date
    until: date
    server_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """The sum of a day's calls by one user to one model."""

    day: date
    user_id: str
    model: str
    input_tokens: int
    output_tokens: int
    calls: int
    estimated_calls: int = 0  # of the settled ones
    error_calls: int = 0
    reserved_calls: int = 0  # not settled yet (UsageRecord.reserved)
