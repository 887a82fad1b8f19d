"""Where the bot is working, for its log: every line written meanwhile names it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context

# The place (a ChannelRef as the log writes it) whose event this task handles; "" outside
# one. Tasks started meanwhile take it along (a turn's request, its retries).
LOG_PLACE: ContextVar[str] = ContextVar("log_place", default="")


@contextmanager
def logged_in(place: object) -> Iterator[None]:
    """Log lines written inside the block name `place` (the log's filter adds it to a
    line that does not name it already): a retried request or a refused interaction says
    where, as the turn's own lines do."""
    token = LOG_PLACE.set(str(place))
    try:
        yield
    finally:
        LOG_PLACE.reset(token)


def nowhere() -> Context:
    """This task's context outside any place: for a task started by whichever caller came
    first that then serves every place (the store's batches of reads and writes), whose
    lines would otherwise name that first caller's place for all of them."""
    context = copy_context()
    context.run(LOG_PLACE.set, "")
    return context


# The places one log line names at most, then how many more.
_PLACES_NAMED = 3


def several(places: Sequence[str]) -> str:
    """The places a task serves together (a model list fetched once for every channel
    that asked meanwhile), as a log line names them: `a, b and 2 more`."""
    if len(places) <= _PLACES_NAMED:
        return ", ".join(places)
    return f"{', '.join(places[:_PLACES_NAMED])} and {len(places) - _PLACES_NAMED} more"


_MORE = re.compile(r" and \d+ more$")


def named_places(line: str) -> tuple[str, ...]:
    """The places a log line's place names (`several`'s `a, b and 2 more`: a and b)."""
    return tuple(p for p in _MORE.sub("", line).split(", ") if p)
