"""Two `chatbot run` processes, one Discord shard each, on one PostgreSQL and one loopback
Discord with guilds on both shards: every guild is answered by exactly one process, a
config change is seen at once by the process serving the guild, a server-wide token
limit shared by two channels holds under a burst, and both processes' usage rows add up
in /usage and in `chatbot usage export`. A process started with another shard count than
those running waits for them to stop."""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.models import UsageRow
from tests.bot_process import BotProcess, bot_env, keygen
from tests.discord.fake_discord_shards import ShardedDiscord, guild_ids, shard_of
from tests.discord.fake_openai import Script, fake_openai

TOKEN = "loopback.bot.token-shards-0123456789"
ALICE = 300_000_000_000_000_101
CAROL = 300_000_000_000_000_102
BURST = 8  # messages per channel in the burst
REFUSED = "was refused by tokens_per_server_day"  # the log line of a refused turn


def _posts(fake: ShardedDiscord, channel_id: int) -> list[dict[str, object]]:
    """The bot's own messages in a channel (answers and refusals)."""
    return [
        c.body
        for c in fake.bot_calls("POST", f"/channels/{channel_id}/messages")
        if isinstance(c.body, dict)
    ]


def _said(fake: ShardedDiscord, interaction_id: str) -> Callable[[], str]:
    """What the bot answered to an interaction: its callback's text or a follow-up's."""

    def text() -> str:
        found = []
        for call in fake.calls:
            body = call.body if isinstance(call.body, dict) else {}
            if call.path.startswith(f"/interactions/{interaction_id}/"):
                found.append(str((body.get("data") or {}).get("content") or ""))
            elif call.path.startswith("/webhooks/") and call.method in ("POST", "PATCH"):
                found.append(str(body.get("content") or ""))
        return "\n".join(t for t in found if t)

    return text


async def _slash(fake: ShardedDiscord, channel_id: int, command: str, /, **options: str) -> str:
    before = len(fake.calls)
    interaction = await fake.admin_slash(channel_id, command, **options)
    seen = _said(fake, interaction)

    def answered() -> bool:
        return any(c.path.startswith("/webhooks/") for c in fake.calls[before:]) or any(
            c.path.startswith(f"/interactions/{interaction}/")
            and isinstance(c.body, dict)
            and int(c.body.get("type", 0)) == 4
            for c in fake.calls[before:]
        )

    await fake.wait_until(answered, 60)
    return seen()


def _shard_env(
    fake: ShardedDiscord, model_url: str, url: str, keys: str, data: Path, count: int, ids: str
) -> dict[str, str]:
    return bot_env(
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_URL=fake.api_url,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        DISCORD_SHARD_COUNT=str(count),
        DISCORD_SHARD_IDS=ids,
        DATABASE_URL=url,
        DATA_DIR=str(data),
        BOT_SECRET_KEYS=keys,
        ALLOW_PRIVATE_ENDPOINTS="true",
        DEFAULT_SOURCE="custom",
        DEFAULT_PROXY_URL=model_url,
        DEFAULT_MODEL="m-small",
        LOG_LEVEL="INFO",
    )


async def _usage_rows(url: str) -> dict[str, tuple[int, int]]:
    """server_id → (rows, tokens), straight from the database."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                select(
                    UsageRow.server_id,
                    func.count(),
                    func.sum(UsageRow.input_tokens + UsageRow.output_tokens),
                ).group_by(UsageRow.server_id)
            )
            return {str(s): (int(n), int(t or 0)) for s, n, t in found.all()}
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_processes_one_shard_each(tmp_path: Path, postgres_url: str) -> None:
    guilds = guild_ids(2, 2)  # two guilds on shard 0, two on shard 1
    fake = ShardedDiscord(TOKEN, guilds=guilds, shard_count=2)
    await fake.start()
    keys = await keygen()
    bots: list[BotProcess] = []
    async with fake_openai(Script(first_token=0.2)) as model:
        try:
            for shard in (0, 1):
                data = tmp_path / f"data{shard}"
                env = _shard_env(fake, model.url_v1, postgres_url, keys, data, 2, str(shard))
                bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
                bots.append(bot)
            for bot in bots:
                await bot.wait_ready(90)
            assert sorted(s for s, _ in fake.identified_shards) == [0, 1]

            # Each guild is answered by exactly one process: one answer per question.
            for g in guilds:
                await fake.says(fake.channels_of(g)[0], ALICE, f"hello {g}")
            await fake.wait_until(
                lambda: all(len(_posts(fake, fake.channels_of(g)[0])) >= 1 for g in guilds), 90
            )
            await asyncio.sleep(1.0)  # a second process answering would have posted by now
            assert [len(_posts(fake, fake.channels_of(g)[0])) for g in guilds] == [1, 1, 1, 1]
            for shard, bot in enumerate(bots):
                mine = [g for g in guilds if shard_of(g, 2) == shard]
                assert f"in {len(mine)} guilds" in bot.log, bot.log[-2000:]

            # A config change in a guild on shard 1 holds for its very next turn.
            target = next(g for g in guilds if shard_of(g, 2) == 1)
            first, second = fake.channels_of(target)
            said = await _slash(fake, first, "model", id="m-large")
            assert "Model set to m-large" in said, said
            await fake.says(first, ALICE, "which model now?")
            await fake.wait_until(lambda: len(_posts(fake, first)) >= 2, 60)
            assert model.requests[-1]["model"] == "m-large"

            # A server-wide token limit shared by two channels holds under a burst.
            rows = await _usage_rows(postgres_url)
            spent = rows.get(str(target), (0, 0))[1]
            limit = spent + 900
            said = await _slash(
                fake,
                first,
                "limits",
                action="set",
                name="tokens_per_server_day",
                value=str(limit),
                scope="server",
            )
            assert f"set to {limit:,} server-wide" in said, said
            before = {c: len(_posts(fake, c)) for c in (first, second)}
            serving = bots[shard_of(target, 2)]
            refusals_before = serving.log.count(REFUSED)
            burst = [fake.says(first, ALICE, f"burst a{i}") for i in range(BURST)]
            burst += [fake.says(second, CAROL, f"burst c{i}") for i in range(BURST)]
            await asyncio.gather(*burst)

            def burst_posts() -> list[dict[str, object]]:
                return [p for c in (first, second) for p in _posts(fake, c)[before[c] :]]

            def handled() -> int:
                """Burst messages answered, or refused (each logged; a member is told one
                refusal at a time, so their posts do not count every one)."""
                shown = burst_posts()
                answers = sum("Limit reached" not in str(p.get("content")) for p in shown)
                return answers + serving.log.count(REFUSED) - refusals_before

            for _ in range(1200):  # the log is no event of the fake's: looked at in turn
                if handled() >= 2 * BURST:
                    break
                await asyncio.sleep(0.1)
            new = burst_posts()
            refused = [p for p in new if "Limit reached" in str(p.get("content"))]
            answered = len(new) - len(refused)
            assert handled() == 2 * BURST, [p.get("content") for p in new]
            assert refused and answered, [p.get("content") for p in new]
            assert all("tokens_per_server_day" in str(p["content"]) for p in refused)
            await asyncio.sleep(1.0)  # the last settles
            rows = await _usage_rows(postgres_url)
            assert rows[str(target)][1] <= limit  # held: never over the limit
            assert rows[str(target)][0] == 2 + answered  # one row per answered turn

            # Both processes' rows add up: /usage in each guild, and the export.
            for g in guilds:
                said = await _slash(fake, fake.channels_of(g)[0], "usage", scope="server")
                _, tokens = rows[str(g)]
                assert f"Total: {tokens:,} tokens" in said, (g, said)
            codes = [await bot.stop() for bot in bots]
        finally:
            for bot in bots:
                await bot.close()
            await fake.stop()
    assert codes == [0, 0], "\n".join(b.log[-2000:] for b in bots)
    for bot in bots:
        assert "Traceback" not in bot.log and TOKEN not in bot.log
    since = datetime.now(UTC).date().isoformat()
    env = bot_env(DATABASE_URL=postgres_url, BOT_SECRET_KEYS=keys)
    export = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot", "usage", "export", "--since", since),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(export.communicate(), 120)
    assert export.returncode == 0, err.decode()
    exported = list(csv.DictReader(io.StringIO(out.decode())))
    by_guild: dict[str, int] = {}
    for row in exported:
        by_guild[row["server_id"]] = (
            by_guild.get(row["server_id"], 0) + int(row["input_tokens"]) + int(row["output_tokens"])
        )
    assert by_guild == {g: t for g, (_, t) in rows.items()}
    assert {shard_of(int(g), 2) for g in by_guild} == {0, 1}  # both processes wrote rows


@pytest.mark.postgres
async def test_a_process_with_another_shard_count_waits(tmp_path: Path, postgres_url: str) -> None:
    """Resharding from 2 to 3 with the new process started before the old one stops (as
    the README says a replacement may be): Discord sends a guild's messages to every
    session whose shard matches it under its own count, so both processes answered every
    question, charged and stored twice. The new one waits until the old one stops."""
    guilds = guild_ids(1, 2)
    fake = ShardedDiscord(TOKEN, guilds=guilds, shard_count=2)
    await fake.start()
    keys = await keygen()
    channels = [fake.channels_of(g)[0] for g in guilds]
    async with fake_openai(Script(chunks=["one answer"])) as model:
        old_env = _shard_env(fake, model.url_v1, postgres_url, keys, tmp_path / "old", 2, "0,1")
        new_env = _shard_env(fake, model.url_v1, postgres_url, keys, tmp_path / "new", 3, "0,1,2")
        try:
            async with await BotProcess.start(
                tmp_path, old_env, ready_marker="logged in to Discord"
            ) as old:
                await old.wait_ready(90)
                async with await BotProcess.start(
                    tmp_path, new_env, ready_marker="waiting for it to stop"
                ) as new:
                    await new.wait_ready(90)
                    assert "or this bot with another DISCORD_SHARD_COUNT" in new.log
                    for c in channels:
                        await fake.says(c, ALICE, "hello")
                    await fake.wait_until(lambda: all(_posts(fake, c) for c in channels), 60)
                    await asyncio.sleep(1.0)  # a second process answering would have by now
                    assert [len(_posts(fake, c)) for c in channels] == [1, 1]
                    assert len(model.requests) == 2
                    assert await old.stop() == 0
                    for _ in range(150):  # its next try finds the bot free (every 5 s)
                        if "logged in to Discord" in new.log:
                            break
                        await asyncio.sleep(0.1)
                    assert "the other process stopped; starting" in new.log, new.log[-2000:]
                    await fake.wait_until(lambda: (2, 3) in fake.identified_shards, 30)
                    for c in channels:
                        await fake.says(c, ALICE, "and now?")
                    await fake.wait_until(
                        lambda: all(len(_posts(fake, c)) >= 2 for c in channels), 60
                    )
                    assert [len(_posts(fake, c)) for c in channels] == [2, 2]
                    assert await new.stop() == 0
                    assert "Traceback" not in old.log + new.log
        finally:
            await fake.stop()
