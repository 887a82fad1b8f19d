"""A channel's connection: the endpoint its configuration means, and its status check.

Shared by the commands (/source, /proxy, /connect, /models external) and the
conversation engine, so both always agree on which URL and which secret a channel uses.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from bot.providers import (
    KEY_OR_PASSWORD_STEP,
    PASSWORD_STEP,
    TRANSIENT_KINDS,
    Endpoint,
    NotFoundError,
    ProviderError,
    ProviderHub,
    StatusResult,
)
from bot.store import PROXY_PASSWORD as PROXY_PASSWORD
from bot.store import Store, api_key_name
from bot.store.secrets import SecretUnreadable
from bot.types import (
    ChannelConfig,
    ChannelRef,
    PlaceName,
    Platform,
    SecretValue,
    Source,
    StatusCheck,
    redact,
)
from bot.types.secrets import SECRET_REGISTRY, holds_key, holds_secret
from bot.types.text import TextError, header_safe, unmarked

# What goes to the endpoint URL and nowhere else, so it stays with the server it was set
# for: `/proxy set` to another server, or `/proxy clear`, removes it (else whoever may
# set the URL could have a key another admin set sent to a server of theirs).
ENDPOINT_SECRETS = (PROXY_PASSWORD, api_key_name(Source.CUSTOM))

# A failure that may pass on its own (TRANSIENT_KINDS): chat checks again after this
# long instead of staying blocked until an admin acts.
RECHECK_AFTER = 60.0

# Routes people paste along with the base URL (from an API page or a curl example).
_ROUTES = ("/chat/completions", "/completions", "/messages", "/models", "/embeddings")
_API_VERSION = re.compile(r"(?<=/)V(?=\d+(?:/|$))")  # `/V1`: every API spells it `/v1`


class NotConnectable(Exception):
    """The channel's configuration can't reach a provider yet; says what to set.

    `str(err)` is for anyone (an admin does the step); `said_to(admin=True)` asks the
    admin reading it to do it themselves."""

    def __init__(self, step: str, admin_step: str) -> None:
        super().__init__(step)
        self.admin_step = admin_step

    def said_to(self, admin: bool) -> str:
        return self.admin_step if admin else str(self)


def endpoint_url(typed: str) -> tuple[str, str]:
    """The base URL in what someone pasted, and a note when a route was cut off.

    `http://host:1234/v1/chat/completions/` → `http://host:1234/v1`: the bot adds the
    route itself, and `/v1` is added later when the endpoint needs it. Also undone:
    Discord's `<…>` around a link, a sentence's trailing comma or full stop, doubled
    slashes, an upper-case scheme and an upper-case `/V1`.
    """
    url = unmarked(typed)  # Discord's link without a preview, or the usage line's <url>
    url = url.rstrip("/,;.")  # the end of a sentence it was copied from
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if sep:  # `HTTP://` means `http://`; `//v1` and `/V1` mean `/v1`
        if slash:
            path = _API_VERSION.sub("v", re.sub("/{2,}", "/", "/" + path))
        url = f"{scheme.lower()}{sep}{host}{path}".rstrip("/")
    lowered = url.lower()
    for route in _ROUTES:
        if lowered.endswith(route) and len(url) > len(route):
            base = url[: -len(route)].rstrip("/")
            if "://" in base and base.split("://", 1)[1]:
                return base, (
                    f"Cut the URL back to {base}: the bot adds the routes it needs "
                    "(/chat/completions, /models) itself."
                )
    return url, ""


async def endpoint_for(
    store: Store, ref: ChannelRef, config: ChannelConfig, prefix: str = "/"
) -> Endpoint:
    """Build the Endpoint for a channel; raises NotConnectable when something is missing.

    `prefix` is how commands start on the asker's platform (the messages name them).
    """
    missing = missing_url(config, prefix)
    if missing is not None:
        raise missing
    key_name = api_key_name(config.source)
    api_key = await _sent_secret(store, ref, config, key_name)
    password = await _sent_secret(store, ref, config, PROXY_PASSWORD) if config.proxy_url else None
    endpoint = Endpoint(
        source=config.source,
        proxy_url=config.resolved_url or config.proxy_url,
        api_key=api_key and api_key[1],
        proxy_password=password and password[1],
        operator_url=not withheld("operator", config),
    )
    sent = endpoint.credential()
    if sent is not None and not _sendable(sent):
        name, found = (
            (PROXY_PASSWORD, password) if sent is endpoint.proxy_password else (key_name, api_key)
        )
        raise _unsendable(ref, config, name, found[0] if found else "channel", prefix)
    # A reverse proxy may need no password at all (LM Studio, LocalAI): the seed's steps.
    if endpoint.credential() is None and not config.proxy_url:
        name = config.source.value
        key, proxy = key_step(ref, name, prefix), f"{prefix}proxy set <url>"
        place = ref.place
        raise NotConnectable(
            f"No API key for {name}. An admin sets one with {key}, or points this {place} "
            f"at a reverse proxy with {proxy}.",
            f"No API key for {name}. Set one with {key}, or point this {place} at a reverse "
            f"proxy with {proxy}.",
        )
    return endpoint


def missing_url(config: ChannelConfig, prefix: str) -> NotConnectable | None:
    """The custom source's first step, its endpoint URL, when not taken yet (said before
    anything that needs the endpoint: a chat, a model, its model list)."""
    if config.source is not Source.CUSTOM or config.proxy_url:
        return None
    example = "<url> (e.g. http://host:1234/v1)."
    return NotConnectable(
        f"The custom source needs an endpoint URL: an admin runs {prefix}proxy set {example}",
        f"The custom source needs an endpoint URL: run {prefix}proxy set {example}",
    )


def key_step(ref: ChannelRef, source: str, prefix: str) -> str:
    """The command that sets this channel's key. Matrix takes keys only in a direct chat
    (no private form): it names the room, so a group room is not pasted a key into."""
    if ref.platform is Platform.MATRIX:
        return f"{prefix}key set {source} <key> room:{ref.channel_id} (in a direct chat with me)"
    return f"{prefix}key set {source}"


def password_step(ref: ChannelRef, prefix: str) -> str:
    """The command that sets this channel's proxy password, as key_step says a key's."""
    if ref.platform is Platform.MATRIX:
        where = f"room:{ref.channel_id} (in a direct chat with me)"
        return f"{prefix}proxy password <password> {where}"
    return f"{prefix}proxy password"


def clear_step(ref: ChannelRef, command: str) -> str:
    """`command` (a clear, which any room takes) as typed here, and on Matrix for a group
    room also as a direct chat names the room (a `!settings room:` read there)."""
    if ref.platform is Platform.MATRIX and not ref.direct:
        return f"{command} (from a direct chat: {command} room:{ref.channel_id})"
    return command


# Who set something, narrowest first: a secret goes only to a URL set as widely or more
# narrowly than itself.
_REACH = {"channel": 0, "server": 1, "operator": 2, "default": 3}


def withheld(secret_from: str, config: ChannelConfig) -> bool:
    """Whether a secret set at `secret_from` is kept from this channel's endpoint URL: the
    URL was set more narrowly (a channel's own `/proxy set`, an admin's direct chat), so
    whoever set it did not set the secret. The operator's custom key or proxy password
    goes only to the operator's URL, a server's only to a URL the server's admins set;
    else anyone who may set a URL in one channel could send them to a server of theirs."""
    if not config.proxy_url:
        return False  # the source's own API, which no one here chose
    url_from = config.origins.get("proxy_url", "default")
    return _REACH.get(secret_from, 3) > _REACH.get(url_from, 3)


async def _sent_secret(
    store: Store, ref: ChannelRef, config: ChannelConfig, name: str
) -> tuple[str, SecretValue] | None:
    """(origin, value) of the effective secret `name`, unless it is withheld from the
    channel's URL; the value as `/key set` takes one now (versions before 2026-12-03 kept
    a key as pasted: quotes around it), or as stored when it cannot be sent at all."""
    found = await store.effective_secret(ref, name)
    if found is None or withheld(found[0], config):
        return None
    origin, value = found
    with contextlib.suppress(TextError):
        sent = header_safe(value.reveal(), "key")
        SECRET_REGISTRY.add(sent, stored=True)  # as it is sent, for the log (`"none"`: none)
        return origin, SecretValue(sent)
    return origin, value


def _sendable(secret: SecretValue) -> bool:
    """Whether an HTTP header can carry it (else httpx refuses the request, which read as
    a URL the bot cannot use)."""
    try:
        return header_safe(secret.reveal(), "key") == secret.reveal()
    except TextError:
        return False


def _unsendable(
    ref: ChannelRef, config: ChannelConfig, name: str, origin: str, prefix: str
) -> NotConnectable:
    """A stored secret no endpoint can be sent (never which character: anyone reads it)."""
    if name == PROXY_PASSWORD:
        what, step = "proxy password", password_step(ref, prefix)
    else:
        what, step = f"{config.source.value} key", key_step(ref, config.source.value, prefix)
    where = f"this {ref.place}"
    if origin == "server":
        where, step = "this server", f"{step} scope:server"
    said = (
        f"The {what} stored for {where} has a character that cannot be sent to an "
        "endpoint (an older version of the bot kept it)."
    )
    return NotConnectable(
        f"{said} An admin sets it again with {step}.", f"{said} Set it again with {step}."
    )


async def shown_here(store: Store, ref: ChannelRef, texts: Sequence[str]) -> list[str]:
    """`texts` to show or keep in this channel (a card's greetings, its system prompt):
    without the channel's keys or proxy password, in any form, nor anything key-shaped.
    A secret that cannot be read (a retired encryption key) cannot be in them either."""
    clean = await cleaner_here(store, ref)
    return [clean(text) for text in texts]


async def cleaner_here(
    store: Store, ref: ChannelRef, *, shapes: bool = True
) -> Callable[[str], str]:
    """shown_here as a function, the secrets read once: for the many texts of one file
    this channel is given (a preset's prompts; `shapes=False`: a card's every field,
    where ids and embedded images are long tokens a key shape would take, and what is
    left of key shapes came in the card, the same for whoever has it)."""
    secrets = await channel_secrets(store, ref)
    return lambda text: redact(text, secrets, shapes=shapes, known=False)


def _written(value: SecretValue) -> list[str]:
    """A secret as stored, and as it is sent (_sent_secret)."""
    forms = [value.reveal()]
    with contextlib.suppress(TextError):
        forms.append(header_safe(value.reveal(), "key"))
    return forms


async def channel_secrets(store: Store, ref: ChannelRef) -> list[str]:
    """Every secret the channel could send, whatever source it is for (a key set for
    another source is sent once /source picks it; a proxy password once a URL is set),
    its server's (also those the channel's own replace) and the operator's: those that
    can be read. A message that carries one is not sent, kept or shown."""
    return [form for value in await store.chain_secrets(ref) for form in _written(value)]


async def secret_check(store: Store, ref: ChannelRef) -> Callable[[str], bool]:
    """Whether a text must not be kept as a setting: it holds a provider key, or one of
    the channel's secrets (channel_secrets: its server's too, which a server-wide text
    goes with to every channel of the server) in any written form (it would be stored in
    the clear and sent with every request). The secrets are read once, for every text."""
    secrets = await channel_secrets(store, ref)
    return lambda text: holds_key(text) or holds_secret(text, secrets)


async def run_status_check(
    store: Store,
    hub: ProviderHub,
    ref: ChannelRef,
    prefix: str = "/",
    admin: bool = False,
    who: str = "",
) -> StatusResult:
    """Check the channel's endpoint now and remember the outcome (and a corrected URL).

    The outcome is remembered as what failed and its step apart, worded for whoever reads
    it later (status_said); the one returned is worded for its reader (`admin`: a missing
    step is theirs to take; `who`: who the admins who fix a failure are here)."""
    config = await store.effective_config(ref)
    missing: NotConnectable | None = None
    try:
        endpoint = await endpoint_for(store, ref, config, prefix)
        result = await hub.provider(endpoint).check_status()
    except NotConnectable as err:
        missing = err
        result = StatusResult(ok=False, reason=str(err), error_kind="config")
    except ProviderError as err:
        said = _what_failed(err, prefix)  # its step is said below, to whom it is
        result = StatusResult(ok=False, reason=said, error_kind=err.kind, step=err.step)
    except SecretUnreadable as err:  # what was set before the check stays set; this says why
        result = StatusResult(ok=False, reason=str(err), error_kind="unreadable")
    status = StatusCheck(
        ok=result.ok,
        reason=result.reason,
        checked_url=result.base_url,
        kind=result.error_kind,
        step=credential_step(result.step, ref, prefix),
    )
    # Kept only while the channel still has the endpoint and the status checked: a
    # check that ended after a /proxy set or another check says nothing of what is there.
    await store.record_status(
        ref, status, _resolved(config, result), if_still=partial(_unchanged, config)
    )
    if result.ok and result.models:  # what /models list and /model's choices offer
        await store.cache_models(ref, config, result.models)
    if missing is not None:
        return replace(result, reason=missing.said_to(admin))
    return replace(result, reason=status_said(status, prefix, admin=admin, who=who))


def credential_step(step: str, ref: ChannelRef | None, prefix: str) -> str:
    """A provider's step as an admin takes it here: one that says to set a credential the
    request did not send (the provider layer knows no commands) names the command that sets
    it on this platform (a Matrix group room by room:); any other step as it is. A line of
    its own beside the step said it twice; /models external said no command at all."""
    if ref is None or step not in (KEY_OR_PASSWORD_STEP, PASSWORD_STEP):
        return step
    said = f"Set a proxy password for it with {password_step(ref, prefix)}"
    if step == KEY_OR_PASSWORD_STEP:
        said += f", or a key with {key_step(ref, Source.CUSTOM.value, prefix)}"
    return said + "."


def _resolved(config: ChannelConfig, result: StatusResult) -> str | None:
    """The base URL to keep using: proven by this check, else the one proven before.

    A wrong-path answer means the kept base may be wrong: start from the typed URL again.
    """
    if not config.proxy_url:
        return None
    if result.ok or result.corrected:
        return result.base_url
    if result.error_kind in ("not_found", "malformed"):
        return None
    return config.resolved_url


def recheck_due(status: StatusCheck | None, now: datetime | None = None) -> bool:
    """A failed check whose cause may have passed, long enough ago to try again."""
    if status is None or status.ok or status.kind not in TRANSIENT_KINDS:
        return False
    if status.checked_at is None:
        return True
    now = now or datetime.now(UTC)
    return (now - status.checked_at).total_seconds() >= RECHECK_AFTER


def provider_error_text(
    err: ProviderError,
    prefix: str,
    *,
    admin: bool = False,
    who: str = "",
    ref: ChannelRef | None = None,
) -> str:
    """A provider's error as a person reads it, with the command that helps named as
    typed on their platform (the provider layer knows no commands); its step (`Check the
    URL …`) as their own to an `admin` (as typed in `ref`: credential_step), to anyone
    else as an admin's (`who`: who those are here, OperatorAccess.who_admins)."""
    step = credential_step(err.step, ref, prefix)
    return with_step(_what_failed(err, prefix), step, prefix, admin=admin, who=who)


def _what_failed(err: ProviderError, prefix: str) -> str:
    if isinstance(err, NotFoundError):
        return f"{err.user_message} {prefix}models list shows the models offered here."
    return err.user_message


def status_said(status: StatusCheck, prefix: str, *, admin: bool, who: str = "") -> str:
    """A kept status check's outcome as its reader reads it: its step as theirs to an
    `admin`, as an admin's to anyone else (`who`: who those are here)."""
    return with_step(status.reason, status.step, prefix, admin=admin, who=who)


def with_step(said: str, step: str, prefix: str, *, admin: bool, who: str = "") -> str:
    """What failed, then what an admin does about it: the `step` itself to an `admin`;
    to anyone else, that only an admin can (a member cannot check a server's URL)."""
    if not step:
        return said
    if admin:
        return f"{said} {step}"
    whom = f" ({who})" if who else ""
    return f"{said} Only an admin can fix that{whom}; {prefix}connect shows them what to check."


def blocked_reason(
    config: ChannelConfig, p: str, admin: bool = False, *, place: PlaceName, who: str = ""
) -> str | None:
    """Why a turn must not call the provider, as a message saying how to fix it: to an
    `admin`, as the step to take; to anyone else, as an admin's (`who`: who those are
    here). `place`: how it names the channel (ChannelRef.place)."""
    if not config.model:
        # The model comes after the URL: its list is the endpoint's, and `/models list`
        # would only send the asker on to a `/models external` with nowhere to ask.
        missing = missing_url(config, p)
        if missing is not None:
            return missing.said_to(admin)
        pick = "Pick" if admin else "An admin picks"
        return (
            f"No model is selected for this {place}. {pick} one with {p}model <id> "
            f"(see {p}models list)."
        )
    status = config.status
    if status is None or status.ok or config.bypass_status_check:
        return None
    if status.kind == "config":  # a setup step not taken: endpoint_for says it, as it is now
        return None
    said = status_said(status, p, admin=admin, who=who)
    if status.kind in TRANSIENT_KINDS:
        doer = "you" if admin else "an admin"
        return (
            f"The endpoint failed its last status check — {said}\n"
            f"I'll check again on the next message after {RECHECK_AFTER:.0f} s; {doer} can "
            f"run {p}connect now."
        )
    fix = (
        f"Fix that and run {p}connect, or run {p}connect bypass:on"
        if admin
        else f"An admin fixes that and runs {p}connect, or runs {p}connect bypass:on"
    )
    return (
        f"I can't answer: the last status check failed — {said}\n"
        f"{fix} if the endpoint works anyway."
    )


async def mark_working(
    store: Store, ref: ChannelRef, config: ChannelConfig, base_in_use: str | None
) -> None:
    """A chat turn went through: a failed status on record, or the URL kept, is out of date."""
    status = config.status
    resolved = base_in_use or config.resolved_url
    if (status is not None and not status.ok) or resolved != config.resolved_url:
        checked = base_in_use or (status.checked_url if status else "")
        ok = StatusCheck(True, "A chat answer came through.", checked_url=checked)
        # An answer that streamed while an admin moved the channel elsewhere (/proxy set,
        # /proxy clear, /source) or a check found it failing speaks for the old endpoint.
        await store.record_status(ref, ok, resolved, if_still=partial(_unchanged, config))


def _unchanged(before: ChannelConfig, now: ChannelConfig) -> bool:
    """Whether the channel's endpoint and its last status check are as `before` read them."""
    return (
        before.source is now.source
        and before.proxy_url == now.proxy_url
        and before.resolved_url == now.resolved_url
        and before.status == now.status
        and before.server_endpoint == now.server_endpoint  # its own key set meanwhile
    )
