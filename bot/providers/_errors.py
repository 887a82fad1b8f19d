"""Turn provider answers and transport faults into typed, user-safe errors (no I/O but
the log line that keeps what was wrong in an answer the bot could not read)."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bot.providers.base import (
    AuthError,
    BadRequest,
    ContextTooLong,
    MalformedResponse,
    NotFoundError,
    Overloaded,
    ProviderError,
    RateLimited,
)
from bot.types import redact
from bot.types.text import seconds_in_words, untrusted_json

log = logging.getLogger("bot.providers")

_MAX_DETAIL = 300
_MAX_TEXT = 2000  # a plain-text body longer than this is no message to quote


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            pass
        else:
            if math.isfinite(seconds):
                return max(0.0, seconds)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # `inf` and `1e400` are floats too: no wait to keep to
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_fields(body: Any) -> tuple[str, str]:
    """(message, type-or-code) from the error shapes OpenAI, Anthropic, Mistral, FastAPI use."""
    if not isinstance(body, dict):
        return "", ""
    err = body.get("error")
    if isinstance(err, dict):
        message = err.get("message")
        kind = err.get("type") or err.get("code") or ""
        return (message if isinstance(message, str) else ""), str(kind)
    if isinstance(err, str):
        return err, str(body.get("type") or "")
    kind = str(body.get("type") or body.get("code") or "")
    message = body.get("message")
    if isinstance(message, dict):  # Mistral's 422: {"object": "error", "message": {"detail": …}}
        said, _ = error_fields(message)
        return said, kind
    for key in ("message", "detail"):
        value = body.get(key)
        if isinstance(value, str):
            return value, kind
        if isinstance(value, list) and value:  # cut where it is shown, after redaction
            return _validation_text(value), ""
    return "", ""


def _validation_text(items: list[Any]) -> str:
    """A validation error list (FastAPI's, pydantic's: Mistral, vLLM, TabbyAPI) as
    `temperature: Input should be less than or equal to 1`, one per problem: the field
    and what is wrong with it, without the value it echoes (`input`: the request's own
    text, perhaps) or the link to pydantic's page."""
    said: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc")
        where = ""
        if isinstance(loc, list):
            parts = [str(p) for p in loc if isinstance(p, str | int) and not isinstance(p, bool)]
            where = ".".join(parts[1:] if parts[:1] == ["body"] and len(parts) > 1 else parts)
        what = item.get("msg") if isinstance(item.get("msg"), str) else item.get("type")
        if isinstance(what, str) and what:
            said.append(f"{where}: {what}" if where else what)
    return "; ".join(said) if said else json.dumps(items, ensure_ascii=False)


def _said(message: str, secrets: Iterable[str]) -> str:
    """The provider's message as it is shown: on one line, without secrets, cut."""
    message = " ".join(message.split())
    if not message:
        return ""
    message = redact(message, secrets, known=False)
    if len(message) > _MAX_DETAIL:
        message = message[: _MAX_DETAIL - 1] + "…"
    return message


def _detail(said: str) -> str:
    if not said:
        return ""
    stop = "" if said.endswith((".", "!", "?", "…")) else "."  # not `"…key.".`
    return f' The provider said: "{said}"{stop}'


def body_detail(raw: bytes) -> tuple[str, str]:
    """(message, type) from an error body; plain text only when it is short and not HTML."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        return error_fields(untrusted_json(text))
    except ValueError:
        pass
    if not text or text.lstrip().startswith("<") or len(text) > _MAX_TEXT:
        return "", ""
    return text, ""


def error_from_status(
    status: int,
    raw: bytes,
    headers: Mapping[str, str],
    *,
    where: str,
    secrets: Iterable[str] = (),
    auth_hint: str = "",
    auth_step: str = "",
) -> ProviderError:
    """Map an HTTP error answer to the right ProviderError subclass."""
    message, kind = body_detail(raw)
    return error_from_kind(
        status,
        kind,
        message,
        where=where,
        secrets=secrets,
        auth_hint=auth_hint,
        auth_step=auth_step,
        retry_after=parse_retry_after(headers),
    )


def error_from_kind(
    status: int | None,
    kind: str,
    message: str,
    *,
    where: str,
    secrets: Iterable[str] = (),
    auth_hint: str = "",
    auth_step: str = "",
    retry_after: float | None = None,
) -> ProviderError:
    """Map an HTTP status and/or a provider error type (e.g. Anthropic's) to an error."""
    said = _said(message, secrets)
    err = _error_of(
        status, kind, message, where, _detail(said), (auth_hint, auth_step), retry_after
    )
    err.said = redact(said, known=False)  # as the message it is quoted in
    return err


def _error_of(
    status: int | None,
    kind: str,
    message: str,
    where: str,
    detail: str,
    auth: tuple[str, str],
    retry_after: float | None,
) -> ProviderError:
    code = f" (HTTP {status})" if status else ""
    kind = kind.lower()
    if status in (401, 403) or kind in (
        "authentication_error",
        "permission_error",
        "invalid_api_key",
    ):
        what = (
            "refused access"
            if status == 403 or kind == "permission_error"
            else "rejected the credentials"
        )
        # `auth_hint` names the credential the request sent, when the caller knows it;
        # `auth_step`, when none was sent, says to set one (an admin's task). Checking
        # the credential sent is an admin's task too: a step, which a member is told
        # only an admin can take (connection.with_step), never "Check the key used here".
        auth_hint, auth_step = auth
        said, step = auth_hint, auth_step
        if not auth_step:
            said, step = "", auth_hint.strip() or "Check the API key (or proxy password) set here."
        if what == "refused access":  # the key may be fine: a 403 says no to the request
            said += (
                " A 403 also comes from a key without access to this model, or from a "
                "firewall in front of the endpoint refusing the bot."
            )
        return AuthError(f"{where} {what}{code}.{detail}{said}", step=step)
    if status == 404 or kind == "not_found_error":
        return NotFoundError(
            # The layer that knows the platform's commands says how to list the models
            # (connection.provider_error_text).
            f"{where} says the model or path does not exist{code}.{detail} Check the model "
            "name and, for a custom endpoint, the URL.",
        )
    # Before the 5xx rule: llama-cpp-python says it with a 500.
    if _over_context(kind, message):
        return ContextTooLong(
            f"{where} says the conversation is too long for the model's context "
            f"window{code}.{detail}",
        )
    if kind in ("insufficient_quota", "billing_error"):
        return RateLimited(
            f"{where} says the account is out of quota or credits{code}.{detail} Add credits "
            "or use another key.",
            quota=True,
        )
    wait = f" Try again in {seconds_in_words(math.ceil(retry_after))}." if retry_after else ""
    if status == 429 or kind == "rate_limit_error":
        return RateLimited(
            f"{where} is rate-limiting requests{code}.{detail}{wait or ' Try again shortly.'}",
            retry_after=retry_after,
        )
    if (status is not None and (status >= 500 or status == 529)) or kind in (
        "overloaded_error",
        "api_error",
        "server_error",
    ):
        return Overloaded(
            f"{where} is overloaded or failing{code}.{detail}"
            f"{wait or ' Try again in a little while.'}",
            retry_after=retry_after,
        )
    if status in (400, 413, 422) or kind == "invalid_request_error":
        return BadRequest(
            f"{where} refused the request{code}.{detail} Check the model and the generation "
            "settings (temperature, max tokens, stop sequences).",
        )
    # A status or type no rule above knows (a 409, a 2xx body that is an error): no
    # advice of its own, so the general one (it said nothing a member could act on).
    return ProviderError(
        f"{where} answered with an error{code}.{detail} Try again; if it keeps failing, "
        "check the model and the endpoint's URL."
    )


def stream_error(
    status: int | None,
    kind: str,
    message: str,
    *,
    where: str,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """An error the provider reported inside its answer (an error event or chunk, a
    `finish_reason` of `error`). One with no type or code (a proxy's `{"error": {}}`,
    vLLM's `{"object": "error", …}`) was said as "overloaded or failing", which it never
    said: it is said as the error it reported, and asked again as an overload is."""
    if status or kind:
        return error_from_kind(status, kind, message, where=where, secrets=secrets)
    err = error_from_kind(None, "", message, where=where, secrets=secrets)
    if type(err) is not ProviderError:  # its words say which (the context is full)
        return err
    said = err.said
    reported = Overloaded(f"{where} reported an error while answering.{_detail(said)} Try again.")
    reported.said = said
    return reported


# How servers say a request is over the context window: OpenAI's code, llama.cpp's
# type, LiteLLM's exception name, Anthropic's "prompt is too long" and "exceed context
# limit", Mistral's, vLLM's and llama-cpp-python's words.
_OVER_CONTEXT = (
    "context_length_exceeded",
    "exceed_context_size",
    "contextwindowexceeded",
    "context window",
    "context length",
    "maximum context",
    "available context",
    "context limit",
    "prompt is too long",
)


def _over_context(kind: str, message: str) -> bool:
    said = f"{kind} {message}".lower()
    return any(words in said for words in _OVER_CONTEXT)


def unexpected_body(
    where: str, raw: bytes, expected: str, secrets: Iterable[str] = ()
) -> MalformedResponse:
    """A 2xx body that is not `expected` (JSON, an event stream): a web page (a proxy's
    login page, a captive portal) said as one, never shown; short plain text (a server
    that answers every path with `OK`, a proxy's `Unauthorized`) quoted, so the wrong URL
    shows (not "answered with an error", which it did not say). What to check is the
    source's (MalformedResponse.advise)."""
    text = raw.decode("utf-8-sig", errors="replace").strip()
    if text.startswith("<"):
        return malformed(where, f"a web page instead of {expected}")
    readable = len(text) <= _MAX_TEXT and all(c.isprintable() or c.isspace() for c in text)
    said = _said(text, secrets) if readable and "\ufffd" not in text else ""
    if not said:
        return malformed(where, f"not {expected}")
    err = MalformedResponse(f"{where} sent text instead of {expected}.{_detail(said)}")
    err.said = said
    return err


def malformed(where: str, what: str) -> MalformedResponse:
    """`where` sent what the bot could not read: `what` in words a member reads (a web
    page, too much of it). What to check is the source's (MalformedResponse.advise)."""
    return MalformedResponse(f"{where} sent a response the bot could not understand ({what}).")


def unknown_format(where: str, thing: str, detail: str) -> MalformedResponse:
    """`where` sent `thing` ("an answer", "a model list") in a format the bot does not
    know. What in it was wrong (`detail`: a field's name, `choices` is not a list) is for
    whoever reads the log, not for the members of a channel."""
    log.info("%s sent %s the bot could not read: %s", where, thing, redact(detail, known=False))
    return MalformedResponse(f"{where} sent {thing} in a format the bot does not know.")
