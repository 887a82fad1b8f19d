"""Reactions on answers: which count as turn controls, and whose (pure decisions)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.frontends.matrix import decide, events
from bot.frontends.matrix.decide import Action, AnswerFacts, Decision, reaction_command
from tests.matrix.test_decide import QUESTION

REACTION = replace(QUESTION, is_message=False, msgtype="", text="", reaction=True)
ANSWER = AnswerFacts(asker="@bob:hs", answered=True)


def test_a_reaction_is_decided_on_before_messages_are() -> None:
    assert decide.decide(REACTION) == Decision(Action.REACTION)
    assert decide.decide(replace(REACTION, from_bot=True)).action is Action.IGNORE
    assert decide.decide(replace(REACTION, room_known=False)).action is Action.IGNORE
    old = replace(REACTION, sent_ms=REACTION.started_ms - 3_600_000)
    assert decide.decide(old).action is Action.IGNORE


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("🔄", ("regenerate",)),
        ("⏩", ("continue",)),
        ("⏹", ("stop",)),
        ("⏹️", ("stop",)),
        ("◀", ("swipe", "prev")),
        ("◀️", ("swipe", "prev")),
        ("▶️", ("swipe", "next")),
        ("▶\ufe0e", ("swipe", "next")),
        ("\u200b🔄", ("regenerate",)),
        ("👍", None),
        ("🔄🔄", None),
    ],
)
def test_the_control_emoji(key: str, words: tuple[str, ...] | None) -> None:
    assert reaction_command(key, ANSWER, sender="@bob:hs", admin=False) == words


def test_only_the_asker_or_an_admin_and_only_on_a_known_answer() -> None:
    assert reaction_command("🔄", ANSWER, sender="@carol:hs", admin=False) is None
    assert reaction_command("🔄", ANSWER, sender="@carol:hs", admin=True) == ("regenerate",)
    assert reaction_command("🔄", None, sender="@bob:hs", admin=True) is None


def test_regenerate_on_an_error_asks_again() -> None:
    failed = AnswerFacts(asker="@bob:hs", answered=False)
    assert reaction_command("🔄", failed, sender="@bob:hs", admin=False) == ("retry",)


def test_annotations_are_read_off_reactions_only() -> None:
    rel = {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$a", "key": "🔄"}}
    assert events.annotation("m.reaction", rel) == ("$a", "🔄")
    assert events.annotation("m.room.message", rel) is None
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$a"}}}
    assert events.annotation("m.reaction", reply) is None
    empty = {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$a", "key": ""}}
    assert events.annotation("m.reaction", empty) is None
