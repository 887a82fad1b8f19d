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


class ThinkSplitter:
    """Route a leading `<think>…</think>` block of streamed text to reasoning."""

    _OPEN = "<think>"
    _CLOSE = "</think>"

    def __init__(self) -> None:
        self._state = "start"
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        """(answer text, reasoning text) that can be shown now."""
        if self._state == "text":
            return text, ""
        if self._state == "gap":  # the blank lines models put after </think>
            text = text.lstrip()
            if text:
                self._state = "text"
            return text, ""
        self._held += text
        if self._state == "start":
            head = self._held.lstrip()
            if head.startswith(self._OPEN):
                self._state = "think"
                self._held = head[len(self._OPEN) :]
            elif self._OPEN.startswith(head):
                return "", ""  # maybe the tag is still arriving
            else:
                self._state = "text"
                out, self._held = self._held, ""
                return out, ""
        end = self._held.find(self._CLOSE)
        if end >= 0:
            reasoning = self._held[:end]
            rest = self._held[end + len(self._CLOSE) :].lstrip()
            self._held = ""
            self._state = "text" if rest else "gap"
            return rest, reasoning
        keep = _partial_suffix(self._held, self._CLOSE)
        cut = len(self._held) - keep
        out, self._held = self._held[:cut], self._held[cut:]
        return "", out

    def flush(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        if self._state == "think":
            return "", held
        return held, ""


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
