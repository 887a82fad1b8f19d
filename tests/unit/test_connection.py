"""A channel's endpoint: pasted URLs cut back, and when a failed check blocks chat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.connection import blocked_reason, endpoint_url, recheck_due
from bot.types import ChannelConfig, PlaceName, Platform, Source, StatusCheck


@pytest.mark.parametrize(
    ("typed", "base", "cut"),
    [
        ("http://h:1234/v1/chat/completions", "http://h:1234/v1", True),
        ("http://h:1234/v1/chat/completions/", "http://h:1234/v1", True),
        ("http://h:1234/v1/completions", "http://h:1234/v1", True),
        ("http://h:1234/v1/models", "http://h:1234/v1", True),
        ("https://proxy.example/v1/messages", "https://proxy.example/v1", True),
        ("https://openrouter.ai/api/v1/chat/completions", "https://openrouter.ai/api/v1", True),
        ("http://h:1234/v1/", "http://h:1234/v1", False),
        ("http://h:1234", "http://h:1234", False),
        ("  http://h:1234/v1  ", "http://h:1234/v1", False),
        ("http://models", "http://models", False),  # a host called models stays
        ("<http://h:1234/v1>", "http://h:1234/v1", False),  # Discord's link without preview
        ("<http://h:1234/v1/chat/completions>", "http://h:1234/v1", True),
        ("http://h:1234/V1", "http://h:1234/v1", False),
        ("HTTP://h:1234/V1/", "http://h:1234/v1", False),
        ("HTTPS://Proxy.example", "https://Proxy.example", False),  # a host name any case
        ("http://h:1234//v1", "http://h:1234/v1", False),
        ("http://h:1234/v1,", "http://h:1234/v1", False),
        ("http://h:1234/v1.", "http://h:1234/v1", False),
        ("http://h:1234/api/Vendor/V2/", "http://h:1234/api/Vendor/v2", False),
        ("http://h:1234/Version1", "http://h:1234/Version1", False),  # not a version segment
    ],
)
def test_endpoint_url(typed: str, base: str, cut: bool) -> None:
    url, note = endpoint_url(typed)
    assert url == base
    assert bool(note) is cut
    if cut:
        assert base in note


NOW = datetime(2026, 12, 3, tzinfo=UTC)
CHANNEL = PlaceName(Platform.DISCORD)


def status(kind: str, ago: float) -> StatusCheck:
    return StatusCheck(False, "down", kind=kind, checked_at=NOW - timedelta(seconds=ago))


@pytest.mark.parametrize(
    ("check", "due"),
    [
        (None, False),
        (StatusCheck(True, "fine"), False),
        (status("unreachable", 61), True),
        (status("timeout", 120), True),
        (status("overloaded", 59), False),
        (status("rate_limited", 600), True),
        (status("quota", 600), False),  # out of credits: waiting does not help
        (status("auth", 600), False),
        (status("not_found", 600), False),
        (status("config", 600), False),
    ],
)
def test_recheck_due(check: StatusCheck | None, due: bool) -> None:
    assert recheck_due(check, NOW) is due


def test_blocked_reason_says_what_to_do() -> None:
    base = ChannelConfig.of(source=Source.OPENAI, model="m")
    assert blocked_reason(ChannelConfig.of(source=Source.OPENAI), "/", place=CHANNEL) is not None
    assert blocked_reason(base, "/", place=CHANNEL) is None
    auth = ChannelConfig.of(source=Source.OPENAI, model="m", status=status("auth", 5))
    assert "/connect bypass:on" in (blocked_reason(auth, "!", place=CHANNEL) or "").replace(
        "!", "/"
    )
    passing = ChannelConfig.of(source=Source.OPENAI, model="m", status=status("unreachable", 5))
    assert "check again" in (blocked_reason(passing, "/", place=CHANNEL) or "")
    bypassed = ChannelConfig.of(
        source=Source.OPENAI, model="m", status=status("auth", 5), bypass_status_check=True
    )
    assert blocked_reason(bypassed, "/", place=CHANNEL) is None
