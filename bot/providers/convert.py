"""Pure conversions from the neutral ChatRequest to each provider's message rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.providers.base import ChatRequest
from bot.types import ChatMessage, Role

START_PLACEHOLDER = "[Start a new chat]"  # SillyTavern's first-user-turn placeholder
CONTINUE_PLACEHOLDER = "[Continue]"

Message = dict[str, Any]


def named_text(message: ChatMessage, multi_user: bool) -> str:
    """`Name: text` in multi-user chats, so the model knows who said what."""
    if multi_user and message.name and message.role is not Role.SYSTEM:
        return f"{message.name}: {message.content}"
    return message.content


def openai_messages(request: ChatRequest) -> list[Message]:
    """OpenAI shape; names go into the text because `name` must match ^[A-Za-z0-9_-]+$."""
    out: list[Message] = []
    if request.system_prompt:
        out.append({"role": "system", "content": request.system_prompt})
    for m in request.messages:
        out.append({"role": m.role.value, "content": named_text(m, request.multi_user)})
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
        out.append({"role": role.value, "content": named_text(m, request.multi_user)})
    if not out or out[-1]["role"] != "user":
        out.append({"role": "user", "content": CONTINUE_PLACEHOLDER})
    return out


def claude_messages(
    messages: Iterable[ChatMessage], system_prompt: str | None, multi_user: bool
) -> tuple[str, list[Message]]:
    """(system, turns) for the Messages API.

    Leading system turns join the system field; later ones become user turns. Same-role
    turns are merged, empty texts dropped, the first turn is the user's and the last
    never the assistant's (prefill is refused by newer models).
    """
    system_parts = [system_prompt] if system_prompt else []
    turns: list[tuple[str, list[str]]] = []
    for m in messages:
        if m.role is Role.SYSTEM and not turns:
            if m.content.strip():
                system_parts.append(m.content)
            continue
        if not m.content.strip():
            continue
        role = "assistant" if m.role is Role.ASSISTANT else "user"
        text = named_text(m, multi_user)
        if turns and turns[-1][0] == role:
            turns[-1][1].append(text)
        else:
            turns.append((role, [text]))
    if not turns or turns[0][0] != "user":
        turns.insert(0, ("user", [START_PLACEHOLDER]))
    if turns[-1][0] == "assistant":
        turns.append(("user", [CONTINUE_PLACEHOLDER]))
    system = "\n\n".join(system_parts)
    return system, [{"role": role, "content": "\n\n".join(texts)} for role, texts in turns]
