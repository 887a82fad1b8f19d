"""Which UTC days a /usage period covers."""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum


class Period(StrEnum):
    DAY = "day"  # today (UTC)
    WEEK = "week"  # the last 7 days, today included
    MONTH = "month"  # the last 30 days, today included


_DAYS = {Period.DAY: 1, Period.WEEK: 7, Period.MONTH: 30}


def window(period: Period, today: date) -> tuple[date, date]:
    """(first, last) UTC day of `period` ending `today`, both included."""
    return today - timedelta(days=_DAYS[period] - 1), today


def days(since: date, until: date) -> list[date]:
    """Every day from `since` to `until`, both included."""
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def describe(period: Period) -> str:
    return {
        Period.DAY: "today (UTC)",
        Period.WEEK: "the last 7 days (UTC)",
        Period.MONTH: "the last 30 days (UTC)",
    }[period]
