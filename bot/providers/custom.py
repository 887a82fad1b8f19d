"""Any OpenAI-compatible URL, with an optional key (or proxy password) and extra headers."""

from __future__ import annotations

from bot.providers.openai import OpenAICompatible


class CustomProvider(OpenAICompatible):
    name = "The custom endpoint"

    def _fixed_headers(self) -> dict[str, str]:
        if not self.endpoint.operator_url:  # a gateway's key in them must not go to it
            return {}
        return dict(self._t.settings.custom_extra_headers)
