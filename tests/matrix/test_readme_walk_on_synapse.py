"""README's Matrix set-up walked as a new user does: `chatbot run` as its own process, in a
fresh folder whose `.env` was made from `.env.example` as `./scripts/run.sh` makes it, in an
environment of PATH and HOME alone, against a real Synapse; the model a real llama.cpp
server standing in for LM Studio. Then the steps taken the ways people take them.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
from aiohttp import web

from bot.store import SecretBox, Store
from bot.types import ChannelConfig, ChannelRef, Platform, Role, Source, TurnState
from tests.bot_process import BotProcess, keygen
from tests.loopback import serving
from tests.matrix.helpers import UserClient
from tests.peers.llamacpp import LlamaCppPeer
from tests.peers.synapse import MatrixUser, SynapseServer
from tests.readme import settings_for

pytestmark = pytest.mark.synapse

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-walk-Abcdefghijklmnop1234567890"
READY = "logged in to"


async def _fresh_folder(folder: Path, **settings: str) -> dict[str, str]:
    """`.env` as `./scripts/run.sh` writes it (`.env.example` with a new BOT_SECRET_KEYS),
    then `settings` put in it as a person edits it; the environment `chatbot run` gets:
    PATH and HOME, and where this checkout's `bot` is."""
    settings = {"BOT_SECRET_KEYS": await keygen(), **settings}
    await asyncio.to_thread(_write_env, folder, settings)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "PYTHONPATH": str(ROOT),
    }


def _write_env(folder: Path, settings: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = (ROOT / ".env.example").read_text()
    for name, value in settings.items():
        line = re.compile(rf"^{name}=.*$", re.MULTILINE)
        text = line.sub(f"{name}={value}", text) if line.search(text) else f"{text}{name}={value}\n"
    (folder / ".env").write_text(text)


async def _opened(folder: Path) -> Store:
    """The database `chatbot run` in `folder` writes, opened with its `.env`'s key."""
    dotenv = await asyncio.to_thread((folder / ".env").read_text)
    keys = re.search(r"^BOT_SECRET_KEYS=(.*)$", dotenv, re.MULTILINE)
    assert keys is not None
    return await Store.open(
        f"sqlite+aiosqlite:///{folder / 'data' / 'chatbot.db'}",
        SecretBox.from_setting(keys.group(1)),
        defaults=ChannelConfig.of(source=Source.OPENAI),
    )


def _matrix(server: SynapseServer, bot: MatrixUser, **more: str) -> dict[str, str]:
    """What README's quick start says to set for Matrix, with this server's values."""
    ours = {
        "MATRIX_HOMESERVER": server.url,
        "MATRIX_USER_ID": bot.user_id,
        "MATRIX_PASSWORD": bot.password,
    }
    return {name: ours[name] for name in settings_for("MATRIX_")} | more


async def test_the_readme_steps_for_a_local_server_in_a_group_room(
    synapse_server: SynapseServer, llamacpp_peer: LlamaCppPeer, tmp_path: Path
) -> None:
    """Invited before it runs, set up with the README's steps for a local server, typos
    and a member's admin commands on the way: every reply says what happened and the next
    step, nothing is stored wrongly, nothing secret reaches the log."""
    bot = synapse_server.register("bot")
    bob_user = synapse_server.register("bob")
    folder = tmp_path / "chatbot"
    env = await _fresh_folder(
        folder, **_matrix(synapse_server, bot, ALLOW_PRIVATE_ENDPOINTS="true")
    )
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, bob_user, tmp_path / "b")
    try:
        room = await alice.create_room([bot.user_id, bob_user.user_id], name="walk")
        await bob.join(room)
        process = await BotProcess.start(folder, env, ready_marker=READY)
        try:
            await process.wait_ready()
            await alice.wait_joined(room, bot.user_id)

            async def said(who: UserClient, text: str) -> str:
                return await who.command(room, bot.user_id, text)

            assert "Next: The custom source needs an endpoint URL" in await said(
                alice, "!source custom"
            )
            answer = await said(alice, f"!proxy set {llamacpp_peer.url}")
            assert "Status check: OK" in answer and "(added /v1 for you)" in answer, answer
            assert "Pick one with !model <id>" in answer, answer
            answer = await said(alice, "!models external")
            assert llamacpp_peer.model in answer, answer
            answer = await said(alice, "!modle smollm2")
            assert "Did you mean `model`?" in answer, answer
            answer = await said(alice, "!proxy set")
            assert "Missing `url`" in answer and "Usage: !proxy set <url>" in answer, answer
            answer = await said(bob, f"!model {llamacpp_peer.model}-not")
            assert answer.startswith(
                "Only admins of this room can use !model (members with power level "
            ), answer
            # A member who may not set it is told so, not sent to a direct chat (where
            # the same command, naming this room, would be refused).
            answer = await said(bob, f"!key set custom {KEY}")
            assert answer.startswith("Only admins of this room can use !key set ("), answer
            assert KEY not in answer, answer
            answer = await said(bob, "!key set custom")  # the key to follow
            assert answer.startswith("Only admins of this room can use !key set ("), answer
            answer = await said(alice, f"!key set custom {KEY}")
            assert "only take keys and passwords in a direct chat" in answer, answer
            assert f"room:{room}" in answer and KEY not in answer, answer
            assert await said(alice, f"!model {llamacpp_peer.model}") == (
                f"Model set to {llamacpp_peer.model}."
            )

            assert await said(alice, "!params max_tokens 40") == ("max_tokens set to 40.")
            store = await _opened(folder)
            try:
                where = ChannelRef(Platform.MATRIX, room)
                after = time.monotonic()
                asked = await bob.send(room, f"{bot.user_id}: Say hello.")
                first = await bob.answer_to(room, bot.user_id, asked, after, "the question")

                async def ended() -> str:
                    """What the room shows once the stored answer is whole (a length cap's
                    note under it: max_tokens 40 keeps the model's turn short)."""
                    answers = [
                        e
                        for e in await store.history(where, 10)
                        if e.role is Role.ASSISTANT and e.state is not TurnState.STREAMING
                    ]
                    shown = bob.shown_text(first.event.event_id)
                    if not answers or not answers[-1].content.strip():
                        return ""
                    return shown if shown.startswith(answers[-1].content.strip()) else ""

                deadline = time.monotonic() + 180  # two shared cores, a model among them
                while not (shown := await ended()):
                    assert time.monotonic() < deadline, bob.shown_text(first.event.event_id)
                    await asyncio.sleep(0.5)
                assert not shown.startswith("⚠️") and "Traceback" not in shown, shown
                assert await store.resolve_secret(where, "custom_api_key") is None
                config = await store.effective_config(where)
            finally:
                await store.close()
            code = await process.stop()
        finally:
            await process.close()
    finally:
        await alice.close()
        await bob.close()
    log = process.log
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and KEY not in log and bot.password not in log
    assert config.model == llamacpp_peer.model  # bob's changed nothing
    assert config.source == Source.CUSTOM


@pytest.mark.parametrize("route", ["/_matrix/client/v3/login", "/_matrix/client/"])
async def test_a_homeserver_url_pasted_with_an_api_route_logs_in(
    synapse_server: SynapseServer, tmp_path: Path, route: str
) -> None:
    """A URL copied from API docs or a curl line: the homeserver refused the login with
    M_UNRECOGNIZED, and the bot said to check MATRIX_USER_ID and MATRIX_PASSWORD, which
    were right."""
    bot = synapse_server.register("bot")
    env = await _fresh_folder(
        tmp_path, **_matrix(synapse_server, bot, MATRIX_HOMESERVER=synapse_server.url + route)
    )
    async with await BotProcess.start(tmp_path, env, ready_marker=READY) as process:
        await process.wait_ready()
        code = await process.stop()
    assert code == 0, process.log[-3000:]
    assert f"logged in to {synapse_server.url} as {bot.user_id}" in process.log


async def test_a_homeserver_url_whose_path_serves_no_client_api_names_the_url(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Synapse answers M_UNRECOGNIZED under a path it serves (`/_synapse/client`) that holds
    no client API: the URL is wrong, not the user id or the password."""
    bot = synapse_server.register("bot")
    homeserver = synapse_server.url + "/_synapse/client"
    settings = _matrix(synapse_server, bot, MATRIX_HOMESERVER=homeserver)
    env = await _fresh_folder(tmp_path, **settings)
    async with await BotProcess.start(tmp_path, env, ready_marker=READY) as process:
        code = await process.wait_exit()
    said = process.log
    assert code == 1, said
    assert f"{homeserver} did not answer as a Matrix homeserver. Check MATRIX_HOMESERVER" in said
    assert "MATRIX_PASSWORD" not in said and "Traceback" not in said
    assert bot.password not in said


@pytest.mark.parametrize("login", ["password", "token"])
async def test_a_server_name_whose_well_known_names_the_homeserver_logs_in_there(
    synapse_server: SynapseServer, tmp_path: Path, login: str
) -> None:
    """MATRIX_HOMESERVER set to the server name, as Element's sign-in takes it
    (`example.org` for @bot:example.org), when the homeserver itself is elsewhere
    (matrix.example.org): the bot said that address was no homeserver, where Element
    follows its /.well-known/matrix/client."""
    bot = synapse_server.register("bot")

    async def well_known(request: web.Request) -> web.Response:
        return web.json_response({"m.homeserver": {"base_url": synapse_server.url + "/"}})

    async def web_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>Our website</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/.well-known/matrix/client", well_known)
    app.router.add_route("*", "/{tail:.*}", web_page)
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with serving(app) as server_name:
            credentials = (
                {"MATRIX_PASSWORD": bot.password}
                if login == "password"
                else {"MATRIX_PASSWORD": "", "MATRIX_ACCESS_TOKEN": bot.access_token}
            )
            settings = _matrix(synapse_server, bot, MATRIX_HOMESERVER=server_name, **credentials)
            env = await _fresh_folder(tmp_path / "chatbot", **settings)
            async with await BotProcess.start(
                tmp_path / "chatbot", env, ready_marker=READY
            ) as process:
                await process.wait_ready()
                dm = await alice.create_room([bot.user_id], direct=True)
                await alice.wait_joined(dm, bot.user_id)
                answer = await alice.command(dm, bot.user_id, "!source custom")
                assert answer.startswith("Source set to custom."), answer
                code = await process.stop()
    finally:
        await alice.close()
    log = process.log
    assert code == 0, log[-3000:]
    assert f"MATRIX_HOMESERVER {server_name} names its homeserver {synapse_server.url}" in log
    assert f"logged in to {synapse_server.url} as {bot.user_id}" in log
    assert "Traceback" not in log and bot.password not in log and bot.access_token not in log


async def test_matrix_without_a_password_or_token_stops_before_the_database(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """MATRIX_PASSWORD left empty, as `.env.example` has it: the bot made and migrated its
    database first, then stopped with status 1, which a supervisor restarts as if a
    restart could help, where every other setting missing stops it at once with 2."""
    bot = synapse_server.register("bot")
    env = await _fresh_folder(tmp_path, **_matrix(synapse_server, bot, MATRIX_PASSWORD=""))
    async with await BotProcess.start(tmp_path, env, ready_marker=READY) as process:
        code = await process.wait_exit()
    said = process.log
    assert code == 2, said
    assert (
        "chatbot: Settings are inconsistent: MATRIX_HOMESERVER and MATRIX_USER_ID are set but "
        "neither MATRIX_PASSWORD nor MATRIX_ACCESS_TOKEN is: Matrix needs one of them to log in."
    ) in said
    assert "Traceback" not in said
    assert not (tmp_path / "data" / "chatbot.db").exists()
