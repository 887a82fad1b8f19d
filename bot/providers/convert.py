"""Pure conversions from the neutral ChatRequest to each provider's message rules."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable, Iterable
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
    """`Name: text` in multi-user chats, so the model knows who said what."""
    if multi_user and message.name and message.role is not Role.SYSTEM:
        return f"{message.name}: {message.content}"
    return message.content


def data_url(image: Image) -> str:
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def _parts(text: str, images: Iterable[Image], image_part: Callable[[Image], Message]) -> Any:
    """Plain text when there are no images, else a text part then the images in order."""
    images = tuple(images)
    if not images:
        return text
    parts: list[Message] = [{"type": "text", "text": text}] if text else []
    return parts + [image_part(image) for image in images]


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
    for m in request.messages:
        content = _parts(named_text(m, request.multi_user), m.images, _openai_image)
        out.append({"role": m.role.value, "content": content})
    if request.continue_answer:
        out.append({"role": "user", "content": CONTINUE_INSTRUCTION})
    return out


def mistral_messages(request: ChatRequest) -> list[Message]:
    """Mistral rules: no `name`, no system after the chat started, last turn is the user's."""
    out: list[Message] = []
    if request.system_prompt:
        out.append({"role": "system", "content": request.system_prompt})
    started = False
    for m in request.messages:
        role = m.role
        if role is Role.SYSTEM and started:
            role = Role.USER  # some Mistral models refuse a system turn after an assistant one
        started = started or role is not Role.SYSTEM
        content = _parts(named_text(m, request.multi_user), m.images, _mistral_image)
        out.append({"role": role.value, "content": content})
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
    prefill: bool = False,
) -> tuple[str, list[Message]]:
    """(system, turns) for the Messages API.

    Leading system turns join the system field; later ones become user turns. Same-role
    turns are merged, empty texts dropped, the first turn is the user's and the last
    never the assistant's (prefill is refused by newer models).
    """
    system_parts = [system_prompt] if system_prompt else []
    turns: list[tuple[str, list[tuple[str, tuple[Image, ...]]]]] = []
    for m in messages:
        if m.role is Role.SYSTEM and not turns:
            if m.content.strip():
                system_parts.append(m.content)
            continue
        if not m.content.strip() and not m.images:
            continue
        role = "assistant" if m.role is Role.ASSISTANT else "user"
        piece = (named_text(m, multi_user), m.images)
        if turns and turns[-1][0] == role:
            turns[-1][1].append(piece)
        else:
            turns.append((role, [piece]))
    if not turns or turns[0][0] != "user":
        turns.insert(0, ("user", [(START_PLACEHOLDER, ())]))
    if turns[-1][0] == "assistant":
        if prefill:  # continue the answer: it is the prefill, without trailing space
            text, images = turns[-1][1][-1]
            turns[-1][1][-1] = (text.rstrip(), images)
        else:
            turns.append(("user", [(CONTINUE_PLACEHOLDER, ())]))
    system = "\n\n".join(system_parts)
    return system, [{"role": role, "content": _claude_content(pieces)} for role, pieces in turns]


def _claude_content(pieces: list[tuple[str, tuple[Image, ...]]]) -> Any:
    """Merged same-role turns: joined text, or blocks keeping each text before its images."""
    if not any(images for _, images in pieces):
        return "\n\n".join(text for text, _ in pieces)
    blocks: list[Message] = []
    for text, images in pieces:
        if text.strip():
            blocks.append({"type": "text", "text": text})
        blocks += [_claude_image(image) for image in images]
    return blocks
