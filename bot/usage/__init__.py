"""Usage accounting's pure parts: periods, the /usage report and its chart, prices.

Rows are written and summed by the store (bot/store/usage.py); quotas will charge
against the same rows.
"""

from bot.types.prices import PriceError, PriceTable
from bot.usage.periods import Period, window
from bot.usage.report import UsageReport, summarize

__all__ = ["Period", "PriceError", "PriceTable", "UsageReport", "summarize", "window"]
