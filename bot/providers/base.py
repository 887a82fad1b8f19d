"""The provider-neutral surface: requests, deltas, results, errors, the protocol."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from bot.types import ChatMessage, ModelInfo, SecretValue, Source, Usage, limits, redact

__all__ = ["ModelInfo", "Usage"]  # re-exported: providers return them


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach one source for one channel."""

    source: Source
    proxy_url: str | None = None
    api_key: SecretValue | None = None
    proxy_password: SecretValue | None = None
    # The URL was set by the operator (or as widely): the operator's CUSTOM_EXTRA_HEADERS,
    # which may hold a gateway's key, go to it. A channel's own URL gets none of them.
    operator_url: bool = False

    def credential(self) -> SecretValue | None:
        """The secret actually sent.

        As in SillyTavern: behind a reverse proxy the proxy password replaces the
        source's key, so a real OpenAI/Claude/Mistral key never goes to a third party.
        A custom endpoint uses its proxy password when set, else the custom key.
        """
        if self.source is Source.CUSTOM:
            return self.proxy_password or self.api_key
        if self.proxy_url:
            return self.proxy_password
        return self.api_key

    def secrets(self) -> tuple[str, ...]:
        """Every secret the channel holds for this endpoint, sent or not: what its errors
        and answers, and what is shown or kept in its channel, are cleaned of."""
        return tuple(v.reveal() for v in (self.api_key, self.proxy_password) if v)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    system_prompt: str | None = None
    # Sampling and other settings, already named as this source's body names them
    # (bot.fields maps each setting to its field per source).
    options: Mapping[str, Any] = field(default_factory=dict)
    multi_user: bool = False
    # The last message is an answer to be continued (not a question to answer).
    continue_answer: bool = False
    # Claude: the text its answer begins with, sent as a last assistant turn and not part
    # of the answer (SillyTavern's assistant prefill); macros already replaced.
    prefill: str = ""
    # Claude, continuing: the answer so far goes as the start of its own (on), or it is
    # asked to go on from it (off; SillyTavern's continue prefill).
    continue_by_prefill: bool = True
    # The bot's estimate of the tokens it sends, from the stored turns' own estimates:
    # usage an endpoint does not report is counted from it (never sent).
    input_estimate: int | None = None


class Delta(NamedTuple):
    """One piece of a streamed answer; every field optional. `usage` comes near the end
    (OpenAI's last chunk, Claude's message_delta; Claude's message_start has the input).

    A tuple, not a frozen dataclass: one is made for every chunk of every answer, and a
    frozen dataclass takes three times as long to make (~1 µs)."""

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


def joined(deltas: Sequence[Delta]) -> Delta:
    """Deltas that arrived in one read, as one: texts in order, and the newest usage
    counts and finish reason winning (what a reader of them one by one would keep)."""
    if len(deltas) == 1:
        return deltas[0]
    usage: Usage | None = None
    finish: str | None = None
    for delta in deltas:
        if delta.usage is not None:
            usage = usage.merged(delta.usage) if usage else delta.usage
        finish = delta.finish_reason or finish
    return Delta(
        "".join(d.text for d in deltas), "".join(d.reasoning for d in deltas), finish, usage
    )


@dataclass(frozen=True, slots=True)
class StatusResult:
    ok: bool
    reason: str
    models: tuple[ModelInfo, ...] = ()
    base_url: str = ""
    corrected: bool = False
    error_kind: str = ""  # ProviderError.kind of the failure, "" when ok
    step: str = ""  # the failure's ProviderError.step: what an admin does about it
    cut: bool = False  # the endpoint listed more models than `models` keeps
    # A failure an earlier check fetched, given again (LIST_REUSE_SECONDS): seconds since
    # that check, and until a check asks the endpoint anew. None: this check asked.
    checked_ago: float | None = None
    recheck_in: float = 0.0


class ProviderError(Exception):
    """A failure talking to a provider. `str(err)` is safe to show a user."""

    kind = "error"

    def __init__(self, message: str, *, step: str = "") -> None:
        # Last line of defence: no key shape reaches a user (the endpoint's own secrets are
        # taken out where the error is made, or by `without`; the log takes out the rest).
        message = redact(message, known=False)
        super().__init__(message)
        self.user_message = message
        # What an admin does about it ("Check the URL …"), said apart from what happened:
        # to anyone else it is said as an admin's task (connection.provider_error_text).
        self.step = redact(step, known=False)
        # The answer's text streamed before the failure: set by the streaming loop, which
        # alone knows it (_streaming.stream_deltas).
        self.partial = ""
        # The provider's own words, as the message quotes them (cleaned and cut): what
        # `names` reads, never the bot's advice around them.
        self.said = ""

    def without(self, secrets: Iterable[str]) -> ProviderError:
        """The same error with `secrets` (any length, any form) taken out of its message."""
        if secrets:
            self.user_message = redact(self.user_message, secrets, known=False)
            self.args = (self.user_message,)
            self.step = redact(self.step, secrets, known=False)
            self.said = redact(self.said, secrets, known=False)
        return self

    def names(self, name: str) -> bool:
        """Whether the provider's words name the request field `name` as a word of its
        own (`'max_tokens'`, `temperature:`; not inside `max_completion_tokens`)."""
        return _named(name).search(self.said) is not None


@functools.lru_cache(maxsize=64)
def _named(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", re.IGNORECASE)


class EndpointNotAllowed(ProviderError):
    kind = "endpoint_refused"


class AuthError(ProviderError):
    kind = "auth"


class NotFoundError(ProviderError):
    kind = "not_found"


class RateLimited(ProviderError):
    kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        quota: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.quota = quota  # out of credits: waiting will not help
        if quota:
            self.kind = "quota"


class Overloaded(ProviderError):
    kind = "overloaded"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # A 503's or a 529's Retry-After: when the server expects to take requests again.
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    kind = "timeout"

    def __init__(self, message: str, *, midway: bool = False) -> None:
        super().__init__(message)
        # The idle limit passed after the body began: whether any of the answer had come
        # by then only the streaming loop knows (_streaming.stream_deltas says which).
        self.midway = midway


class Unreachable(ProviderError):
    """No connection could be made (refused, DNS failure, reset before any answer)."""

    kind = "unreachable"


class StreamCut(ProviderError):
    kind = "stream_cut"


class EmptyStream(ProviderError):
    """An answer stream that ended with nothing in it (llama-cpp-python's way of refusing
    a request over its context window): asking again the same way would get the same."""

    kind = "empty_stream"


class MalformedResponse(ProviderError):
    """An answer the bot could not read. Made where it is read, which knows only what
    came; what to check is the source's (HTTPProvider adds it with `advise`)."""

    kind = "malformed"
    advised = False

    def advise(self, step: str) -> MalformedResponse:
        """The same error with what to check (`step`) said after what came, once."""
        if not self.advised:
            self.advised = True
            self.user_message = redact(f"{self.user_message} {step}", known=False)
            self.args = (self.user_message,)
        return self


class BadRequest(ProviderError):
    kind = "bad_request"


class ContextTooLong(BadRequest):
    """The request does not fit the model's context window."""

    kind = "context"


# Failures that may pass on their own: a call is tried again (within its limits), and a
# channel whose status check failed so checks again after a while instead of staying
# blocked. A rate limit that is a spent quota says kind "quota": neither.
TRANSIENT: tuple[type[ProviderError], ...] = (
    Overloaded,
    RateLimited,
    ProviderTimeout,
    StreamCut,
    Unreachable,
)
TRANSIENT_KINDS = frozenset(error.kind for error in TRANSIENT)


class Provider(Protocol):
    async def check_status(self) -> StatusResult: ...

    def secrets(self) -> tuple[str, ...]: ...

    async def list_models(self) -> list[ModelInfo]: ...

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[Delta, None]: ...


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Operator-level knobs for every provider call."""

    connect_timeout: float = limits.CONNECT_TIMEOUT
    first_byte_timeout: float = limits.FIRST_BYTE_TIMEOUT
    idle_timeout: float = limits.IDLE_TIMEOUT
    max_retries: int = limits.MAX_RETRIES
    retry_max_seconds: float = 20.0
    allow_private_endpoints: bool = False
    # Each streaming answer holds a connection for its whole length, so an endpoint
    # shared by many channels needs many; httpx's default of 100 would queue the rest.
    max_connections_per_endpoint: int = 1000
    # Seconds between reads of a streamed answer's trickle of tokens (0: each as it
    # comes). Platforms show an answer by edits a second apart, so reading ten times a
    # second loses nothing visible and saves most of the wakeups a stream costs.
    stream_read_pace: float = 0.1
    custom_extra_headers: dict[str, str] = field(default_factory=dict)
