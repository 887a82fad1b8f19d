"""What /usage shows: totals, the top users and models, tokens per day by model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from bot.types import UsageBucket
from bot.types.prices import PriceTable
from bot.types.text import shown_id
from bot.usage.periods import days

TOP = 5


# Why a call's tokens are the bot's estimate: an endpoint that reports none, or an
# answer stopped, or cut off by a crash (its reservation settled as it stood).
_ESTIMATED = "not reported: the endpoint sends no usage, or the answer was stopped or cut off"
_RESERVED = (
    "not ended yet (being answered, or cut off by a bot that stopped and not settled yet): "
    "counted at what they may use"
)


@dataclass(frozen=True, slots=True)
class Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    estimated_calls: int = 0
    error_calls: int = 0
    reserved_calls: int = 0
    cost: float | None = None  # USD, None without a price table (or no matching price)
    unpriced_tokens: int = 0  # tokens of models the price table does not name

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class UsageReport:
    since: date
    until: date
    totals: Totals
    top_users: tuple[tuple[str, Totals], ...] = ()
    top_models: tuple[tuple[str, Totals], ...] = ()
    # Every day of the period in order, each with tokens by model (models with any).
    per_day: tuple[tuple[date, dict[str, int]], ...] = ()
    models: tuple[str, ...] = field(default=())  # by tokens, most first


def _sum(buckets: Sequence[UsageBucket], prices: PriceTable) -> Totals:
    cost: float | None = None
    unpriced = 0
    for b in buckets:
        if prices:
            one = prices.cost(b.model, b.input_tokens, b.output_tokens)
            if one is None:
                unpriced += b.input_tokens + b.output_tokens
            else:
                cost = (cost or 0.0) + one
    return Totals(
        input_tokens=sum(b.input_tokens for b in buckets),
        output_tokens=sum(b.output_tokens for b in buckets),
        calls=sum(b.calls for b in buckets),
        estimated_calls=sum(b.estimated_calls for b in buckets),
        error_calls=sum(b.error_calls for b in buckets),
        reserved_calls=sum(b.reserved_calls for b in buckets),
        cost=cost,
        unpriced_tokens=unpriced,
    )


def _top(
    groups: dict[str, list[UsageBucket]], prices: PriceTable, limit: int
) -> tuple[tuple[str, Totals], ...]:
    summed = [(name, _sum(found, prices)) for name, found in groups.items()]
    summed.sort(key=lambda pair: (-pair[1].tokens, pair[0]))
    return tuple(summed[:limit])


def summarize(
    buckets: Sequence[UsageBucket],
    since: date,
    until: date,
    prices: PriceTable | None = None,
    top: int = TOP,
    users: Sequence[UsageBucket] | None = None,
) -> UsageReport:
    """The report of `buckets` (by day, user and model). `users`: the top users' own
    buckets, when `buckets` are summed per (day, model) alone (Store.usage_summary)."""
    prices = prices or PriceTable()
    by_user: dict[str, list[UsageBucket]] = defaultdict(list)
    by_model: dict[str, list[UsageBucket]] = defaultdict(list)
    by_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for b in buckets:
        by_model[b.model].append(b)
        by_day[b.day][b.model] += b.input_tokens + b.output_tokens
    for b in buckets if users is None else users:
        by_user[b.user_id].append(b)
    all_models = _top(by_model, prices, len(by_model))
    return UsageReport(
        since=since,
        until=until,
        totals=_sum(buckets, prices),
        top_users=_top(by_user, prices, top),
        top_models=all_models[:top],
        per_day=tuple((d, dict(by_day.get(d, {}))) for d in days(since, until)),
        models=tuple(name for name, _ in all_models),
    )


def _n(count: int) -> str:
    return f"{count:,}"


def _cost(t: Totals) -> str:
    if t.cost is None:
        return ""
    return f", ~${t.cost:,.4f}" if t.cost < 1 else f", ~${t.cost:,.2f}"


def _tokens(t: Totals, cost: bool = True) -> str:
    text = f"{_n(t.tokens)} tokens ({_n(t.input_tokens)} in, {_n(t.output_tokens)} out)"
    return text + _cost(t) if cost else text


def render(
    report: UsageReport,
    title: str,
    *,
    per_day_table: bool,
    users: bool = True,
    shown_user: Callable[[str], str] = str,
) -> str:
    """The report as text; `per_day_table` for front-ends that show no chart; `users`
    lists the top users (not for one person's own usage), each as `shown_user` writes
    their id."""
    t = report.totals
    if t.calls == 0:
        return f"{title}\nNo usage recorded."
    calls = f"{_n(t.calls)} call{'s' * (t.calls != 1)}"
    lines = [title, f"Total: {_tokens(t, cost=False)} in {calls}{_cost(t)}."]
    notes = []
    if t.estimated_calls:
        notes.append(f"{_n(t.estimated_calls)} estimated ({_ESTIMATED})")
    if t.error_calls:
        notes.append(f"{_n(t.error_calls)} ended with an error")
    if t.reserved_calls:
        notes.append(f"{_n(t.reserved_calls)} {_RESERVED}")
    if notes:
        lines.append("Of these, " + "; ".join(notes) + ".")
    if t.cost is not None and t.unpriced_tokens:
        lines.append(f"{_n(t.unpriced_tokens)} tokens are of models without a price.")
    if users:
        lines.append("Top users:")
        lines += [f"  {shown_user(user)}: {_tokens(u)}" for user, u in report.top_users]
    lines.append("Top models:")
    lines += [f"  {shown_id(model)}: {_tokens(m)}" for model, m in report.top_models]
    if per_day_table and len(report.per_day) > 1:
        width = max(len(_n(sum(d.values()))) for _, d in report.per_day)
        lines.append("Tokens per day:")
        for day, by_model in report.per_day:
            lines.append(f"  {day.isoformat()}  {_n(sum(by_model.values())).rjust(width)}")
    return "\n".join(lines)
