"""A provider call's usage row: the endpoint's own counts, else the bot's estimate.

Every call that may cost (a new question, regenerate, continue, retry) writes one row,
errors included; a failed write is logged and never fails the turn.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot.connection import PROXY_PASSWORD
from bot.conversation.budget import answer_limit, estimate_tokens
from bot.conversation.stream import Outcome
from bot.providers import ChatRequest, Endpoint
from bot.store import Store, StoreError, api_key_name
from bot.store.secrets import SecretUnreadable
from bot.types import ChannelRef, KeyScope, TurnState, Usage, UsageRecord, failure

log = logging.getLogger("bot.conversation")


def request_tokens(request: ChatRequest) -> int:
    """The bot's estimate of what a request sends: the one it was built with (its images
    counted by their size), else counted from its text."""
    if request.input_estimate is not None:
        return request.input_estimate
    system = estimate_tokens(request.system_prompt) if request.system_prompt else 0
    return system + sum(estimate_tokens(m.content) for m in request.messages)


def counted(
    reported: Usage | None, request: ChatRequest, new_text: str, *, answered: bool
) -> tuple[int, int, bool]:
    """(input, output, estimated): reported counts where there are any, else estimates.

    A call that ended in an error before any text and reported nothing is counted as 0,
    and not as estimated (nothing was): a refused or unreachable request is not billed.
    One stopped before any text (`answered`) counts the prompt it sent.
    """
    reported = reported or Usage()
    if reported.prompt_tokens is None and reported.completion_tokens is None and not answered:
        return 0, 0, False
    estimated = False
    prompt = reported.prompt_tokens
    if prompt is None:
        prompt, estimated = request_tokens(request), True
    completion = reported.completion_tokens
    if completion is None:
        completion = estimate_tokens(new_text) if new_text else 0
        estimated = True
        limit = answer_limit(request)
        if limit is not None:  # the endpoint stopped it there: no more can have been written
            completion = min(completion, limit)
    return prompt, completion, estimated


async def key_scope(store: Store, ref: ChannelRef, endpoint: Endpoint) -> KeyScope:
    """Where the secret sent with this endpoint's requests is stored."""
    credential = endpoint.credential()
    if credential is None:
        return KeyScope.NONE
    name = (
        PROXY_PASSWORD if credential is endpoint.proxy_password else api_key_name(endpoint.source)
    )
    try:
        origin = await store.secret_origin(ref, name)
    except (StoreError, SecretUnreadable):
        return KeyScope.NONE
    return KeyScope(origin[0]) if origin else KeyScope.NONE


async def record(
    store: Store,
    ref: ChannelRef,
    user_id: str,
    endpoint: Endpoint,
    request: ChatRequest,
    outcome: Outcome,
    *,
    start: str = "",
    reserved: int | None = None,
) -> UsageRecord | None:
    """Write the usage row of one answered (or failed) call (settle the row a quota
    charge `reserved` for it); None when it could not be."""
    new_text = outcome.answer[len(start) :] if outcome.answer.startswith(start) else outcome.answer
    # Stopped (or its question deleted) before any text: the endpoint had its prompt.
    stopped = outcome.state is TurnState.STOPPED and not outcome.failed
    answered = bool(new_text or outcome.thought) or stopped
    prompt, completion, estimated = counted(
        outcome.usage, request, new_text + outcome.thought, answered=answered
    )
    row = UsageRecord(
        at=datetime.now(UTC),
        platform=ref.platform.value,
        server_id=ref.server_id,
        channel_id=ref.channel_id,
        thread_id=ref.thread_id,
        user_id=user_id,
        source=endpoint.source.value,
        model=request.model,
        input_tokens=prompt,
        output_tokens=completion,
        estimated=estimated,
        error=outcome.failed,  # a stop or a length cap is no error
        key_scope=await key_scope(store, ref, endpoint),
    )
    try:
        await store.record_usage(row, reserved)
    except StoreError as err:
        log.warning("could not record usage in %s: %s", ref, err)
        return None
    except Exception as err:  # bookkeeping: the answer is shown and kept regardless
        log.error("could not record usage in %s: %s", ref, failure(err))
        return None
    return row
