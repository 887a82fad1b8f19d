"""/usage: tokens (and an estimated cost) for the asker, the channel or the server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.commands.spec import CommandContext
from bot.types import Platform, Reply, ReplyFile, UsageQuery, typed_as
from bot.types.limits import AccessKind
from bot.usage.access import shown_subject
from bot.usage.chart import chart_png
from bot.usage.periods import Period, describe, window
from bot.usage.report import TOP, render, summarize

SCOPES = ("me", "channel", "server")
PERIODS = tuple(p.value for p in Period)
DEFAULT_PERIOD = Period.WEEK


async def show_usage(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    """Admins see everyone's usage; others only their own (`me` is their default)."""
    p = ctx.prefix
    scope = args.get("scope") or ("channel" if ctx.is_admin else "me")
    period = Period(args.get("period") or DEFAULT_PERIOD)
    since, until = window(period, datetime.now(UTC).date())
    ref = ctx.ref
    query = UsageQuery(platform=ref.platform.value, since=since, until=until)
    own = ""
    if scope == "me":
        query = UsageQuery(query.platform, since, until, user_id=ctx.actor.id)
        what = (
            "Your usage"
            if ref.platform is Platform.CONSOLE
            else f"Your usage on {ref.platform.value.capitalize()}"
        )
    elif scope == "channel":
        everyone = ctx.is_admin
        query = UsageQuery(
            query.platform,
            since,
            until,
            server_id=ref.server_id,
            channel_id=ref.channel_id,
            user_id=None if everyone else ctx.actor.id,
        )
        place = ref.place
        what = place.whose("usage", capital=True) if everyone else f"Your usage in this {place}"
        own = "" if everyone else " (only admins see everyone's)"
    else:
        if not ref.has_server:
            return Reply(
                f"There is no server here; "
                f"{typed_as(('usage',), (('scope', ref.platform.place),), ref.platform, p)} shows "
                f"{ref.place.whose('usage')}.",
                ok=False,
            )
        everyone = ctx.is_server_admin
        query = UsageQuery(
            query.platform,
            since,
            until,
            server_id=ref.server_id,
            user_id=None if everyone else ctx.actor.id,
        )
        what = "This server's usage" if everyone else "Your usage on this server"
        own = "" if everyone else " (only server admins see everyone's)"
    users = query.user_id is None and scope != "me"
    per_day, top_users = await ctx.store.usage_summary(query, TOP if users else 0)
    report = summarize(per_day, since, until, ctx.prices, users=top_users)
    title = f"{what}, {describe(period)}{own}:"
    chart = ref.platform is not Platform.CONSOLE and report.totals.calls > 0
    text = render(
        report,
        title,
        per_day_table=not chart,
        users=users,
        shown_user=lambda user: shown_subject(AccessKind.USER, user, ref.platform),
    )
    if report.totals.cost is not None:
        text += "\nCosts are estimates from the operator's price table."
    if not chart:
        return Reply(text)
    span = since.isoformat() if since == until else f"{since.isoformat()} to {until.isoformat()}"
    png = chart_png(report, f"Tokens per day by model - {what}, {span} (UTC)")
    name = f"usage-{scope}-{period.value}.png"
    return Reply(text, file=ReplyFile(name, "image/png", png))
