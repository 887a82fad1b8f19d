"""The bounded memory of ids seen lately (handled events, deleted messages)."""

from __future__ import annotations

from bot.types.recent import RecentIds


def test_the_oldest_is_forgotten_first_and_empty_is_never_kept() -> None:
    recent = RecentIds(size=3)
    for item in ("a", "b", "c", "a", "", "d"):  # "a" again keeps its place
        recent.add(item)
    assert "a" not in recent
    assert all(item in recent for item in ("b", "c", "d"))
    assert "" not in recent
