"""Usage accounting's pure parts: periods, prices, the report, the chart, the counting rule."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date, timedelta

import pytest
from PIL import Image

from bot.commands.parse import parse
from bot.commands.table import TABLE
from bot.conversation.accounting import counted, request_tokens
from bot.conversation.budget import estimate_tokens
from bot.providers import ChatRequest
from bot.settings import SettingsError, load_settings
from bot.types import ChatMessage, Role, Usage, UsageBucket
from bot.types.prices import PriceError, PriceTable
from bot.usage.chart import chart_png
from bot.usage.periods import Period, days, window
from bot.usage.report import render, summarize

TODAY = date(2026, 12, 3)
REQUEST = ChatRequest(
    model="m",
    messages=(ChatMessage(Role.USER, "hello there, how are you?"),),
    system_prompt="Be brief.",
)


def test_periods_end_today_and_include_it() -> None:
    assert window(Period.DAY, TODAY) == (TODAY, TODAY)
    assert window(Period.WEEK, TODAY) == (date(2026, 11, 27), TODAY)
    assert window(Period.MONTH, TODAY) == (date(2026, 11, 4), TODAY)
    assert len(days(*window(Period.MONTH, TODAY))) == 30


def test_price_table_first_matching_glob_wins() -> None:
    table = PriceTable.parse(
        "GPT-4o-mini=0.15/0.6; gpt-4o*=2.5/10\n# comment\nclaude-*=$3/15, *=0/0"
    )
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert table.cost("gpt-4o-2024", 2_000_000, 0) == pytest.approx(5.0)
    assert table.cost("Claude-3-Opus", 0, 1_000_000) == pytest.approx(15.0)
    assert table.cost("llama", 10, 10) == 0.0
    assert PriceTable.parse("gpt-4o=1/2").cost("other", 1, 1) is None
    assert not PriceTable.parse("  \n# nothing\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpt-4o", "is not `model-pattern=input/output`"),
        ("gpt-4o=1", "is not `model-pattern=input/output`"),
        ("=1/2", "is not `model-pattern=input/output`"),
        ("gpt=one/2", "'one' is not a number of USD"),
        ("gpt=-1/2", "prices must be from 0"),
        ("gpt=nan/2", "prices must be from 0"),
        ("gpt=1/1e9", "prices must be from 0"),
    ],
)
def test_bad_prices_say_which_entry(text: str, message: str) -> None:
    with pytest.raises(PriceError, match=message):
        PriceTable.parse(text)


def test_bad_price_setting_is_a_start_up_error_naming_it(tmp_path: object) -> None:
    with pytest.raises(SettingsError, match="Setting USAGE_PRICES is invalid: `gpt=x/1`"):
        load_settings(usage_prices="gpt=x/1")
    with pytest.raises(SettingsError, match="Setting USAGE_PRICES_FILE is invalid: cannot read"):
        load_settings(usage_prices_file="/nonexistent/prices.txt")


def test_price_file_entries_follow_the_inline_ones(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "prices.txt"
    path.write_text("# USD per million tokens\ngpt-*=1/1\nclaude-*=3/15\n")
    table = load_settings(usage_prices="gpt-4o=2/8", usage_prices_file=str(path)).price_table()
    assert [p.pattern for p in table.prices] == ["gpt-4o", "gpt-*", "claude-*"]
    path.write_text("claude=3\n")
    with pytest.raises(SettingsError, match=r"USAGE_PRICES_FILE is invalid: .*claude=3"):
        load_settings(usage_prices_file=str(path))


def bucket(day: date, user: str, model: str, i: int, o: int, **kw: int) -> UsageBucket:
    return UsageBucket(day, user, model, i, o, calls=kw.pop("calls", 1), **kw)


def test_a_model_id_markdown_would_read_is_quoted_in_the_report() -> None:
    link = "[free credits](https://phish.example)"
    report = summarize(
        [bucket(TODAY, "a", link, 5, 5), bucket(TODAY, "a", "gpt-4o", 1, 1)], TODAY, TODAY
    )
    text = render(report, "Usage:", per_day_table=False)
    assert f"  `{link}`: 10 tokens" in text and "  gpt-4o: 2 tokens" in text


def test_summary_totals_tops_and_every_day_of_the_period() -> None:
    since = TODAY - timedelta(days=6)
    buckets = [
        bucket(since, "a", "small", 10, 10),
        bucket(TODAY, "a", "big", 100, 100, estimated_calls=1),
        bucket(TODAY, "b", "big", 1000, 0, error_calls=1),
    ]
    report = summarize(buckets, since, TODAY, PriceTable.parse("big=1/2"))
    assert report.totals.tokens == 1220 and report.totals.calls == 3
    assert [u for u, _ in report.top_users] == ["b", "a"]
    assert [m for m, _ in report.top_models] == ["big", "small"]
    assert len(report.per_day) == 7 and report.per_day[-1][1] == {"big": 1200}
    assert report.per_day[1] == (since + timedelta(days=1), {})
    assert report.totals.cost == pytest.approx((1100 * 1 + 100 * 2) / 1e6)
    assert report.totals.unpriced_tokens == 20
    text = render(report, "Usage:", per_day_table=True)
    assert "Total: 1,220 tokens (1,110 in, 110 out) in 3 calls, ~$0.0013." in text
    assert (
        "1 estimated (not reported: the endpoint sends no usage, or the answer was stopped or "
        "cut off); 1 ended with an error" in text
    )
    assert "Top users:\n  b: 1,000 tokens" in text
    assert f"  {TODAY.isoformat()}  1,200" in text
    assert render(summarize([], since, TODAY), "Usage:", per_day_table=True) == (
        "Usage:\nNo usage recorded."
    )


def test_chart_is_a_png_with_many_models_and_days() -> None:
    since = TODAY - timedelta(days=29)
    buckets = [
        bucket(since + timedelta(days=d), "u", f"model-{m}-with-a-rather-long-name", d * m, m)
        for d in range(30)
        for m in range(10)
    ]
    png = chart_png(summarize(buckets, since, TODAY), "Tokens per day")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (720, 360)
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 5  # bars in several colours, not a blank image
    # Nothing used: an empty chart still draws.
    assert chart_png(summarize([], TODAY, TODAY), "x").startswith(b"\x89PNG")


def test_counting_prefers_reported_and_estimates_the_rest() -> None:
    assert counted(Usage(50, 7), REQUEST, "an answer", answered=True) == (50, 7, False)
    prompt, completion, estimated = counted(Usage(50, None), REQUEST, "an answer", answered=True)
    assert (prompt, estimated) == (50, True) and completion > 0
    prompt, completion, estimated = counted(None, REQUEST, "an answer", answered=True)
    assert prompt == request_tokens(REQUEST) > 0 and completion > 0 and estimated
    # Nothing came back and nothing was reported: a refused call bills nothing.
    assert counted(None, REQUEST, "", answered=False) == (0, 0, False)
    # A reported input with no text (cut at once) is kept.
    assert counted(Usage(40, None), REQUEST, "", answered=False) == (40, 0, True)


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_an_estimate_counts_no_more_than_the_answer_could_spend(name: str) -> None:
    """Context probe: 60 tokens at most were written (finish_reason "length"), and the
    estimate of the text recorded 77: quotas charged more than the endpoint allowed."""
    text = "Rome, founded on seven hills, grew from a village to an empire. " * 5
    capped = replace(REQUEST, options={name: 60})
    assert estimate_tokens(text) > 60
    assert counted(None, capped, text, answered=True)[1:] == (60, True)
    # Claude's thinking is on top of its max_tokens: its estimate is not capped there.
    thinking = replace(REQUEST, options={name: 60, "thinking": {"budget_tokens": 1024}})
    assert counted(None, thinking, text, answered=True)[1] == estimate_tokens(text)


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("/usage", {}),
        ("/usage week", {"period": "week"}),
        ("/usage server", {"scope": "server"}),
        ("/usage server month", {"scope": "server", "period": "month"}),
        ("/usage period:day me", {"period": "day", "scope": "me"}),
        ("/usage bogus", {"scope": "bogus"}),  # refused later with the scope's choices
    ],
)
def test_usage_arguments_in_any_order(text: str, raw: dict[str, str]) -> None:
    assert parse(text, TABLE).raw == raw
