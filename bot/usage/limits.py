"""Quotas, pure: the limit names, what each counts, parsing a value, which limits are in
force, whether a turn fits and when a refused one frees up, and the words for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from bot.types import PLACE, PlaceName, Platform, typed_as
from bot.types.limits import NO_LIMIT, Counts, LimitName, ScopeLimits
from bot.types.text import MINUSES, decimal_hint, parse_whole_number, quoted, seconds_in_words

MAX_VALUE = 10**12  # far beyond any real quota, and inside a BIGINT
# What must fit for a turn to go: its prompt and an answer this short (max_tokens when
# smaller). While it runs it holds its answer's whole room (TurnCost).
ANSWER_ESTIMATE = 256
MINUTE = timedelta(minutes=1)
OFF = "off"
DEFAULT: Literal["default"] = "default"
_CHANNEL = PlaceName(Platform.DISCORD)  # a server's channel
NOT_SENT = "Nothing was sent to the model."  # a refusal's last words


@dataclass(frozen=True, slots=True)
class LimitSpec:
    name: LimitName
    unit: Literal["messages", "tokens"]
    per: Literal["user", "channel", "server"]
    window: Literal["minute", "day"]
    server_only: bool  # a server's budget: set server-wide by server admins only
    help: str  # `{place}`: the platform's word; `{server}`: see `about`

    def about(self, place: PlaceName, has_server: bool) -> str:
        """The help as said where the limit is shown: a person's day counts on the whole
        server, or in this room / channel / DM where there is none (Matrix, a DM)."""
        server = "on this server" if has_server else f"in this {place}"
        return place.platform.said(self.help.replace("{server}", server).replace(PLACE, place.word))


SPECS: dict[LimitName, LimitSpec] = {
    spec.name: spec
    for spec in (
        LimitSpec(
            LimitName.MESSAGES_PER_USER_MINUTE,
            "messages",
            "user",
            "minute",
            False,
            "messages one person may send the model in any 60 seconds",
        ),
        LimitSpec(
            LimitName.TOKENS_PER_USER_DAY,
            "tokens",
            "user",
            "day",
            False,
            "tokens one person may spend a day (UTC) {server}",
        ),
        LimitSpec(
            LimitName.TOKENS_PER_CHANNEL_DAY,
            "tokens",
            "channel",
            "day",
            False,
            "tokens a {place} may spend a day (UTC), everyone together",
        ),
        LimitSpec(
            LimitName.TOKENS_PER_SERVER_DAY,
            "tokens",
            "server",
            "day",
            True,
            "tokens a whole server may spend a day (UTC), every channel together",
        ),
    )
}
NAMES = tuple(n.value for n in LimitName)


class LimitError(ValueError):
    """A value a person typed that is no limit; the message says what would be."""


def parse_value(
    text: str, platform: Platform = Platform.DISCORD
) -> int | Literal["default"] | None:
    """A whole number 0 … 10^12 (`1,000` and `1 000` read as 1000, as /params reads them:
    parse_whole_number), `off`, or `default`."""
    cleaned = text.strip().lower()
    if cleaned in NO_LIMIT:  # `off`, or the words an operator's LIMIT_* takes for it
        return None
    if cleaned == DEFAULT:
        return DEFAULT
    signed = cleaned[:1] in ("+", "-")  # a limit is never less than 0; no `+` before it
    number = None if signed else parse_whole_number(cleaned)
    if number is None or number > MAX_VALUE:
        # How to write it (`1.000`, `١٠٠`), when it is no sign or size that is wrong.
        negative = signed or cleaned[:1] in MINUSES  # `−5`: no hint to write it `-5`
        hint = "" if negative or number is not None else decimal_hint(cleaned, whole=True)
        raise LimitError(
            f"{quoted(text, 40)} is not a limit: give a whole number from 0 to {MAX_VALUE:,}, "
            f"`{OFF}` (no limit here) or `{DEFAULT}` ({platform.follows}).{hint}"
        )
    return number


@dataclass(frozen=True, slots=True)
class InForce:
    value: int
    origin: str  # channel, server or operator


_TIES = ("operator", "server", "channel")


def in_force(
    stored: ScopeLimits, defaults: Mapping[str, int], *, direct: bool = False
) -> dict[LimitName, InForce]:
    """Every limit that holds here: the channel's and the server's both hold (the smaller
    wins); the operator's default only where neither scope set the name (`off` counts).
    In a `direct` chat, whose one person is its admin, the operator's default holds too,
    whatever it set: else anyone could lift it there with `off`."""
    found: dict[LimitName, InForce] = {}
    for name in LimitName:
        set_here = [
            (value, origin)
            for origin, values in (("channel", stored.channel), ("server", stored.server))
            if name.value in values
            for value in (values[name.value],)
        ]
        default = defaults.get(name.value)
        if default is not None and (direct or not set_here):
            set_here.append((default, "operator"))
        held = [(v, o) for v, o in set_here if v is not None]
        if held:
            # A tie is said as the one that is hardest to lift (its holder alone raises
            # what holds): the operator's, then the server's.
            value, origin = min(held, key=lambda held: (held[0], _TIES.index(held[1])))
            found[name] = InForce(value, origin)
    return found


def used(name: LimitName, counts: Counts, limit: int) -> int:
    if name is LimitName.MESSAGES_PER_USER_MINUTE:
        return minute_used(counts, limit)
    if name is LimitName.TOKENS_PER_USER_DAY:
        return counts.user_tokens_today
    if name is LimitName.TOKENS_PER_CHANNEL_DAY:
        return counts.channel_tokens_today
    return counts.server_tokens_today


def minute_used(counts: Counts, limit: int, at: datetime | None = None) -> int:
    """The minute's messages as `limit` counts them (at `at`: those still in its minute).
    A question that failed (the endpoint refused it, or any error) is given back while a
    person's failed ones are no more than the limit, so a retry is not refused for it;
    past that they count, so a failing endpoint is asked at most twice the limit a minute."""
    recent, failed = counts.user_recent, counts.user_failed
    if at is not None:
        recent = tuple(t for t in recent if t + MINUTE > at)
        failed = tuple(t for t in failed if t + MINUTE > at)
    return len(recent) + max(0, len(failed) - limit)


def _minute_below(counts: Counts, limit: int, below: int, now: datetime) -> datetime:
    """When the minute's count (minute_used) drops below `below`."""
    for moment in sorted(t + MINUTE for t in (*counts.user_recent, *counts.user_failed)):
        if moment > now and minute_used(counts, limit, moment) < below:
            return moment
    return now


def held_now(name: LimitName, counts: Counts) -> int:
    """Of what `used` counts, what answers being written hold (their end replaces it)."""
    if name is LimitName.MESSAGES_PER_USER_MINUTE:
        return 0
    if name is LimitName.TOKENS_PER_USER_DAY:
        return counts.user_held
    if name is LimitName.TOKENS_PER_CHANNEL_DAY:
        return counts.channel_held
    return counts.server_held


def who_raises(
    name: LimitName,
    origin: str,
    prefix: str = "/",
    has_server: bool = True,
    place: PlaceName = _CHANNEL,
) -> str:
    """Who can raise the limit in force here, and with what: a server's budget, or a
    value set server-wide, only a server admin (a channel's own cannot go past it: the
    smaller holds); a channel's, or an operator default (which a channel's own value
    replaces), an admin of the channel; an operator default in a DM, only the operator."""
    if SPECS[name].server_only or origin == "server" or (origin == "operator" and place.direct):
        if not has_server:  # an operator default where there is no server to set one
            return f"only the bot's operator can change it (LIMIT_{name.value.upper()})"
        said = set_limit_as(place.named(name.value), "<value>", prefix, place.platform)
        return f"a server admin can raise it with {said} scope:server"
    said = set_limit_as(place.named(name.value), "<value>", prefix, place.platform)
    return f"an admin of this {place} can raise it with {said}"


def set_limit_as(shown: str, value: str, prefix: str, platform: Platform) -> str:
    """`/limits set <name> <value>` as `platform` takes it (typed_as: on Discord each
    option by name, `set` being the action's choice); `shown`: the name as said there."""
    values = (("action", "set"), ("name", shown), ("value", value))
    return typed_as(("limits",), values, platform, prefix)


def next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)


def frees_at(name: LimitName, limit: int, counts: Counts, now: datetime) -> datetime | None:
    """When the next turn fits again (None: not before an admin raises the limit)."""
    if limit <= 0:
        return None
    if name is LimitName.MESSAGES_PER_USER_MINUTE:
        return _minute_below(counts, limit, limit, now)
    return next_midnight(now)


@dataclass(frozen=True, slots=True)
class Refusal:
    name: LimitName
    limit: int
    text: str
    frees_at: datetime | None
    # Every limit that refused (the first is `name`): the text names each, so does the log.
    names: tuple[LimitName, ...] = ()

    @property
    def named(self) -> str:
        """The refusing limits as the log names them: `a and b`."""
        return " and ".join(n.value for n in self.names or (self.name,))


def check(
    limits: Mapping[LimitName, InForce],
    counts: Counts,
    estimate: int,
    now: datetime,
    prefix: str = "/",
    has_server: bool = True,
    place: PlaceName = _CHANNEL,
) -> Refusal | None:
    """None when a turn costing about `estimate` tokens fits every limit, else why not:
    every limit it does not fit, each with when it frees up, so a person waiting for the
    first is not refused by the next (commands named with `prefix`; `has_server`:
    whether this place has a server; `place`: how it is named, ChannelRef.place)."""
    refused: list[Refusal] = []
    for name, held in limits.items():
        spent = used(name, counts, held.value)
        cost = 1 if SPECS[name].unit == "messages" else estimate
        if spent + cost <= held.value:
            continue
        free = frees_at(name, held.value, counts, now)
        if SPECS[name].unit == "tokens" and cost > held.value:
            free = None  # this message alone needs more than the whole limit
        who = who_raises(name, held.origin, prefix, has_server, place)
        held_by = held_now(name, counts)
        failed = len(counts.user_failed) if SPECS[name].unit == "messages" else 0
        text = refusal_text(
            name,
            held.value,
            spent,
            cost,
            free,
            now,
            prefix,
            held=held_by,
            who=who,
            place=place,
            failed=failed,
        )
        refused.append(Refusal(name, held.value, text, free))
    if len(refused) < 2:
        return refused[0] if refused else None
    # The message goes once every one frees up: the last of them, or never by itself.
    frees = [r.frees_at for r in refused]
    free = None if None in frees else max(f for f in frees if f is not None)
    texts = [r.text.removesuffix(f" {NOT_SENT}") for r in refused]
    if free is None:
        stuck = [place.named(r.name.value) for r in refused if r.frees_at is None]
        does = "does" if len(stuck) == 1 else "do"
        last = f"Waiting will not do: {' and '.join(stuck)} {does} not free up by itself."
    else:
        every = "both" if len(refused) == 2 else f"all {len(refused)}"
        last = f"It can go once {every} have freed up, {when(free, now)}."
    text = "\n".join([*texts, f"{last} {NOT_SENT}"])
    names = tuple(r.name for r in refused)
    return Refusal(refused[0].name, refused[0].limit, text, free, names)


def _what(name: LimitName, limit: int, place: PlaceName) -> str:
    spec = SPECS[name]
    per = {"user": "per person", "channel": f"for this {place}", "server": "for this server"}
    window = "a minute" if spec.window == "minute" else "a day (UTC)"
    unit = spec.unit.removesuffix("s") if limit == 1 else spec.unit
    return f"{limit:,} {unit} {window} {per[spec.per]}"


def when(moment: datetime, now: datetime) -> str:
    """`at 14:03:20 UTC (in 42 s)`."""
    seconds = max(0, int((moment - now).total_seconds() + 0.999))
    clock = moment.strftime("%H:%M:%S" if seconds < 3600 else "%H:%M")
    return f"at {clock} UTC (in {seconds_in_words(seconds)})"


def refusal_text(
    name: LimitName,
    limit: int,
    spent: int,
    cost: int,
    free: datetime | None,
    now: datetime,
    prefix: str = "/",
    *,
    held: int = 0,
    who: str | None = None,
    place: PlaceName = _CHANNEL,
    failed: int = 0,
) -> str:
    """Which limit refused, what is used (and of it `held` by answers being written, or
    of the minute's questions `failed`), when it frees up, and `who` can raise it
    (who_raises)."""
    head = f"Limit reached: {place.named(name.value)} ({_what(name, limit, place)})"
    tokens = SPECS[name].unit == "tokens"
    if failed > limit:  # else they were given back, and are not what refused it
        head += f"; {_failed(failed, limit)}"
    if tokens:
        # What answers still being written hold counts until they end (TurnCost).
        spent_now = f"{spent - held:,} used and {held:,} held by answers being written"
        head += (
            f"; {spent_now if held > 0 else f'{spent:,} used'}, this message needs about {cost:,}"
        )
    who = who or who_raises(name, "channel", prefix, place=place)
    if free is None:
        tail = f"It does not free up by itself: {who}."
        if tokens and cost > limit > 0:
            # Each message reserves room for its answer too (ANSWER_ESTIMATE at most): a
            # limit below that refuses every message, however short.
            # /reset is an admin's: a member is not sent to a command refused to them.
            tail = (
                "This message alone needs more than that (the conversation so far, the "
                "prompts or character card, and room for its answer count too): "
                f"shorten it, or an admin of this {place} can start afresh with {prefix}reset; "
                f"{who}."
            )
        return f"{head}. {tail} {NOT_SENT}"
    sooner = ""
    if tokens and held > 0:
        sooner = " (or sooner, if the answers being written use less than they hold)"
    return f"{head}. It frees up {when(free, now)}{sooner}; {who}. {NOT_SENT}"


def _failed(failed: int, limit: int) -> str:
    questions = "question" if failed == 1 else "questions"
    return f"{failed:,} {questions} of the last minute failed, which count past {limit:,}"


def allowance(
    limits: Mapping[LimitName, InForce],
    counts: Counts,
    now: datetime,
    place: PlaceName = _CHANNEL,
) -> list[str]:
    """What the asker has left under each limit, one line each (`place`: ChannelRef.place)."""
    lines = []
    for name, held in limits.items():
        spent = used(name, counts, held.value)
        left = max(0, held.value - spent)
        spec = SPECS[name]
        per = place if spec.per == "channel" else spec.per
        who = "you" if spec.per == "user" else f"this {per}"
        if held.value == 0:  # "0 of 0 left" read as a count run down; 0 allows nothing
            lines.append(f"{place.named(name.value)}: none allowed for {who} (the limit is 0)")
            continue
        line = f"{place.named(name.value)}: {left:,} of {held.value:,} {spec.unit} left for {who}"
        writing = held_now(name, counts)
        if writing > 0:  # counted as used; their end counts what they used instead
            line += f" ({writing:,} of what is used held by answers being written until they end)"
        if spec.unit == "messages" and counts.user_failed:
            line += f" ({_failed(len(counts.user_failed), held.value)})"
        if left == 0:
            free = frees_at(name, held.value, counts, now)
            line += f", frees up {when(free, now)}" if free else ""
        elif spent > 0 and name is LimitName.MESSAGES_PER_USER_MINUTE:
            # Room now: say when the oldest of the minute's messages gives one back.
            back = _minute_below(counts, held.value, spent, now)
            line += f", one more frees up {when(back, now)}"
        elif spent > 0:  # counting: a day's limit refills whole at midnight (UTC)
            line += f", refills {when(next_midnight(now), now)}"
        lines.append(line)
    return lines


@dataclass(frozen=True, slots=True)
class TurnCost:
    """What a turn is charged before the model answers.

    It goes when its prompt and a short answer (`needed`) fit what is left, and holds
    its prompt and its answer's whole room (`reserved`, max_tokens or what the bot
    budgets for an answer) until the real usage replaces it: so turns running at once
    each count what they may spend, and together they overshoot a limit by one answer's
    room at most (a model writing past max_tokens aside), not by one answer each."""

    needed: int
    reserved: int
    answer: int = 0  # of `reserved`, the answer's room (a crash's row counts it as output)


def turn_cost(prompt_tokens: int, answer_room: int) -> TurnCost:
    prompt, room = max(0, prompt_tokens), max(1, answer_room)
    return TurnCost(prompt + min(room, ANSWER_ESTIMATE), prompt + room, room)
