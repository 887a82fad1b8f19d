"""An operator upgrading a populated database keeps everything: rows written as older
versions wrote them (plain SQL for that revision's schema), upgraded with `chatbot
migrate`, then read through `chatbot console` and the store."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Date, DateTime, LargeBinary, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import NullPool

from bot.connection import NotConnectable, endpoint_for
from bot.store import SecretBox, Store, generate_key, migrate
from bot.store.db import create_engine
from bot.store.secrets import associated_data
from bot.types import Actor, ChannelConfig, ChannelRef, Platform, Scope, SecretValue
from tests.discord.fake_openai import Script, fake_openai
from tests.e2e.test_copy_database import chatbot as run_chatbot

KEY = generate_key()
BOX = SecretBox.from_setting(KEY)
NOW = datetime.now(UTC).replace(microsecond=0)
HOSTILE = "Ünïcødé 🦊 \"double\" 'single' `tick` ; -- \\ «»"
LONG = HOSTILE * 150  # ~6,000 characters


async def _put(conn: AsyncConnection, table: str, **values: Any) -> None:
    """One row as an older version wrote it: plain SQL, values bound by their types."""
    names = ", ".join(values)
    statement = text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(f':{n}' for n in values)})")
    typed = []
    for name, value in values.items():
        if isinstance(value, datetime):
            typed.append(bindparam(name, type_=DateTime(timezone=True)))
        elif isinstance(value, date):
            typed.append(bindparam(name, type_=Date()))
        elif isinstance(value, bytes):
            typed.append(bindparam(name, type_=LargeBinary()))
        elif isinstance(value, list | dict):
            typed.append(bindparam(name, type_=JSON()))
    await conn.execute(statement.bindparams(*typed), values)


async def _on(url: str, work: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await work(conn)
    finally:
        await engine.dispose()


def _secret(place: tuple[str, str, str], name: str, value: str) -> dict[str, Any]:
    """A secret sealed as every version has sealed them (AES-GCM, the row as AAD)."""
    sealed = BOX.seal(SecretValue(value), associated_data(*place, name))
    platform, server_id, channel_id = place
    return {
        "platform": platform,
        "server_id": server_id,
        "channel_id": channel_id,
        "name": name,
        "key_id": sealed.key_id,
        "nonce": sealed.nonce,
        "ciphertext": sealed.ciphertext,
        "created_at": NOW,
        "updated_at": NOW,
    }


def _turn(channel: str, role: str, content: str, **later: Any) -> dict[str, Any]:
    return {
        "platform": "console",
        "server_id": "",
        "channel_id": channel,
        "thread_id": "",
        "role": role,
        "author": "Ädä 🦊" if role == "user" else None,
        "content": content,
        "token_estimate": max(1, len(content) // 4),
        "error": None,
        "created_at": NOW,
        **later,
    }


async def chatbot(cwd: Path, url: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """`python -m bot …` on the database at `url`, as an operator runs it."""
    return await run_chatbot(
        cwd, *args, stdin=stdin, DATABASE_URL=url, BOT_SECRET_KEYS=KEY, DATA_DIR=str(cwd)
    )


async def _rows(url: str, tables: list[str]) -> dict[str, list[dict[str, Any]]]:
    async def read(conn: AsyncConnection) -> dict[str, list[dict[str, Any]]]:
        found = {}
        for table in tables:
            rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            found[table] = [dict(row) for row in rows.mappings()]
        return found

    result: dict[str, list[dict[str, Any]]] = await _on(url, read)
    return result


async def test_keys_an_older_version_kept_reach_the_endpoint_as_they_are_set_now(
    tmp_path: Path,
) -> None:
    """Upgrade probe: `/key set` before 2026-12-03 kept a key as pasted, typographic quotes
    or a letter no header can carry included. After the upgrade the quoted one was sent
    with its quotes, and the other stopped every turn with "The endpoint … has a URL the
    bot cannot use. An admin sets it again with the proxy set command": not the URL's
    fault, and the advice did not mend it."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    await migrate.upgrade(url, "0001")
    async with fake_openai(Script(chunks=["Fine."])) as endpoint:

        async def fill(conn: AsyncConnection) -> None:
            for channel, key in [("quoted", "“sk-quoted-0123456789”"), ("accent", "sk-tëst-01234")]:
                place = ("console", "", channel)
                await _put(
                    conn,
                    "channel_configs",
                    platform="console",
                    server_id="",
                    channel_id=channel,
                    source="custom",
                    model="m-small",
                    proxy_url=endpoint.url_v1,
                    created_at=NOW,
                    updated_at=NOW,
                )
                await _put(conn, "secrets", **_secret(place, "custom_api_key", key))

        await _on(url, fill)
        code, out, err = await chatbot(tmp_path, url, "migrate")
        assert (code, out) == (0, "Database is at revision 0024.\n"), err

        code, out, err = await chatbot(
            tmp_path, url, "console", "--channel", "quoted", stdin="Hi\n"
        )
        assert code == 0 and "Fine." in out, out + err
        assert endpoint.authorizations == ["Bearer sk-quoted-0123456789"]

        code, out, err = await chatbot(
            tmp_path, url, "console", "--channel", "accent", stdin="Hi\n"
        )
    assert code == 0, err
    assert (
        "The custom key stored for this channel has a character that cannot be sent to an "
        "endpoint (an older version of the bot kept it). Set it again with /key set custom."
    ) in out
    assert "URL" not in out and "ë" not in out + err, out + err
    assert len(endpoint.authorizations) == 1  # nothing more was sent


async def test_an_old_secret_only_stops_a_turn_when_it_is_the_one_sent(tmp_path: Path) -> None:
    """A server's proxy password an older version kept with a letter no header carries is
    named with the command that sets it there; a key of the same kind that a proxy
    password replaces (SillyTavern's rule) is never sent, so it stops nothing."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    await migrate.upgrade(url, "0001")
    server, channel = ("discord", "g1", ""), ("discord", "g1", "c1")

    async def fill(conn: AsyncConnection) -> None:
        await _put(
            conn,
            "channel_configs",
            platform="discord",
            server_id="g1",
            channel_id="",
            source="openai",
            proxy_url="https://proxy.example/v1",
            created_at=NOW,
            updated_at=NOW,
        )
        await _put(conn, "secrets", **_secret(server, "openai_api_key", "sk-ölder-0123456789"))
        await _put(conn, "secrets", **_secret(server, "proxy_password", "pässword"))
        await _put(conn, "secrets", **_secret(channel, "proxy_password", "'fine-password'"))

    await _on(url, fill)
    await migrate.upgrade_to_head(url)
    store = await Store.open(url, BOX, defaults=ChannelConfig.of())
    try:
        ref = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
        config = await store.effective_config(ref)
        endpoint = await endpoint_for(store, ref, config)  # the channel's own password
        assert endpoint.credential() == SecretValue("fine-password")
        await store.clear_secret(ref, Scope.CHANNEL, "proxy_password", Actor("u", "U"))
        with pytest.raises(NotConnectable) as refused:
            await endpoint_for(store, ref, config, "!")
    finally:
        await store.close()
    assert str(refused.value) == (
        "The proxy password stored for this server has a character that cannot be sent to "
        "an endpoint (an older version of the bot kept it). An admin sets it again with "
        "!proxy password scope:server."
    )


async def test_a_held_direct_chat_key_is_not_given_to_the_group_by_a_downgrade(
    database_url: str,
) -> None:
    """Upgrade probe: a key set in a Matrix direct chat is held (not used) once the room
    becomes a group (0014). Down to 0013 and back, it came back marked as stored before
    0014, and was the room's again: its owner paid for the whole group's questions."""
    await migrate.upgrade(database_url, "0017")
    dm, group = ("matrix", "", "!dm:hs"), ("matrix", "", "!group:hs")

    async def fill(conn: AsyncConnection) -> None:
        personal = {"direct_chat": "personal", "owner": "@alice:hs"}
        await _put(conn, "secrets", **_secret(dm, "openai_api_key", "sk-alice-dm"), **personal)
        held = {"direct_chat": "held", "owner": "@bob:hs"}
        await _put(conn, "secrets", **_secret(group, "openai_api_key", "sk-bob-own"), **held)
        await _put(conn, "secrets", **_secret(group, "proxy_password", "the-rooms"))

    await _on(database_url, fill)
    await migrate.downgrade(database_url, "0013")
    await migrate.upgrade_to_head(database_url)

    store = await Store.open(database_url, BOX, defaults=ChannelConfig.of())
    try:
        found = {
            (room, name): await store.effective_secret(ChannelRef(Platform.MATRIX, room), name)
            for room in ("!dm:hs", "!group:hs")
            for name in ("openai_api_key", "proxy_password")
        }
    finally:
        await store.close()
    assert {place: value[1].reveal() for place, value in found.items() if value} == {
        ("!dm:hs", "openai_api_key"): "sk-alice-dm",  # settled again at the next start
        ("!group:hs", "proxy_password"): "the-rooms",
    }


_CARD = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {"name": "Fëx 🦊", "description": HOSTILE, "first_mes": "Hi!", "extensions": {}},
}


def _stages(url_v1: str) -> dict[str, Callable[[AsyncConnection], Awaitable[None]]]:
    """What each older version wrote, by the revision it ran at."""
    here = ("console", "", "console")

    async def at_0001(conn: AsyncConnection) -> None:
        await _put(
            conn,
            "channel_configs",
            platform="console",
            server_id="",
            channel_id="console",
            source="custom",
            model=f"mödel-🦊 {HOSTILE}",
            proxy_url=url_v1,
            bypass_status_check=True,
            system_prompt=LONG,
            temperature=0.7,
            stop=["END", "«stop»", "a,b"],
            seed=42,
            reply_mode="always",
            show_reasoning=True,
            created_at=NOW,
            updated_at=NOW,
        )
        await _put(
            conn,
            "channel_configs",
            platform="discord",
            server_id="g1",
            channel_id="",
            source="claude",
            temperature=1.5,
            created_at=NOW,
            updated_at=NOW,
        )
        await _put(conn, "secrets", **_secret(here, "custom_api_key", "sk-from-0001-0123456789"))
        await _put(conn, "secrets", **_secret(("discord", "g1", ""), "claude_api_key", "sk-g1"))
        for role, content in [("user", "Q1 🦊"), ("assistant", HOSTILE), ("user", LONG)]:
            await _put(conn, "messages", **_turn("console", role, content))
        await _put(conn, "messages", **_turn("console", "assistant", "A2"))
        await _put(
            conn,
            "model_cache",
            platform="console",
            server_id="",
            channel_id="console",
            source="custom",
            models=[{"id": "mödel-🦊"}],
            fetched_at=NOW,
        )
        await _put(
            conn,
            "audit_log",
            platform="console",
            server_id="",
            channel_id="console",
            actor_id="console",
            actor_name="Ädä 🦊",
            action="config.set",
            detail=HOSTILE,
            created_at=NOW,
        )

    async def at_0005(conn: AsyncConnection) -> None:
        later = {"state": "done", "image_count": 0}
        await _put(conn, "messages", **_turn("console", "user", "Q3", **later, hidden=False))
        await _put(
            conn,
            "messages",
            **_turn("console", "assistant", "A3 swiped away", **later, hidden=True),
        )
        await _put(conn, "messages", **_turn("console", "assistant", "A3", **later, hidden=False))
        await conn.execute(text("UPDATE messages SET reply_to = 5 WHERE id IN (6, 7)"))

    async def at_0009(conn: AsyncConnection) -> None:
        await _put(
            conn,
            "usage",
            created_at=NOW,
            day=NOW.date(),
            platform="console",
            server_id="",
            channel_id="console",
            thread_id="",
            user_id="console",
            source="custom",
            model="mödel-🦊",
            input_tokens=100,
            output_tokens=50,
            estimated=False,
            error=False,
            key_scope="channel",
            state="settled",
        )
        place = {"platform": "console", "server_id": "", "channel_id": "console"}
        await _put(
            conn,
            "limits",
            **place,
            name="tokens_per_user_day",
            value=12345,
            updated_by="console",
            updated_at=NOW,
        )
        await _put(
            conn,
            "access_rules",
            **place,
            kind="user",
            subject="bob 🦊",
            effect="deny",
            created_by="console",
            created_at=NOW,
        )
        await _put(
            conn,
            "characters",
            platform="discord",
            server_id="g1",
            channel_id="c1",
            name="Fëx 🦊",
            card=json.dumps(_CARD),
            updated_at=NOW,
        )

    async def at_0013(conn: AsyncConnection) -> None:
        await _put(
            conn,
            "waiting_turns",
            platform="discord",
            server_id="g1",
            channel_id="c1",
            thread_id="",
            post_id="p1",
            served_by="discord:0/1",
            process="host:1",
            created_at=NOW,
        )

    return {"0001": at_0001, "0005": at_0005, "0009": at_0009, "0013": at_0013}


OLD_TABLES = ["channel_configs", "secrets", "messages", "model_cache", "audit_log"]
LATER_TABLES = ["usage", "limits", "access_rules", "characters", "waiting_turns"]


def _as_written(
    before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """`after`'s rows with only the columns `before` had."""
    return {t: [{c: row[c] for c in rows[0]} for row in after[t]] for t, rows in before.items()}


async def test_a_populated_database_keeps_everything_through_an_upgrade_and_back(
    database_url: str, tmp_path: Path
) -> None:
    """Rows of every table, as the versions at 0001, 0005, 0009 and 0013 wrote them
    (hostile text: quotes, emoji, 6,000 characters), through `chatbot migrate`: each is
    there with the same values, the key decrypts and is sent, /settings, /limits, /access
    and /usage show what was set, the history is sent in order without the answer swiped
    away. Down to 0001 and up again, only what the later revisions added is gone."""
    async with fake_openai(Script(chunks=["A4"], models=["m"])) as endpoint:
        for revision, fill in _stages(endpoint.url_v1).items():
            await migrate.upgrade(database_url, revision)
            await _on(database_url, fill)
        before = await _rows(database_url, OLD_TABLES + LATER_TABLES)
        code, out, err = await chatbot(tmp_path, database_url, "migrate")
        assert (code, out) == (0, "Database is at revision 0024.\n"), err
        after = await _rows(database_url, OLD_TABLES + LATER_TABLES)
        assert _as_written(before, after) == before

        commands = "/settings\n/limits\n/access\n/usage\nQ4\n"
        code, out, err = await chatbot(tmp_path, database_url, "console", stdin=commands)
    assert code == 0, err
    for line in [
        f"Model: ``mödel-🦊 {HOSTILE}`` (this channel)",
        "Reply mode: always (this channel)",
        "Params (this channel): temperature=0.7, seed=42 (custom, mistral, openai only), "
        'stop=END, \\«stop\\», "a,b", reasoning=on',
        "tokens_per_user_day = 12,345 (channel)",
        "deny user bob 🦊 (here)",
        "Total: 150 tokens (100 in, 50 out) in 1 call.",
        "A4",
    ]:
        assert line in out, out
    [request] = endpoint.requests
    messages: list[dict[str, str]] = request["messages"]  # type: ignore[assignment]
    # Questions come named by who asked (the console's own user: the login name).
    sent = [(m["role"], m["content"].removeprefix("Ädä 🦊: ")) for m in messages]
    assert sent[-1][1].endswith(": Q4")
    assert sent[:-1] == [
        ("system", LONG),
        ("user", "Q1 🦊"),
        ("assistant", HOSTILE),
        ("user", LONG),
        ("assistant", "A2"),
        ("user", "Q3"),
        ("assistant", "A3"),
    ]
    assert endpoint.authorizations == ["Bearer sk-from-0001-0123456789"]

    served = await _rows(database_url, OLD_TABLES)
    await migrate.downgrade(database_url, "0001")
    down = await _rows(database_url, OLD_TABLES)
    swiped = [row for row in served["messages"] if row["content"] == "A3 swiped away"]
    served["messages"].remove(swiped[0])  # 0005's downgrade: older code would show it too
    assert down == _as_written(down, served)
    assert await migrate.upgrade_to_head(database_url) == "0024"
    assert {t: len(rows) for t, rows in (await _rows(database_url, LATER_TABLES)).items()} == {
        t: 0 for t in LATER_TABLES
    }


async def test_a_key_an_older_version_took_under_six_characters_is_named_and_kept_whole_words(
    tmp_path: Path,
) -> None:
    """Upgrade probe: `/key set custom none` was taken before keys took 6 characters (a
    stand-in for a local server that asks for none). It went on working, and every answer
    in the channel lost the word from inside others ("****theless"); `/settings` said
    "set", and nothing told the admin why words went missing. Now `/settings` and the
    status check say it is too short and how to mend it (never the key), and an answer
    loses it only where it stands as a word, also when a piece ends inside one, and beside
    text written without spaces ("密码none": any letter had joined its word)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    place = ("console", "", "old")
    chunks = ["There is none left; ", "none", "theless, NONE of it. 密码", "none", "です。"]
    async with fake_openai(Script(chunks=chunks)) as endpoint:
        setup = f"/source custom\n/proxy set {endpoint.url_v1}\n/model m-small\n"
        code, out, err = await chatbot(tmp_path, url, "console", "--channel", "old", stdin=setup)
        assert code == 0, out + err

        async def old_key(conn: AsyncConnection) -> None:
            await _put(conn, "secrets", **_secret(place, "custom_api_key", "none"))

        await _on(url, old_key)
        code, out, err = await chatbot(
            tmp_path, url, "console", "--channel", "old", stdin="/settings\n/connect\nhello\n"
        )
    assert code == 0, out + err
    fix = (
        "is shorter than 6 characters (an older version took it): answers here show **** for "
        "it where it stands as a word; set it again with /key set custom, or remove it with "
        "/key clear custom (an endpoint that asks for no key needs none)"
    )
    assert f"API key: set (channel); it {fix}" in out, out
    assert f"The custom key stored for this channel {fix}." in out, out
    assert "There is **** left; nonetheless, **** of it. 密码****です。" in out, out
    assert endpoint.authorizations[-1] == "Bearer none"  # it still works as it did
