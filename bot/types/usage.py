"""What a provider call used, and the stored usage records built from it. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one provider call used as the endpoint reported them (None: not reported)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def merged(self, newer: Usage) -> Usage:
        """This report updated by a later one (Claude's counts are cumulative)."""
        return Usage(
            newer.prompt_tokens if newer.prompt_tokens is not None else self.prompt_tokens,
            newer.completion_tokens
            if newer.completion_tokens is not None
            else self.completion_tokens,
        )


class KeyScope(StrEnum):
    """Whose secret a call was sent with: where it was stored (never the secret)."""

    CHANNEL = "channel"
    SERVER = "server"
    OPERATOR = "operator"
    NONE = "none"  # a passwordless endpoint or reverse proxy


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

    @property
    def day(self) -> date:
        return self.at.date()

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, object]:
        """Plain values in a fixed order (export formats)."""
        return {
            "time": self.at.isoformat(),
            "platform": self.platform,
            "server_id": self.server_id,
            "channel_id": self.channel_id,
            "thread_id": self.thread_id,
            "user_id": self.user_id,
            "source": self.source,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "estimated": self.estimated,
            "error": self.error,
            "key_scope": self.key_scope.value,
        }


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
    estimated_calls: int = 0
    error_calls: int = 0
