"""The operator's optional price table: USD per million input/output tokens by model glob.

A value type here (not in bot/usage) because settings validates it at start-up and
settings may import only types; bot.usage re-exports it.

`gpt-4o*=2.5/10, claude-*=3/15, *=0/0` — the first pattern that matches a model wins;
patterns match case-insensitively (fnmatch: `*`, `?`, `[…]`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from bot.types.text import quoted, shorten

_MAX_PRICE = 1_000_000.0  # USD per million tokens; beyond this it is surely a typo
_ENTRY = re.compile(r"^(?P<pattern>[^=]+)=(?P<input>[^/]+)/(?P<output>.+)$")


class PriceError(ValueError):
    """A price entry that cannot be read; says which and why."""


@dataclass(frozen=True, slots=True)
class Price:
    pattern: str
    input_per_million: float
    output_per_million: float


def _number(text: str, entry: str) -> float:
    try:
        value = float(text.strip().removeprefix("$"))
    except ValueError:
        number = shorten(text.strip(), 20)
        raise PriceError(f"{quoted(entry)}: {number!r} is not a number of USD") from None
    if not math.isfinite(value) or value < 0 or value > _MAX_PRICE:
        raise PriceError(f"{quoted(entry)}: prices must be from 0 to {_MAX_PRICE:,.0f} USD")
    return value


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: tuple[Price, ...] = ()

    @classmethod
    def parse(cls, text: str) -> PriceTable:
        """Entries separated by commas, semicolons or lines; `#` starts a comment."""
        prices: list[Price] = []
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            for raw in re.split(r"[,;]", line):
                entry = raw.strip()
                if not entry:
                    continue
                found = _ENTRY.match(entry)
                if found is None:
                    raise PriceError(
                        f"{quoted(entry)} is not `model-pattern=input/output` "
                        "(USD per million tokens, e.g. gpt-4o*=2.5/10)"
                    )
                pattern = found["pattern"].strip().lower()
                if not pattern:
                    raise PriceError(f"{quoted(entry)} has no model pattern before `=`")
                prices.append(
                    Price(pattern, _number(found["input"], entry), _number(found["output"], entry))
                )
        return cls(tuple(prices))

    def __bool__(self) -> bool:
        return bool(self.prices)

    def price_of(self, model: str) -> Price | None:
        lowered = model.lower()
        return next((p for p in self.prices if fnmatchcase(lowered, p.pattern)), None)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """Estimated USD for these tokens, None when no pattern matches the model."""
        price = self.price_of(model)
        if price is None:
            return None
        return (
            input_tokens * price.input_per_million + output_tokens * price.output_per_million
        ) / 1_000_000
