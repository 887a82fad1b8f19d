"""How fast the Matrix front-end answers on a real Synapse, and how many events it spends.

Run: .venv/bin/python bench/bench_matrix.py [--runs 5]   (needs scripts/install-peers.sh)

A nio user asks the bot (run_matrix, as in production) in a room; a loopback
OpenAI-compatible server streams 100 chunks over 2 s per answer. Measured at the user's
client: message sent → the bot's first event, → the final edit showing the whole answer,
and events per answer (first message + edits). Twice: with the bot exempt from rate
limits, and with Synapse's default rc_message (0.2/s, burst 10) for the bot. No asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.types import ChannelConfig, Source
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer, launch_synapse, synapse_installed


async def one_setting(
    server: SynapseServer, tmp: Path, endpoint: SSEEndpoint, runs: int, rate_limited: bool
) -> None:
    bot = server.register("benchbot", rate_limited=rate_limited)
    alice = await UserClient.start(server, server.register("alice"), tmp / f"alice-{bot.localpart}")
    defaults = ChannelConfig.of(
        source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
    )
    core = await make_core(f"sqlite+aiosqlite:///{tmp}/{bot.localpart}.db", defaults=defaults)
    firsts: list[float] = []
    finals: list[float] = []
    events: list[int] = []
    try:
        async with running_bot(core, bot_options(server, bot, tmp / bot.localpart)):
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            for _ in range(runs):
                sent = time.monotonic()
                await alice.send(room_id, f"{bot.user_id}: go")
                first = await alice.reply_to(room_id, bot.user_id, sent, "first event")
                event_id = str(first.event.event_id)

                def complete(eid: str = event_id) -> bool:
                    return alice.shown_text(eid) == endpoint.answer()

                await alice.wait_for(complete, "the final edit", within=180)
                final = max([first.at, *(e.at for e in alice.edits_of(event_id))])
                firsts.append(first.at - sent)
                finals.append(final - sent)
                events.append(1 + len(alice.edits_of(event_id)))
    finally:
        await core.close()
        await alice.close()
    label = "default rc_message (0.2/s, burst 10)" if rate_limited else "no rate limit"
    print(f"\n{label}, {runs} answers of {endpoint.chunks} chunks over {endpoint.span:.0f} s:")
    print(
        f"  to first event: median {statistics.median(firsts) * 1000:7.0f} ms  "
        f"max {max(firsts) * 1000:7.0f} ms"
    )
    print(
        f"  to final edit:  median {statistics.median(finals) * 1000:7.0f} ms  "
        f"max {max(finals) * 1000:7.0f} ms"
    )
    print(f"  events/answer:  {events}")


async def main(runs: int) -> None:
    if not synapse_installed():
        sys.exit("Synapse is not installed: run scripts/install-peers.sh first.")
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as name:
        tmp = Path(name)
        (tmp / "synapse").mkdir()
        server, proc = launch_synapse(tmp / "synapse")
        print(f"Synapse ready in {server.startup_seconds:.2f} s")
        try:
            async with SSEEndpoint(chunks=100, span=2.0) as endpoint:
                await one_setting(server, tmp, endpoint, runs, rate_limited=False)
                await one_setting(server, tmp, endpoint, runs, rate_limited=True)
        finally:
            proc.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
