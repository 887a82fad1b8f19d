"""Mistral AI: OpenAI-shaped, with its own turn rules (its field names are in bot.fields)."""

from __future__ import annotations

from bot.providers.base import ChatRequest
from bot.providers.convert import Message, mistral_messages
from bot.providers.openai import OpenAICompatible
from bot.types import SOURCE_API, Source


class MistralProvider(OpenAICompatible):
    name = "Mistral AI"
    api = "Mistral AI's API or an OpenAI-compatible one"
    default_base = SOURCE_API[Source.MISTRAL]
    ask_usage = False  # Mistral puts usage on the last chunk without an opt-in
    instructed_continue = False  # the answer so far is a prefix it writes on from
    auth_hint = " A new Mistral key can take a few minutes to become valid: wait and try again."

    def _messages(self, request: ChatRequest) -> list[Message]:
        return mistral_messages(request)
