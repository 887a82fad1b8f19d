"""Mistral AI: OpenAI-shaped, with its own seed name, safe prompt and turn rules."""

from __future__ import annotations

from typing import Any

from bot.providers.base import ChatRequest
from bot.providers.convert import Message, mistral_messages
from bot.providers.openai import OpenAICompatible


class MistralProvider(OpenAICompatible):
    name = "Mistral AI"
    default_base = "https://api.mistral.ai/v1"
    seed_field = "random_seed"
    auth_hint = " A new Mistral key can take a few minutes to become valid: wait and try again."

    def _messages(self, request: ChatRequest) -> list[Message]:
        return mistral_messages(request)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body = super()._body(request)
        if self.endpoint.mistral_safe_prompt:
            body["safe_prompt"] = True
        return body
