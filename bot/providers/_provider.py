"""What every source shares: the base URL (and its `/v1` fix), credentials, status check."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any, ClassVar

from bot.providers._http import RequestSpec, Transport
from bot.providers.base import (
    AuthError,
    BadRequest,
    ChatRequest,
    Delta,
    Endpoint,
    MalformedResponse,
    ModelInfo,
    NotFoundError,
    ProviderError,
    StatusResult,
)
from bot.types import Source, redact
from bot.types.secrets import HELD_SECRET_CHARS, holds_key, names_a_credential
from bot.types.text import MODEL_ID_CHARS, choosable_model_id

log = logging.getLogger("bot.providers")

# The most models a list keeps. A big router lists a few hundred; a list can hold a
# million ids within the body cap, and every channel's copy is stored, read back on
# turns and searched for /model's suggestions and choices, on the event loop.
MAX_MODELS = 5000
# An authentication error's step when the request sent no credential: an admin sets one.
# The layer that knows the platform's commands names the one to type (connection).
KEY_OR_PASSWORD_STEP = "Set a key or a proxy password for it."  # custom: either does
PASSWORD_STEP = "Set a proxy password for it."  # a source behind a proxy URL
# The most entries a parser reads of a list: room for the ids left out (repeated, not
# choosable, holding a key) before MAX_MODELS are kept; the rest are not even read.
MODELS_READ = 2 * MAX_MODELS
# What a turn's refusals changed in what it sends (a field → its new name, or "": left
# out); learned by the provider once an answer began.
Fixes = dict[str, str]


def maybe_cut(models: Sequence[ModelInfo]) -> bool:
    """Whether a kept model list may stop short of the endpoint's (it holds as many as
    are kept): an id it lacks may be listed there all the same."""
    return len(models) >= MAX_MODELS


# What a models request's answer is, as a timeout or a cut in it says.
MODEL_LIST = "the model list"

# What a server answers when the URL lacks the API prefix: 404, or a web page / other non-JSON.
_WRONG_PATH = (NotFoundError, MalformedResponse)


class HTTPProvider:
    """A source reached over HTTP at a base URL: its own, or a proxy / custom URL.

    A URL someone typed may lack the `/v1` the API lives under (SillyTavern's hint);
    when the URL as typed answers like a wrong path and `{url}/v1` answers like the
    API (models, or an authentication error that proves the path), `/v1` is used.
    """

    name: ClassVar[str]
    default_base: ClassVar[str]
    auth_hint: ClassVar[str] = ""
    # The API a proxy URL must lead to for this source, as an answer it sent that the bot
    # could not read says it (`_format_advice`).
    api: ClassVar[str] = "an OpenAI-compatible API"

    def __init__(self, transport: Transport, endpoint: Endpoint) -> None:
        self._t = transport
        self.endpoint = endpoint

    # -- what each source says ------------------------------------------------------------

    def _credential_headers(self, credential: str) -> dict[str, str]:
        raise NotImplementedError

    def _fixed_headers(self) -> dict[str, str]:
        return {}

    def secrets(self) -> tuple[str, ...]:
        """Every secret this provider sends or holds (the endpoint's, and any sent in a
        header): what its errors and answers are cleaned of."""
        sent = self._fixed_headers().items()
        held = (v for k, v in sent if names_a_credential(k) and len(v) >= HELD_SECRET_CHARS)
        return self.endpoint.secrets() + tuple(held)

    async def _listed_at(self, base: str) -> list[ModelInfo]:
        """The models `base` lists, as it lists them."""
        raise NotImplementedError

    def _stream_at(
        self, base: str, request: ChatRequest, fixes: Fixes
    ) -> AsyncGenerator[Delta, None]:
        """The answer to `request` at `base`, sent with what this turn's refusals changed
        (`fixes`, from `_adapted`)."""
        raise NotImplementedError

    # -- shared pieces ----------------------------------------------------------------------

    async def _typed(self) -> str:
        """The base as configured: the checked proxy / custom URL, or the source's own."""
        if self.endpoint.proxy_url:
            return await self._t.checked(self.endpoint.proxy_url)
        if self.endpoint.source is Source.CUSTOM:
            raise ProviderError(
                "No URL is set for the custom endpoint. Set one (for example "
                "http://host:port/v1), then try again."
            )
        return self.default_base

    def _where(self, base: str) -> str:
        if self.endpoint.source is Source.CUSTOM:
            return f"The endpoint at {base}"
        return f"The proxy at {base}" if self.endpoint.proxy_url else self.name

    def _headers(self) -> dict[str, str]:
        headers = self._fixed_headers()
        credential = self.endpoint.credential()
        if credential:
            headers.update(self._credential_headers(credential.reveal()))
        elif not self.endpoint.proxy_url:
            raise AuthError(
                f"No API key is set for {self.name}.",
                step="Set the channel's key, then try again.",
            )
        # Behind a reverse proxy no key is sent unless a proxy password is set (the
        # seed's steps for LM Studio / LocalAI), and never the source's own key.
        return headers

    def spec(
        self,
        method: str,
        url: str,
        base: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        reading: str = "the answer",
    ) -> RequestSpec:
        """A request to this endpoint, with its headers, secrets and how to name it (and
        what its answer is: `reading`)."""
        return RequestSpec(
            method=method,
            url=url,
            where=self._where(base),
            headers=self._headers(),
            secrets=self.secrets(),
            body=body,
            params=params,
            auth_hint=self._auth_advice(),
            auth_step=self._auth_step(),
            reach_hint=self._reach_advice(),
            base=base,
            reading=reading,
        )

    def _reach_advice(self) -> str:
        if self.endpoint.source is Source.CUSTOM or self.endpoint.proxy_url:
            return "Check the URL and that the server is running"
        return f"Check that this machine reaches {self.name} (a firewall may block it)"

    def _format_advice(self) -> str:
        """What an answer the bot could not read says to do: check that the URL leads to
        this source's API; the source's own API (no URL set) is asked again, and its
        operator reads in the log what came (unknown_format)."""
        if self.endpoint.source is Source.CUSTOM:
            return f"Check that the URL points at {self.api}."
        if self.endpoint.proxy_url:
            return f"Check that the proxy URL leads to {self.api}."
        return (
            "Try again in a little while; if it keeps failing, the bot's operator finds "
            "what was wrong in its log."
        )

    def _advised(self, err: MalformedResponse) -> MalformedResponse:
        return err.advise(self._format_advice())

    def _auth_advice(self) -> str:
        """What an authentication error says to check: the credential that was sent."""
        e = self.endpoint
        sent = e.credential()
        if sent is None and e.source is Source.CUSTOM:
            return " It wants a key or proxy password, and none is set here."
        if sent is None:
            never = f" (the {e.source.value} key is never sent to a proxy)" if e.api_key else ""
            return f" It wants a proxy password, and none is set here{never}."
        if sent is e.proxy_password:
            if e.source is not Source.CUSTOM:
                return (
                    " Check the proxy password used here: behind a proxy it is sent, "
                    f"never the {e.source.value} key."
                )
            if e.api_key:
                return (
                    " Check the proxy password used here: while one is set, it is "
                    "sent instead of the key."
                )
            return " Check the proxy password used here."
        # The hint is about the source's own keys (behind a proxy a password is sent).
        return f" Check the {e.source.value} key used here.{self.auth_hint}"

    def _auth_step(self) -> str:
        """What an admin does about an authentication error when no credential was sent
        (said to anyone else as an admin's task: connection.with_step)."""
        e = self.endpoint
        if e.credential() is not None:
            return ""
        return KEY_OR_PASSWORD_STEP if e.source is Source.CUSTOM else PASSWORD_STEP

    async def get_json(self, spec: RequestSpec) -> Any:
        """One GET (model list, a page of it) with the bounded retry rule."""
        return await self._t.retrying(spec.where, lambda: self._t.request_json(spec))

    async def _models_at(self, base: str) -> tuple[list[ModelInfo], bool]:
        """The models at `base` that a channel could choose, each once: an id that `/model`
        would refuse (too long, invisible characters) is left out, not echoed in every
        list; so is one holding a key (an endpoint echoing the one it was sent), which
        every member could read in /models and the model cache would keep in clear.
        Asked again within LIST_REUSE_SECONDS with the same credentials (a flood of
        status checks): the answer the one before got, not another request. With it,
        whether the list went on past what was kept (`cut`)."""
        try:
            headers = sorted(self._headers().items())
        except ProviderError:  # nothing is sent: said at once, as it would be
            models, cut = await self._fetch_models_at(base)
            return list(models), cut
        # A digest, not the credentials: the key outlives the request.
        sent = json.dumps([type(self).__name__, base, headers, sorted(self.secrets())])
        key = hashlib.sha256(sent.encode()).hexdigest()
        models, cut = await self._t.shared(key, lambda: self._fetch_models_at(base))
        return list(models), cut

    async def _fetch_models_at(self, base: str) -> tuple[tuple[ModelInfo, ...], bool]:
        secrets = [s for s in self.secrets() if len(s) >= HELD_SECRET_CHARS]
        models: dict[str, ModelInfo] = {}
        held = 0
        try:
            listed = await self._listed_at(base)
        except MalformedResponse as err:
            self._advised(err)
            raise
        # A parser stops at MODELS_READ entries: what came after them was never read.
        cut = len(listed) >= MODELS_READ
        for model in listed:
            if model.id in models or not choosable_model_id(model.id):
                continue
            cleaned = redact(model.id, secrets, shapes=False, known=False)
            if holds_key(model.id) or cleaned != model.id:
                held += 1
                continue
            if len(models) == MAX_MODELS:  # one more than is kept: the list is cut here
                cut = True
                log.warning(
                    "%s listed more than %d models: the first %d are kept",
                    self._where(base),
                    MAX_MODELS,
                    MAX_MODELS,
                )
                break
            name = model.display_name
            if name is not None and len(name) > MODEL_ID_CHARS:  # never shown: not kept
                model = replace(model, display_name=None)
            models[model.id] = model
        if held:
            log.warning("%s listed %d model id(s) holding a key: left out", self._where(base), held)
        return tuple(models.values()), cut

    def _known_base(self, typed: str) -> str:
        return self._t.corrected.get(typed, typed)

    async def _probe_v1(self, typed: str) -> tuple[list[ModelInfo], bool] | None:
        """Models at `{typed}/v1` (and whether cut) when that answers like the API where
        `typed` did not.

        An authentication error there proves `/v1` is the right path too: it is kept,
        and the error (the key is missing or wrong) is what the caller reports.
        """
        if not self.endpoint.proxy_url or typed.endswith("/v1") or typed in self._t.corrected:
            return None
        fixed = f"{typed}/v1"
        try:
            models = await self._models_at(fixed)
        except AuthError:
            self._remember(typed, fixed)
            raise
        except ProviderError:
            return None
        self._remember(typed, fixed)
        return models

    def _remember(self, typed: str, fixed: str) -> None:
        self._t.corrected[typed] = fixed
        log.info("%s works with /v1 added; using %s", typed, fixed)

    # -- the Provider protocol -------------------------------------------------------------

    async def check_status(self) -> StatusResult:
        typed = ""
        asked = time.monotonic()
        try:
            typed = await self._typed()
            base = self._known_base(typed)
            try:
                models, cut = await self._models_at(base)
            except _WRONG_PATH:
                found = await self._probe_v1(typed)
                if found is None:
                    raise
                base, (models, cut) = self._known_base(typed), found
        except ProviderError as err:
            base = self._known_base(typed) if typed else ""
            reason = str(err)
            if isinstance(err, NotFoundError) and base:  # no model is named in a check
                v1 = "" if base.endswith("/v1") else " (many endpoints need /v1 at its end)"
                reason = f"{self._where(base)} has no model list at {base}/models (HTTP 404). "
                reason += f"Check the URL{v1}."
            # Another check's failure, not asked anew: said, or a fix made since looks
            # like it did nothing.
            ago, again = self._t.reused(err, asked) or (None, 0.0)
            return StatusResult(
                ok=False,
                reason=reason,
                base_url=base,
                corrected=bool(typed) and base != typed,
                error_kind=err.kind,
                step=err.step,
                checked_ago=ago,
                recheck_in=again,
            )
        count = len(models)
        reason = (
            f"{self._where(base)} answered the status check and lists {count:,} "
            f"model{'s' * (count != 1)}."
        )
        if cut:
            reason = (
                f"{self._where(base)} answered the status check. Its list of models is "
                f"longer than the bot keeps: the first {count:,} are kept; any other id "
                "can be typed."
            )
        if base != typed:
            reason = (
                f"{typed} did not answer like the API, but {base} does, so the bot uses "
                f"{base}. {reason}"
            )
        return StatusResult(
            ok=True,
            reason=reason,
            models=tuple(models),
            base_url=base,
            corrected=base != typed,
            cut=cut,
        )

    async def list_models(self) -> list[ModelInfo]:
        typed = await self._typed()
        try:
            return (await self._models_at(self._known_base(typed)))[0]
        except _WRONG_PATH:
            found = await self._probe_v1(typed)
            if found is None:
                raise
            return found[0]

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """The answer's stream. Before anything came: a path that did not answer like the
        API is probed with `/v1` once, and a refusal the provider can adapt to (`_adapted`)
        is asked again; nothing that was shown is asked twice."""
        typed = await self._typed()
        probed = False
        fixes: Fixes = {}
        while True:
            base = self._known_base(typed)
            started = False
            try:
                async with aclosing(self._stream_at(base, request, fixes)) as deltas:
                    async for delta in deltas:
                        if not started:
                            started = True
                            self._began(base, request, fixes)
                        yield delta
                return
            except _WRONG_PATH as err:
                if started or probed or await self._probe_v1(typed) is None:
                    if isinstance(err, MalformedResponse):
                        self._advised(err)
                    raise
                probed = True
            except BadRequest as err:
                if started or not self._adapted(base, request, err, fixes):
                    raise

    def _began(self, base: str, request: ChatRequest, fixes: Fixes) -> None:
        """An answer to `request` at `base` began: what it was sent with was taken."""

    def _adapted(self, base: str, request: ChatRequest, refused: BadRequest, fixes: Fixes) -> bool:
        """Whether `refused` (before anything came) names what the next ask can send
        otherwise: then that is noted in `fixes` (each fix once a turn) and it is asked
        again."""
        return False
