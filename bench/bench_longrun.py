"""What a long-running bot keeps in memory and on disk as channels keep coming.

Run: .venv/bin/python bench/bench_longrun.py [--channels 5000] [--rounds 2] [--flood 100]

A real Core on SQLite and a loopback OpenAI-compatible endpoint (tests/discord/fake_openai).
Each round brings `--channels` channels never seen before (Discord channels over 50
servers, and Matrix rooms); in each, an admin sets the proxy, runs the status check and
picks a model, someone asks one question, the admin lists the endpoint's models and asks
for /usage.
After each round it prints every container the Core's long-lived objects hold (a dict,
set, list or cache of the Core, its engine, store and provider hub, found by walking
their attributes) that holds 100 or more entries, the process's RSS, and the database's
rows per table. A container that grows by about the channels of each round grows
forever in a bot that runs for weeks.

Then `--flood`: one admin sends that many /connect and /models external in one channel,
all at once and then one after another, and the requests that reached the endpoint are
counted. Then `--big-list`: an endpoint that lists that many models (each with a long
display name, the whole list under the 16 MB a model list may have) is listed in 20
channels: the bytes the database keeps for it, and what `/models external` and one
`/model` autocomplete cost.
No target is asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import settle_start_up
from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import Actor, ChannelConfig, ChannelRef, Incoming, Platform, Source
from tests.discord.fake_openai import Script, fake_openai
from tests.loopback import serving

ADMIN = Actor("u-admin", "Ada", is_channel_admin=True)
SHOWN_FROM = 100  # containers smaller than this are left out


class Sink:
    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        return None

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        if error:
            raise RuntimeError(f"turn failed: {error}")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def file_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def containers(root: object, name: str = "core", depth: int = 5) -> Iterator[tuple[str, int]]:
    """(path, size) of every container reachable through attributes of our own objects."""
    seen: set[int] = set()

    def walk(obj: object, path: str, left: int) -> Iterator[tuple[str, int]]:
        if id(obj) in seen or left < 0:
            return
        seen.add(id(obj))
        if isinstance(obj, (dict, set, frozenset, list, tuple)) or hasattr(obj, "__len__"):
            try:
                size = len(obj)  # type: ignore[arg-type]
            except TypeError:
                size = -1
            if size >= 0 and not isinstance(obj, (str, bytes)):
                yield path, size
        if isinstance(obj, (dict, list, set, tuple, str, bytes, int, float)):
            return
        if not type(obj).__module__.startswith("bot."):
            return
        fields: dict[str, Any] = {}
        if hasattr(obj, "__dict__"):
            fields.update(vars(obj))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                fields[slot] = getattr(obj, slot)
        for key, value in fields.items():
            yield from walk(value, f"{path}.{key}", left - 1)

    yield from walk(root, name, depth)


async def table_rows(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = [
                r[0]
                for r in await conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
                )
            ]
            return {
                n: int((await conn.execute(text(f'SELECT count(*) FROM "{n}"'))).scalar_one())
                for n in names
                if not n.startswith("sqlite_")
            }
    finally:
        await engine.dispose()


def channel(i: int) -> ChannelRef:
    if i % 5 == 4:  # a fifth are Matrix rooms (no server)
        return ChannelRef(Platform.MATRIX, channel_id=f"!room{i}:example.org")
    return ChannelRef(Platform.DISCORD, channel_id=f"c{i}", server_id=f"g{i % 50}")


async def one_channel(core: Core, ref: ChannelRef, url: str) -> None:
    p = core.prefix(ref.platform)
    for command in (f"{p}proxy set {url}", f"{p}connect", f"{p}model m1"):
        reply = await core.run_text_command(Incoming(ref, ADMIN, command))
        assert reply.ok, reply.text
    asker = Actor(f"u{hash(ref) % 997}", "User")
    done = await core.chat(Incoming(ref, asker, "hello"), Sink())
    assert done.answer_id is not None, done
    for command in (f"{p}models external", f"{p}usage"):
        reply = await core.run_text_command(Incoming(ref, ADMIN, command))
        assert reply.ok, reply.text


async def rounds(channels: int, count: int, flood: int, tmp: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp}/longrun.db"
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.CUSTOM)
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    settle_start_up()
    core = Core(store, hub)
    async with fake_openai(Script(chunks=["Hi", " there"], models=["m1", "m2"])) as fake:
        history: list[dict[str, int]] = []
        for r in range(count):
            start = time.monotonic()
            done = r * channels
            for i in range(done, done + channels):
                await one_channel(core, channel(i), fake.url_v1)
            await core.housekeeping()
            gc.collect()
            sizes = dict(containers(core))
            history.append(sizes)
            print(
                f"after {done + channels} channels ({time.monotonic() - start:.0f} s this "
                f"round): RSS {rss_mb():.0f} MB"
            )
            for path, size in sorted(sizes.items()):
                before = history[-2].get(path, 0) if len(history) > 1 else 0
                if size >= SHOWN_FROM or before >= SHOWN_FROM:
                    print(f"  {path}: {size} (+{size - before})")
            rows = await table_rows(url)
            print("  rows: " + ", ".join(f"{n} {c}" for n, c in rows.items() if c))
            print(f"  database file {file_mb(tmp / 'longrun.db'):.1f} MB")
        if flood:
            ref = channel(0)
            for command in ("/connect", "/models external"):
                before = len(fake.headers)
                replies = await asyncio.gather(
                    *(core.run_text_command(Incoming(ref, ADMIN, command)) for _ in range(flood))
                )
                hits = len(fake.headers) - before
                ok = sum(r.ok for r in replies)
                print(
                    f"{flood} × {command} at once: {hits} request(s) reached the endpoint, "
                    f"{ok} replies ok"
                )
                before = len(fake.headers)
                for _ in range(flood):
                    await core.run_text_command(Incoming(ref, ADMIN, command))
                hits = len(fake.headers) - before
                print(f"{flood} × {command} one after another: {hits} request(s) reached it")
    await core.close()


async def big_list(models: int, tmp: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp}/biglist.db"
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.CUSTOM)
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    core = Core(store, hub)
    name = "N" * 120
    body = {"data": [{"id": f"model-{i:07d}", "name": f"{name}{i}"} for i in range(models)]}
    raw = web.json_response(body).body
    assert isinstance(raw, bytes)

    async def listing(request: web.Request) -> web.Response:
        return web.Response(body=raw, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/models", listing)
    print(f"an endpoint listing {models} models ({len(raw) / 1e6:.1f} MB):")
    try:
        async with serving(app) as served:
            rss = rss_mb()
            for i in range(20):
                ref = ChannelRef(Platform.MATRIX, channel_id=f"!big{i}:example.org")
                await core.run_text_command(Incoming(ref, ADMIN, f"!proxy set {served}/v1"))
                start = time.monotonic()
                reply = await core.run_text_command(Incoming(ref, ADMIN, "!models external"))
                took = time.monotonic() - start
                start = time.monotonic()
                await core.autocomplete(ref, ADMIN, "models", "model-00001")
                typed = time.monotonic() - start
                if i == 0:
                    print(
                        f"  /models external {took:.2f} s, one autocomplete {typed:.2f} s, "
                        f"reply {len(reply.text)} chars"
                    )
            gc.collect()
            size = file_mb(tmp / "biglist.db")
            print(
                f"  database after 20 channels listed it: {size:.1f} MB; "
                f"RSS {rss:.0f} → {rss_mb():.0f} MB"
            )
    finally:
        await core.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--flood", type=int, default=100)
    parser.add_argument("--big-list", type=int, default=80_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.rounds:
            await rounds(args.channels, args.rounds, args.flood, Path(tmp))
        if args.big_list:
            await big_list(args.big_list, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
