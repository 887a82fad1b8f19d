"""Pure message conversion: Claude alternation, Mistral rules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.providers import ChatRequest
from bot.providers.convert import (
    CONTINUE_INSTRUCTION,
    CONTINUE_PLACEHOLDER,
    START_PLACEHOLDER,
    claude_messages,
    continuation_gap,
    mistral_messages,
)
from bot.types import ChatMessage, Role

messages = st.lists(
    st.builds(
        ChatMessage,
        role=st.sampled_from(list(Role)),
        content=st.text(max_size=15),
        name=st.none() | st.sampled_from(["Alice", "Bob"]),
    ),
    max_size=12,
)


@settings(max_examples=400)
@given(history=messages, system=st.none() | st.text(max_size=10), multi=st.booleans())
def test_claude_turns_alternate_and_keep_every_text(
    history: list[ChatMessage], system: str | None, multi: bool
) -> None:
    system_out, turns = claude_messages(history, system, multi)
    roles = [t["role"] for t in turns]
    assert roles, "the API needs at least one message"
    assert roles[0] == "user"
    assert roles[-1] == "user"
    assert all(a != b for a, b in itertools.pairwise(roles))
    assert all(t["content"].strip() for t in turns)
    # Every non-empty text appears, in order, in the turns or (leading system) the system field.
    joined = "\x00".join(t["content"] for t in turns)
    position = 0
    in_lead = True
    for m in history:
        if m.role is Role.SYSTEM and in_lead:
            if m.content.strip():
                assert m.content in system_out
            continue
        if not m.content.strip():
            continue
        in_lead = False
        found = joined.find(m.content, position)
        assert found >= 0, m
        position = found + len(m.content)


def test_claude_examples() -> None:
    system, turns = claude_messages(
        [
            ChatMessage(Role.SYSTEM, "Be brief."),
            ChatMessage(Role.ASSISTANT, "Hello!"),
            ChatMessage(Role.USER, "Hi", name="Al"),
            ChatMessage(Role.SYSTEM, "Note: Bo joined."),
            ChatMessage(Role.USER, "Yo", name="Bo"),
        ],
        "Persona.",
        True,
    )
    assert system == "Persona.\n\nBe brief."
    assert turns == [
        {"role": "user", "content": START_PLACEHOLDER},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Al: Hi\n\nNote: Bo joined.\n\nBo: Yo"},
    ]
    assert claude_messages([], None, False) == (
        "",
        [{"role": "user", "content": START_PLACEHOLDER}],
    )


@given(history=messages, multi=st.booleans(), prefill=st.text(max_size=8))
def test_claude_turns_alternate_and_only_a_prefill_is_the_assistants_last(
    history: list[ChatMessage], multi: bool, prefill: str
) -> None:
    """Whatever the chat, Claude gets user and assistant turns in turn, starting with
    the user's; the last is the assistant's only when a prefill is sent."""
    _, turns = claude_messages(history, None, multi, prefill=prefill)
    roles = [t["role"] for t in turns]
    assert roles[0] == "user"
    assert all(a != b for a, b in itertools.pairwise(roles))
    if prefill.rstrip():
        assert turns[-1] == {"role": "assistant", "content": prefill.rstrip()}
    else:
        assert roles[-1] == "user"


def test_claude_prefill_after_the_chat_and_when_continuing() -> None:
    chat = [ChatMessage(Role.USER, "Tell me a story"), ChatMessage(Role.ASSISTANT, "Once  ")]
    asked = [ChatMessage(Role.USER, "Hi")]
    assert claude_messages(asked, None, False, prefill="Sure,\n")[1] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Sure,"},
    ]
    # Continuing by prefill: the answer is the prefill, the assistant prefill opening it.
    assert claude_messages(chat, None, False, True, prefill="Sure,\n")[1][-1] == {
        "role": "assistant",
        "content": "Sure,\n\nOnce",
    }
    # Asked to go on: the answer, the request, then the prefill.
    assert claude_messages(chat, None, False, True, instructed=True, prefill="Sure,")[1] == [
        {"role": "user", "content": "Tell me a story"},
        {"role": "assistant", "content": "Once  "},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
        {"role": "assistant", "content": "Sure,"},
    ]
    # An answer last without continuing (its question deleted): the placeholder asks.
    assert claude_messages(chat, None, False, prefill=" ")[1][-1] == {
        "role": "user",
        "content": CONTINUE_PLACEHOLDER,
    }


@given(history=messages, multi=st.booleans())
def test_mistral_last_turn_is_user_and_no_names(history: list[ChatMessage], multi: bool) -> None:
    out = mistral_messages(ChatRequest(model="m", messages=tuple(history), multi_user=multi))
    assert out[-1]["role"] == "user"
    assert all(set(m) == {"role", "content"} for m in out)
    seen_chat = False
    for m in out:
        if m["role"] != "system":
            seen_chat = True
        else:
            assert not seen_chat, "no system turn after the chat started"


def test_mistral_adds_continue_only_when_needed() -> None:
    ends_user = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))
    assert mistral_messages(ends_user) == [{"role": "user", "content": "hi"}]
    ends_bot = ChatRequest(model="m", messages=(ChatMessage(Role.ASSISTANT, "yo"),))
    assert mistral_messages(ends_bot)[-1] == {"role": "user", "content": CONTINUE_PLACEHOLDER}


@pytest.mark.parametrize(
    ("before", "after", "gap"),
    [
        ("The sky is blue.", "It is also vast.", " "),
        ("She paused,", "then went on.", " "),
        ("Well…", "I think so.", " "),
        ("*smiles*.", '"Hello."', " "),
        ("It costs:", "42 coins.", " "),
        # After a letter the answer may have stopped mid-word: the model says (it is
        # asked to start with a space when the next word needs one).
        ("The answer is incompl", "ete now.", ""),
        ("Once upon", "a time.", ""),
        ("Once upon", " a time.", ""),  # it wrote the space itself
        ("Once upon ", "a time.", ""),
        ("He said", ", quietly.", ""),  # closing punctuation attaches
        ("Wait", "...", ""),
        ("(see", ")", ""),
        ("well-", "known", ""),  # a hyphen or an opening bracket joins
        ("(", "aside)", ""),
        ("空は青い。", "そして広い。", ""),  # CJK puts no spaces between words
        ("Это конец.", "Истории нет.", " "),  # Cyrillic does
        ("", "Hello", ""),
        ("Hello", "", ""),
    ],
)
def test_an_instructed_continuation_gets_the_space_it_left_out(
    before: str, after: str, gap: str
) -> None:
    assert continuation_gap(before, after) == gap
