"""Which models can see: what the endpoint says, else what is known of the vendors' models."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.types import ChannelConfig, ModelInfo, Source

# Vendors' models that take images (their docs, 2026-11). An id not matched is taken as
# text-only unless the endpoint's own model list or the channel's /params vision says so.
_KNOWN: dict[Source, re.Pattern[str]] = {
    Source.OPENAI: re.compile(
        r"^(chatgpt-4o|gpt-4o|gpt-4\.1|gpt-4\.5|gpt-4-turbo|gpt-5|o1(?!-mini)|o3(?!-mini)|o4)"
    ),
    Source.CLAUDE: re.compile(r"^claude-(3|opus|sonnet|haiku)"),
    Source.MISTRAL: re.compile(
        r"^(pixtral|mistral-(large|medium|small)-(latest|2[5-9]\d\d)|ministral-\w+-2512"
        r"|magistral-(small|medium)-(latest|2[5-9]\d\d))"
    ),
}


def sees_images(config: ChannelConfig, listed: Sequence[ModelInfo] | None) -> bool:
    """Whether the channel's model is shown images: /params vision on|off, else auto."""
    choice = config.value("vision")
    if choice == "on":
        return True
    if choice == "off" or not config.model:
        return False
    for model in listed or ():
        if model.id == config.model and model.vision is not None:
            return model.vision
    known = _KNOWN.get(config.source)
    return known is not None and known.match(config.model) is not None
