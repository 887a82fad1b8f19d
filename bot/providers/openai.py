"""OpenAI chat completions, and the base every OpenAI-compatible source shares."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

from bot.providers._errors import error_fields, stream_error, unknown_format
from bot.providers._provider import MODEL_LIST, MODELS_READ, Fixes, HTTPProvider
from bot.providers._sse import SSEEvent
from bot.providers._streaming import continuing, loads, stream_deltas
from bot.providers.base import BadRequest, ChatRequest, Delta, ModelInfo, Usage
from bot.providers.convert import Message, openai_messages
from bot.types import SOURCE_API, Role, Source
from bot.types.usage import reported_tokens

log = logging.getLogger("bot.providers")


class OpenAICompatible(HTTPProvider):
    """GET {base}/models and POST {base}/chat/completions with a Bearer key.

    Usage is asked for with `stream_options.include_usage` (OpenAI's opt-in; LiteLLM
    honours it, llama-cpp-python ignores it). An endpoint whose first answer refuses an
    unknown field (400/422 naming it, or saying extra/unrecognized) is asked once more
    without it; the outcome is remembered per base, so only its first turn pays twice.
    """

    name: ClassVar[str] = "OpenAI"
    default_base: ClassVar[str] = SOURCE_API[Source.OPENAI]
    ask_usage: ClassVar[bool] = True
    # Continues an answer by asking for more (no prefill), so the text comes back
    # without the space between the two (`continuation_gap`).
    instructed_continue: ClassVar[bool] = True

    def _credential_headers(self, credential: str) -> dict[str, str]:
        return {"authorization": f"Bearer {credential}"}

    def _messages(self, request: ChatRequest) -> list[Message]:
        return openai_messages(request)

    def _body(self, request: ChatRequest, ask_usage: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": self._messages(request),
            "stream": True,
        }
        if self.ask_usage if ask_usage is None else ask_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(request.options)
        return body

    async def _listed_at(self, base: str) -> list[ModelInfo]:
        spec = self.spec("GET", f"{base}/models", base, reading=MODEL_LIST)
        return parse_models(await self.get_json(spec), spec.where)

    def _request_body(self, base: str, request: ChatRequest, fixes: Fixes) -> dict[str, Any]:
        """The body as this base and model take it: stream_options unless the base (or
        this turn) found them refused, the length limit under the name the model took."""
        usage = self._t.usage_option.get(base) is not False and "stream_options" not in fixes
        body = self._body(request, self.ask_usage and usage)
        taken = fixes.get(_LENGTH) or self._t.length_field.get((base, request.model))
        if taken is not None and _LENGTH_FIELDS[taken] in body:
            body[taken] = body.pop(_LENGTH_FIELDS[taken])
        return body

    def _stream_at(
        self, base: str, request: ChatRequest, fixes: Fixes
    ) -> AsyncGenerator[Delta, None]:
        body = self._request_body(base, request, fixes)
        spec = self.spec("POST", f"{base}/chat/completions", base, body=body)
        deltas = stream_deltas(self._t, spec, lambda: ChunkDecoder(spec.where, spec.secrets))
        last = request.messages[-1] if request.messages else None
        if request.continue_answer and self.instructed_continue and last is not None:
            if last.role is Role.ASSISTANT:
                return continuing(deltas, last.content)
        return deltas

    def _began(self, base: str, request: ChatRequest, fixes: Fixes) -> None:
        if self.ask_usage and base not in self._t.usage_option:
            self._t.usage_option[base] = "stream_options" not in fixes
        if _LENGTH in fixes:
            self._t.remember_length_field((base, request.model), fixes[_LENGTH])

    def _adapted(self, base: str, request: ChatRequest, refused: BadRequest, fixes: Fixes) -> bool:
        """A refusal of what can be sent otherwise, each once a turn, learned once an
        answer begins: the answer's length limit under its other name, for this base and
        model (max_tokens ↔ max_completion_tokens: a deployment named `my-reasoner` may
        be an o-series model), when the provider's words name both; stream_options, on a
        base not yet known to take them, when its words say a field is unknown."""
        body = self._request_body(base, request, fixes)
        model = (base, request.model)
        sent = next((f for f in _LENGTH_FIELDS if f in body), None)
        if sent is not None and _LENGTH not in fixes and model not in self._t.length_field:
            other = _LENGTH_FIELDS[sent]
            if refused.names(sent) and refused.names(other):
                fixes[_LENGTH] = other
                log.info("%s refused %s for %s; asking with %s", base, sent, model[1], other)
                return True
        if "stream_options" in body and base not in self._t.usage_option:
            if _about_unknown_fields(refused.said):
                fixes["stream_options"] = ""
                log.info(
                    "%s refused stream_options (%s); usage there is estimated", base, refused.said
                )
                return True
        return False


class OpenAIProvider(OpenAICompatible):
    api = "OpenAI's API or an OpenAI-compatible one"

    def _body(self, request: ChatRequest, ask_usage: bool | None = None) -> dict[str, Any]:
        body = super()._body(request, ask_usage)
        # OpenAI's own API takes max_completion_tokens for every model (its o-series and
        # GPT-5 refuse max_tokens). Behind a reverse proxy is often a local server (the
        # seed's LM Studio, LocalAI, llama.cpp) that knows only max_tokens and ignores the
        # other: the answer's length was not limited. As SillyTavern does, a proxy gets
        # max_completion_tokens only for a model that needs it.
        if (
            self.endpoint.proxy_url
            and "max_completion_tokens" in body
            and "max_tokens" not in body
            and not _REASONING_MODEL.search(request.model.lower())
        ):
            body["max_tokens"] = body.pop("max_completion_tokens")
        return body


# OpenAI's models that refuse max_tokens: o1, o3, o4… and GPT-5, also as a router names
# them (`openai/o3-mini`) and fine-tuned (`ft:o4-mini-2025-04-16:org::id`).
_REASONING_MODEL = re.compile(r"(?:^|[/:])o[1-9]|gpt-5")


# The answer's length limit under its two names, each to the other: OpenAI's reasoning
# models refuse max_tokens, and servers that know only max_tokens refuse (or ignore) the
# newer name.
_LENGTH_FIELDS = {"max_tokens": "max_completion_tokens", "max_completion_tokens": "max_tokens"}
_LENGTH = "max_tokens"  # in a turn's fixes: the name the length limit goes under

_UNKNOWN_FIELD_WORDS = (
    "stream_options",
    "include_usage",
    "extra",
    "unrecognized",
    "unknown",
    "not permitted",
    "additional properties",
)


def _about_unknown_fields(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _UNKNOWN_FIELD_WORDS)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_models(body: Any, where: str) -> list[ModelInfo]:
    """`{"data": [{"id": …}, …]}` → ModelInfo, keeping the extras some servers add; a
    MODELS_READ at most (the rest would be dropped: not even read)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise unknown_format(where, "a model list", "no `data` list of models")
    models: list[ModelInfo] = []
    for item in itertools.islice(data, MODELS_READ):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        name = item.get("display_name") or item.get("name")
        context = next(
            (
                v
                for k in ("max_context_length", "context_length", "context_window")
                if (v := _int(item.get(k))) is not None
            ),
            None,
        )
        caps = item.get("capabilities")
        vision = caps.get("vision") if isinstance(caps, dict) else None
        models.append(
            ModelInfo(
                id=item["id"],
                display_name=name if isinstance(name, str) and name != item["id"] else None,
                context_length=context,
                vision=vision if isinstance(vision, bool) else None,
            )
        )
    return models


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt = reported_tokens(value.get("prompt_tokens"))
    completion = reported_tokens(value.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    details = value.get("completion_tokens_details")
    reasoning = (
        reported_tokens(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    )
    return Usage(prompt_tokens=prompt, completion_tokens=completion, reasoning_tokens=reasoning)


class ChunkDecoder:
    """`chat.completion.chunk` events (and a whole `chat.completion`) → deltas."""

    def __init__(self, where: str, secrets: tuple[str, ...] = ()) -> None:
        self._where = where
        self._secrets = secrets  # taken out of an error event before its text is cut
        self.done = False
        self.complete = False

    def on_event(self, event: SSEEvent) -> list[Delta]:
        if event.data[:1] != "{" and event.data.strip() == "[DONE]":
            self.done = True
            return []
        body = loads(event.data, self._where)
        if event.event == "error":
            self._raise_error(body)
        return self._deltas(body, "delta")

    def on_body(self, body: Any) -> list[Delta]:
        deltas = self._deltas(body, "message")
        self.complete = True
        return deltas

    def finish(self) -> list[Delta]:
        return []

    def _raise_error(self, body: Any) -> None:
        message, kind = error_fields(body)
        err = body.get("error") if isinstance(body, dict) else None
        code = _int(err.get("code")) if isinstance(err, dict) else None
        status = code if code is not None and 400 <= code < 600 else None
        raise stream_error(status, kind, message, where=self._where, secrets=self._secrets)

    def _deltas(self, body: Any, key: str) -> list[Delta]:
        if not isinstance(body, dict):
            raise unknown_format(self._where, "an answer", "a chunk that is not a JSON object")
        choices = body.get("choices")
        # OpenRouter's mid-answer error comes with a choice; vLLM's and Mistral's is
        # `{"object": "error", …}`; a proxy's may be an `error` with nothing in it.
        error = body.get("error")
        if error or isinstance(error, dict) or body.get("object") == "error":
            self._raise_error(body)
        if choices is None:
            choices = []
        if not isinstance(choices, list):
            raise unknown_format(self._where, "an answer", "`choices` is not a list")
        text = reasoning = ""
        finish: str | None = None
        if choices:
            choice = choices[0]
            if not isinstance(choice, dict):
                raise unknown_format(self._where, "an answer", "a choice that is not an object")
            part = choice.get(key)
            if not isinstance(part, dict):
                if key == "message" or part is not None:
                    raise unknown_format(self._where, "an answer", f"a choice without `{key}`")
                part = {}  # a final chunk may carry only finish_reason
            content = part.get("content")
            if isinstance(content, str):
                text = content  # a <think> block in it is split by the conversation layer
            refusal = part.get("refusal")
            if isinstance(refusal, str):
                # OpenAI's refusal ("I'm sorry, I can't help with that") comes here with
                # `content` null: it is what the model answered, shown and kept as such.
                text += refusal
            thought = part.get("reasoning_content") or part.get("reasoning")
            if isinstance(thought, str):
                reasoning = thought
            finish_reason = choice.get("finish_reason")
            if finish_reason == "error":  # the provider failed it (Mistral, OpenRouter)
                raise stream_error(None, "", "", where=self._where)
            if isinstance(finish_reason, str) and finish_reason:
                finish = finish_reason
                self.complete = True
        usage = _usage(body.get("usage"))
        if text or reasoning or finish or usage:
            return [Delta(text, reasoning, finish, usage)]
        return []
