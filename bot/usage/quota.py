"""Where the quotas meet the store: who may chat here, and charging a turn's estimate."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from bot.store import Store, StoreError
from bot.store.quotas import Guarded
from bot.types import Actor, ChannelRef
from bot.types.limits import Charge, Counts, LimitName
from bot.usage.access import OperatorAccess, admin_by_role, may_chat
from bot.usage.limits import InForce, Refusal, TurnCost, check, in_force

log = logging.getLogger("bot.usage")


@dataclass(frozen=True, slots=True)
class Gate:
    """The operator's part: default limits by name, and who may use the bot at all."""

    defaults: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    operator: OperatorAccess = field(default_factory=OperatorAccess)

    @classmethod
    def of(
        cls,
        defaults: Mapping[str, int] | None = None,
        *,
        servers: Iterable[str] = (),
        users: Iterable[str] = (),
        admins: Iterable[str] = (),
        matrix_level: int = 50,
    ) -> Gate:
        """From operator settings: limit name → value (unknown names are refused)."""
        known = {n.value for n in LimitName}
        given = dict(defaults or {})
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"unknown limit {unknown[0]!r}; known: {', '.join(sorted(known))}")
        operator = OperatorAccess.of(servers, users, admins, matrix_level)
        return cls(MappingProxyType(given), operator)

    def with_admins(self, admins: Iterable[str]) -> Gate:
        """The same gate with these operator admins too (who always may chat)."""
        op = self.operator
        more = OperatorAccess.of(admins=admins).admins  # as the lists are kept: trimmed
        return replace(self, operator=replace(op, admins=op.admins | more))


async def admin_here(store: Store, ref: ChannelRef, actor: Actor) -> Actor:
    """`actor`, an admin of this channel when one of their roles (as the front-end handed
    them in with this event) is a bot-admin role of its server (/access admin); never a
    server admin by it."""
    if actor.is_channel_admin or not actor.roles or not ref.has_server:
        return actor
    try:
        rules = await store.quotas.rules(ref)
    except StoreError as err:  # no grant read, none given: a member, as without one
        log.warning("could not read the bot-admin roles of %s: %s", ref, err)
        return actor
    return replace(actor, is_channel_admin=True) if admin_by_role(ref, actor, rules) else actor


async def allowed(store: Store, gate: Gate, ref: ChannelRef, actor: Actor) -> bool:
    return may_chat(ref, actor, await store.quotas.rules(ref), gate.operator)


async def limits_here(store: Store, gate: Gate, ref: ChannelRef) -> dict[LimitName, InForce]:
    return in_force(await store.quotas.limits(ref), gate.defaults, direct=ref.direct)


@dataclass(frozen=True, slots=True)
class Charged:
    """A turn let through: the usage row reserved for it (limits or not; its end settles it)."""

    reserved: int | None = None


async def charge(
    store: Store,
    gate: Gate,
    ref: ChannelRef,
    user_id: str,
    *,
    source: str,
    model: str,
    estimate: TurnCost | int,
    prefix: str = "/",
) -> Charged | Refusal:
    """Reserve a turn's cost if every limit here allows it, atomically (a number: what
    must fit and what is held alike)."""
    row_id, refusal = await store.quotas.charge(
        ref, *await _ask(store, gate, ref, user_id, source, model, estimate, prefix)
    )
    return refusal if refusal is not None else Charged(row_id)


async def guard(
    store: Store,
    gate: Gate,
    ref: ChannelRef,
    user_id: str,
    *,
    source: str,
    model: str,
    estimate: TurnCost | int,
    prefix: str = "/",
) -> Guarded[Refusal]:
    """The charge of a new question, to run inside the transaction that stores it
    (Store.add_messages(charge=…))."""
    return store.quotas.guard(
        ref, *await _ask(store, gate, ref, user_id, source, model, estimate, prefix)
    )


async def _ask(
    store: Store,
    gate: Gate,
    ref: ChannelRef,
    user_id: str,
    source: str,
    model: str,
    estimate: TurnCost | int,
    prefix: str,
) -> tuple[Charge, Callable[[Counts], Refusal | None] | None]:
    """The charge to ask for here and how to judge it (None: no limit holds, and it is
    only held: a crash before the answer is counted leaves the call on record)."""
    limits = await limits_here(store, gate, ref)
    cost = estimate if isinstance(estimate, TurnCost) else TurnCost(estimate, estimate)
    now = datetime.now(UTC)
    ask = Charge(
        now,
        ref.platform.value,
        ref.server_id,
        ref.channel_id,
        ref.thread_id,
        user_id,
        source,
        model,
        cost.reserved,
        count_recent=LimitName.MESSAGES_PER_USER_MINUTE in limits,
        answer=cost.answer,
    )

    def decide(counts: Counts) -> Refusal | None:
        return check(limits, counts, cost.needed, now, prefix, ref.has_server, ref.place)

    return ask, decide if limits else None


async def settle_stale(store: Store, answer_timeout: float, running: Collection[int] = ()) -> int:
    """Reserved rows older than any answer can run were left by a crash; `running`: those
    of this process's turns, left alone (a slow status check may come before the answer)."""
    now = datetime.now(UTC)
    older = timedelta(seconds=answer_timeout + 60)
    return await store.quotas.settle_stale(older, now, running)
