"""Pure conversions from the neutral ChatRequest to each provider's message rules."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from bot.providers.base import ChatRequest
from bot.types import ChatMessage, Image, Role

START_PLACEHOLDER = "[Start a new chat]"  # SillyTavern's first-user-turn placeholder
CONTINUE_PLACEHOLDER = "[Continue]"
# OpenAI-shaped endpoints have no prefill: the answer so far, then this request.
CONTINUE_INSTRUCTION = (
    "Continue your last message exactly where it stopped: finish a word it stopped in the "
    "middle of, and start with a space if the next word needs one. Do not repeat any of it "
    "and do not comment on it."
)

Message = dict[str, Any]

# Closing punctuation: after it, a continuation that starts with a word needs a space;
# before it, none. After a letter the answer may have stopped mid-word (`incompl` +
# `ete`): that space is the model's to write (CONTINUE_INSTRUCTION asks it to).
_CLOSES = ".,;:!?)]}»”’…"


def _spaced_script(char: str) -> bool:
    """A letter or digit of a script that puts spaces between words (not CJK's)."""
    return char.isalnum() and unicodedata.east_asian_width(char) not in ("W", "F")


def continuation_gap(before: str, after: str) -> str:
    """The space an instructed continuation leaves out after a sentence's or clause's
    end: `blue.` + `It is` reads `blue. It is`. A model asked to go on starts its text
    without whitespace, where a prefilled one (Claude, Mistral) writes it itself; CJK
    texts take none."""
    if not before or not after or before[-1].isspace() or after[0].isspace():
        return ""
    if before[-1] not in _CLOSES or after[0] in _CLOSES:
        return ""
    if not (_spaced_script(after[0]) or after[0] in "\"'*([“‘«_"):
        return ""
    return " "


def named_text(message: ChatMessage, multi_user: bool) -> str:
    """`Name: text` for the askers of multi-user chats, so the model knows who said what.
    Answers go as they are: a name on one (a character's greeting is stored under the
    card's name) would have the model start its own with one."""
    if multi_user and message.name and message.role is Role.USER:
        return f"{message.name}: {message.content}"
    return message.content


def data_url(image: Image) -> str:
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


Piece = tuple[str, tuple[Image, ...]]  # one turn's text (named) and its images


def same_role_runs(
    messages: Iterable[ChatMessage], multi_user: bool
) -> list[tuple[Role, list[Piece]]]:
    """Turns in order, user or assistant turns in a row as one run (system turns stay
    apart: a character prompt's sections are theirs), empty ones dropped: many chat
    templates (Mistral's, Gemma's, served by vLLM or llama.cpp) refuse two user turns in
    a row, which a question whose answer was deleted leaves."""
    runs: list[tuple[Role, list[Piece]]] = []
    for m in messages:
        if not m.content.strip() and not m.images:
            continue
        piece = (named_text(m, multi_user), tuple(m.images))
        if runs and runs[-1][0] is m.role and m.role is not Role.SYSTEM:
            runs[-1][1].append(piece)
        else:
            runs.append((m.role, [piece]))
    return runs


def _content(pieces: list[Piece], image_part: Callable[[Image], Message]) -> Any:
    """A run as one turn's content: its texts joined when there are no images, else
    each text followed by its images."""
    if not any(images for _, images in pieces):
        return "\n\n".join(text for text, _ in pieces)
    parts: list[Message] = []
    for text, images in pieces:
        if text.strip():
            parts.append({"type": "text", "text": text})
        parts += [image_part(image) for image in images]
    return parts


def _openai_image(image: Image) -> Message:
    return {"type": "image_url", "image_url": {"url": data_url(image)}}


def _mistral_image(image: Image) -> Message:
    return {"type": "image_url", "image_url": data_url(image)}


def _claude_image(image: Image) -> Message:
    data = base64.b64encode(image.data).decode("ascii")
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": image.media_type, "data": data},
    }


def openai_messages(request: ChatRequest) -> list[Message]:
    """OpenAI shape; names go into the text because `name` must match ^[A-Za-z0-9_-]+$."""
    out: list[Message] = []
    if request.system_prompt:
        out.append({"role": "system", "content": request.system_prompt})
    for role, pieces in same_role_runs(request.messages, request.multi_user):
        out.append({"role": role.value, "content": _content(pieces, _openai_image)})
    if request.continue_answer:
        out.append({"role": "user", "content": CONTINUE_INSTRUCTION})
    return out


def mistral_messages(request: ChatRequest) -> list[Message]:
    """Mistral rules: no `name`, no system after the chat started, last turn is the user's."""
    out: list[Message] = []
    if request.system_prompt:
        out.append({"role": "system", "content": request.system_prompt})
    started = False
    turns: list[ChatMessage] = []
    for m in request.messages:
        if m.role is Role.SYSTEM and started:
            # Some Mistral models refuse a system turn after an assistant one.
            m = replace(m, role=Role.USER)
        started = started or m.role is not Role.SYSTEM
        turns.append(m)
    for role, pieces in same_role_runs(turns, request.multi_user):
        out.append({"role": role.value, "content": _content(pieces, _mistral_image)})
    if request.continue_answer and out and out[-1]["role"] == "assistant":
        out[-1]["prefix"] = True  # Mistral continues a prefix instead of answering it
        return out
    if not out or out[-1]["role"] != "user":
        out.append({"role": "user", "content": CONTINUE_PLACEHOLDER})
    return out


def claude_messages(
    messages: Iterable[ChatMessage],
    system_prompt: str | None,
    multi_user: bool,
    continuing: bool = False,
    *,
    instructed: bool = False,
    prefill: str = "",
) -> tuple[str, list[Message]]:
    """(system, turns) for the Messages API.

    Leading system turns join the system field; later ones become user turns. Same-role
    turns are merged, empty texts dropped, the first turn is the user's. The last is an
    assistant's only as a prefill Claude writes on from: the answer being `continuing`
    (with `prefill` before it), or `prefill` after the chat. As SillyTavern sends it
    (prompt-converters.js convertClaudeMessages; openai.js populateChatHistory and
    sendOpenAIRequest, 2024-10): `prefill` without trailing whitespace, and continuing
    by prefill the prefill opens the answer (`prefill` + blank line + answer) instead of
    following it. `instructed`: the answer being continued is followed by a request to
    go on (SillyTavern's continue prefill off), then `prefill`. Newer models refuse a
    prefill: without one, the chat ends with a user turn.
    """
    system_parts = [system_prompt] if system_prompt else []
    rest = list(messages)
    while rest and (rest[0].role is Role.SYSTEM or not (rest[0].content.strip() or rest[0].images)):
        if rest[0].role is Role.SYSTEM and rest[0].content.strip():
            system_parts.append(rest[0].content)
        rest.pop(0)  # a leading system turn, or an empty one (dropped anyway)
    chat = [replace(m, role=Role.USER) if m.role is Role.SYSTEM else m for m in rest]
    turns = [
        ("assistant" if role is Role.ASSISTANT else "user", pieces)
        for role, pieces in same_role_runs(chat, multi_user)
    ]
    if not turns or turns[0][0] != "user":
        turns.insert(0, ("user", [(START_PLACEHOLDER, ())]))
    prefill = prefill.rstrip()  # Claude refuses a prefill that ends in whitespace
    if turns[-1][0] == "assistant":
        if continuing and not instructed:  # the answer is the prefill
            text, images = turns[-1][1][-1]
            if prefill:
                text, prefill = f"{prefill}\n\n{text}", ""
            turns[-1][1][-1] = (text.rstrip(), images)
        else:
            asked = CONTINUE_INSTRUCTION if continuing else CONTINUE_PLACEHOLDER
            turns.append(("user", [(asked, ())]))
    if prefill:
        turns.append(("assistant", [(prefill, ())]))
    system = "\n\n".join(system_parts)
    return system, [
        {"role": role, "content": _content(pieces, _claude_image)} for role, pieces in turns
    ]
