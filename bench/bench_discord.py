"""The Discord front-end end to end: `chatbot run` against loopback Discord and model servers.

Run: .venv/bin/python bench/bench_discord.py [--turns 5] [--channels 50] [--bursts 1]

The bot is its own process (the real entry point); this process hosts a fake
Discord (REST + gateway, tests/discord/fake_discord.py) and an OpenAI-compatible
SSE server that answers with 100 chunks over 2 s after 200 ms to first token.
Both fakes stamp what they receive with this process's monotonic clock, as its bytes
arrive (tests/discord/arrival.py), before their handlers wait their turn; the model's
200 ms run from there.

0. The first turn after start (imports, first connections), on its own.
1. Single turns: mention sent → first message POST, and → final edit; REST calls per turn.
2. N channels at once: one mention in each; the same numbers as p50 / p95 / max.
   With --bursts B, B such bursts in turn (new channels each) and the median of their
   slowest channels: one burst's tail moves with the machine's load by ±15 ms.
No targets are asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.bot_process import BotProcess
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai

TOKEN = "bench.bot.token-0123456789"


class Turn:
    def __init__(self, fake: FakeDiscord, cid: int, sent: float, answer: str = "") -> None:
        path = f"/channels/{cid}"
        calls = [c for c in fake.calls if c.path.startswith(path + "/") and c.at >= sent]
        posts = [c for c in calls if c.method == "POST" and c.path == path + "/messages"]
        edits = [c for c in calls if c.method == "PATCH"]
        self.first_post = (posts[0].at - sent) * 1000 if posts else float("nan")
        last = max((c.at for c in posts + edits), default=sent)
        self.final = (last - sent) * 1000
        shown = [
            c.at
            for c in posts + edits
            if isinstance(c.body, dict) and c.body.get("content") == answer
        ]
        self.complete_at = min(shown, default=float("nan"))  # the whole answer shown
        self.calls = len(calls)
        self.posts = len(posts)
        self.edits = len(edits)
        self.typing = len([c for c in calls if c.path.endswith("/typing")])


def done(fake: FakeDiscord, cids: list[int], answer: str) -> bool:
    finished = {int(m["channel_id"]) for m in fake.messages.values() if m["content"] == answer}
    return all(cid in finished for cid in cids)


def cpu_ms(pid: int) -> float:
    """CPU time the process (every thread) has run so far, in ms (ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended since the listing; its time is in no file now
    return total / 1e6


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request_delays(
    sse: FakeOpenAI, said: dict[int, float], *, handler: bool = False
) -> list[float]:
    """ms from each channel's mention leaving the fake gateway to its request's bytes
    reaching the model server (with `handler`, to the model's handler running, which
    waits behind the handlers of the requests that came with it)."""
    delays = []
    for body, at in zip(sse.requests, sse.arrived if handler else sse.received, strict=True):
        messages = body.get("messages")
        last = messages[-1]["content"] if isinstance(messages, list) and messages else ""
        for cid, sent in said.items():
            if at >= sent and str(last).endswith(f"channel {cid}"):
                delays.append((at - sent) * 1000)
    return delays


def shown_after_end(sse: FakeOpenAI, turns: dict[int, Turn]) -> list[float]:
    """ms from the model sending a channel's last chunk to its whole answer showing."""
    delays = []
    for index, ended in sse.ended.items():
        messages = sse.requests[index].get("messages")
        last = messages[-1]["content"] if isinstance(messages, list) and messages else ""
        for cid, turn in turns.items():
            if f"channel {cid}" in str(last) and ended <= turn.complete_at:
                delays.append((turn.complete_at - ended) * 1000)
    return delays


def timeline(fake: FakeDiscord, cid: int, sent: float) -> None:
    """The REST calls of one channel's turn, ms from its mention."""
    print(f"   channel {cid}:")
    for c in fake.calls:
        if c.path.startswith(f"/channels/{cid}/") and c.at >= sent:
            body = c.body if isinstance(c.body, dict) else {}
            what = f"{len(body['content'])} chars" if "content" in body else ", ".join(body)
            at = (c.at - sent) * 1000
            print(f"     {at:7.1f}  {c.method:5} {c.path.split('/')[-1]:>20}  {what}")


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered):7.1f}  p95 {p95:7.1f}  max {ordered[-1]:7.1f}"


async def _burst(
    fake: FakeDiscord, sse: FakeOpenAI, pid: int, burst: list[int], answer: str, show: bool
) -> tuple[float, float]:
    """One mention in each of `burst` at once; prints its numbers, returns the slowest
    channel's request at the model and first POST (ms)."""
    cpu_before = cpu_ms(pid)
    harness_before = time.process_time()
    sent = time.monotonic()
    said: dict[int, float] = {}  # when each channel's mention left the fake gateway

    async def mention(cid: int) -> None:
        await fake.user_says(f"<@{fake.bot_id}> count, channel {cid}", channel_id=cid)
        said[cid] = time.monotonic()

    await asyncio.gather(*(mention(c) for c in burst))
    spread = (max(said.values()) - sent) * 1000
    await fake.wait_until(lambda: done(fake, burst, answer), 120)
    wall = (time.monotonic() - sent) * 1000
    harness_cpu = (time.process_time() - harness_before) * 1000
    await asyncio.sleep(0.5)
    burst_cpu = (cpu_ms(pid) - cpu_before) / len(burst)
    many = [Turn(fake, cid, sent, answer) for cid in burst]
    requests = request_delays(sse, dict.fromkeys(burst, sent))
    print(f"   request at the model {stats(requests)}")
    own = request_delays(sse, said)
    print(f"   ... from its own mention {stats(own)} (the last mention sent at {spread:.1f})")
    handled = request_delays(sse, said, handler=True)
    print(f"   ... to the model's handler  {stats(handled)}")
    print(f"   first POST   {stats([t.first_post for t in many])}")
    print(f"   final edit   {stats([t.final for t in many])}")
    ends = shown_after_end(sse, dict(zip(burst, many, strict=True)))
    print(f"   whole answer shown after the model's last chunk {stats(ends)}")
    print(f"   REST calls per turn {stats([float(t.calls) for t in many])}")
    print(f"   PATCH per turn      {stats([float(t.edits) for t in many])}")
    print(f"   all {len(burst)} answers complete after {wall:.0f} ms")
    print(f"   bot CPU per turn: {burst_cpu:.1f} ms")
    print(f"   this process (fake Discord, model) CPU: {harness_cpu:.0f} ms")
    print(f"   bot RSS after: {rss_mb(pid):.1f} MB, peak {rss_mb(pid, 'VmHWM'):.1f} MB")
    if show:
        timeline(fake, max(burst, key=lambda c: Turn(fake, c, sent).final), sent)
    return max(requests), max(t.first_post for t in many)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument(
        "--bursts", type=int, default=1, help="bursts in turn, each in new channels"
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print the REST calls of the slowest turns"
    )
    args = parser.parse_args()
    script = Script(chunks=[f"word{i} " for i in range(100)], interval=0.02, first_token=0.2)
    answer = script.answer.strip()
    async with fake_openai(script) as sse:
        fake = FakeDiscord(TOKEN, channels=1 + args.turns + args.channels * args.bursts)
        await fake.start()
        with TemporaryDirectory() as tmp:
            env = await fake.bot_env(Path(tmp) / "data", sse.url_v1, LOG_LEVEL="INFO")
            # The database as a restart finds it (migrated by an earlier start), so the
            # bot's memory is a running deployment's: Alembic loads only to migrate.
            migrate = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bot", "migrate"),
                cwd=tmp,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            assert await migrate.wait() == 0
            bot = await BotProcess.start(tmp, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                first_cid, *cids = fake.channel_ids
                print(
                    f"stream: 100 chunks over 2 s, first token after 200 ms ({len(answer)} chars)"
                )
                pid = bot.proc.pid
                print(f"RSS when ready (a restart: the database at head): {rss_mb(pid):.1f} MB")
                cpu_before = cpu_ms(pid)
                sent = time.monotonic()
                await fake.user_says(
                    f"<@{fake.bot_id}> count, channel {first_cid}", channel_id=first_cid
                )
                await fake.wait_until(functools.partial(done, fake, [first_cid], answer), 60)
                first = Turn(fake, first_cid, sent)
                await asyncio.sleep(0.3)
                print(
                    f"\n0. the first turn after start: first POST {first.first_post:.0f} ms, "
                    f"bot CPU {cpu_ms(pid) - cpu_before:.1f} ms"
                )
                print(f"\n1. single turns ({args.turns}), ms from the mention event")
                turns = []
                cpu_before = cpu_ms(pid)
                for cid in cids[: args.turns]:
                    sent = time.monotonic()
                    await fake.user_says(f"<@{fake.bot_id}> count, channel {cid}", channel_id=cid)
                    await fake.wait_until(functools.partial(done, fake, [cid], answer), 60)
                    turns.append(Turn(fake, cid, sent, answer))
                    await asyncio.sleep(0.3)  # the turn's last writes
                single_cpu = (cpu_ms(pid) - cpu_before) / len(turns)
                print(f"   first POST   {stats([t.first_post for t in turns])}")
                print(f"   final edit   {stats([t.final for t in turns])}")
                ends = shown_after_end(sse, dict(zip(cids, turns, strict=False)))
                print(f"   whole answer shown after the model's last chunk {stats(ends)}")
                t = turns[-1]
                print(
                    f"   REST calls per turn: {t.calls} "
                    f"(typing {t.typing}, POST {t.posts}, PATCH {t.edits})"
                )
                print(f"   bot CPU per turn: {single_cpu:.1f} ms")
                if args.timeline:
                    timeline(fake, cids[args.turns - 1], sent)

                tails: list[tuple[float, float]] = []  # (request at the model, first POST) max
                for n in range(args.bursts):
                    start = args.turns + n * args.channels
                    burst = cids[start : start + args.channels]
                    label = f" (burst {n + 1} of {args.bursts})" if args.bursts > 1 else ""
                    print(f"\n2. {len(burst)} channels at once{label}, ms from the mentions")
                    tails.append(await _burst(fake, sse, pid, burst, answer, args.timeline))
                if args.bursts > 1:
                    requests, posts = (statistics.median(t) for t in zip(*tails, strict=True))
                    print(
                        f"\nacross {args.bursts} bursts, the median of each burst's max: "
                        f"request at the model {requests:.1f} ms, first POST {posts:.1f} ms"
                    )
            finally:
                code = await bot.stop()
                await bot.close()
                await fake.stop()
            errors = [line for line in bot.lines if "ERROR" in line or "Traceback" in line]
            print(f"\nbot exit code {code}; error lines in its log: {len(errors)}")


if __name__ == "__main__":
    asyncio.run(main())
