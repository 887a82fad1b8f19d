"""Start-up (login, failures, device id) and room membership against a real Synapse."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import nio
import pytest
from aiohttp import web

from bot.core import Core
from bot.frontends import FrontendError
from bot.frontends.matrix import run_matrix
from bot.frontends.matrix.session import LOGIN_TIMEOUT, log_in
from bot.types import (
    REDACTED,
    ChannelConfig,
    ChannelRef,
    Platform,
    Role,
    SecretValue,
    Source,
    TurnState,
    redact,
)
from tests.loopback import serving
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers._common import free_port
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    try:
        yield core
    finally:
        await core.close()


@pytest.fixture
async def alice(synapse_server: SynapseServer, tmp_path: Path) -> AsyncIterator[UserClient]:
    user = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        yield user
    finally:
        await user.close()


async def test_wrong_password_is_a_clear_frontend_error(
    synapse_server: SynapseServer, core: Core, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    options = bot_options(synapse_server, bot, tmp_path / "store")
    wrong = "wrong-" + bot.password
    options = type(options)(**{**_fields(options), "password": SecretValue(wrong)})
    with pytest.raises(FrontendError) as caught:
        await asyncio.wait_for(run_matrix(core, options), 30)
    message = str(caught.value)
    assert "refused the login" in message and "MATRIX_PASSWORD" in message
    assert wrong not in message and bot.password not in message
    assert caught.value.__cause__ is None


async def test_the_token_a_password_login_is_given_is_redacted_as_a_secret(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Reach probe: a login with MATRIX_PASSWORD gets an access token from the
    homeserver, sent in every request's header after it; the log's redaction did not
    know it (a proxy echoing the header, a library logging a request, showed it)."""
    bot = synapse_server.register("bot")
    client = nio.AsyncClient(synapse_server.url, bot.user_id)
    try:
        await log_in(
            client,
            user_id=bot.user_id,
            password=bot.password,
            access_token="",
            device_name="bot",
            store_dir=tmp_path / "store",
        )
        token = client.access_token
    finally:
        await client.close()
    assert token
    line = f"GET /sync with Authorization: Bearer {token} (and ?access_token={quote(token)})"
    cleaned = redact(line, shapes=False)
    assert token not in cleaned and quote(token) not in cleaned, cleaned


async def test_unreachable_homeserver_is_a_clear_frontend_error(
    synapse_server: SynapseServer, core: Core, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    options = bot_options(synapse_server, bot, tmp_path / "store")
    nowhere = f"http://127.0.0.1:{free_port()}"
    options = type(options)(**{**_fields(options), "homeserver": nowhere})
    with pytest.raises(FrontendError, match="cannot reach the Matrix homeserver") as caught:
        await asyncio.wait_for(run_matrix(core, options), 30)
    assert nowhere in str(caught.value)


async def refused_login(
    homeserver: str,
    store: Path,
    *,
    token: str = "",
    password: str = "not-used-0000",
    patience: float = LOGIN_TIMEOUT,
) -> str:
    """What log_in says when it gives up on `homeserver` (it must)."""
    client = nio.AsyncClient(homeserver, "@bot:localhost")
    try:
        with pytest.raises(FrontendError) as caught:
            await log_in(
                client,
                user_id="@bot:localhost",
                password="" if token else password,
                access_token=token,
                device_name="bot",
                store_dir=store,
                patience=patience,
            )
    finally:
        await client.close()
    return str(caught.value)


@pytest.mark.parametrize("silent", [True, False], ids=["silent server", "synapse over http"])
async def test_an_https_url_at_a_port_that_never_answers_ends_the_start_clearly(
    synapse_server: SynapseServer, tmp_path: Path, silent: bool
) -> None:
    """`MATRIX_HOMESERVER=127.0.0.1:8008` means https://; at a plain-http Synapse (or a
    port that takes the connection and says nothing) the start waited for minutes with
    only nio's "Timed out, sleeping" lines."""
    stalled: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    homeserver = (
        f"https://127.0.0.1:{port}" if silent else synapse_server.url.replace("http://", "https://")
    )
    try:
        said = await refused_login(homeserver, tmp_path, patience=3.0)
    finally:
        for writer in stalled:
            writer.close()
        server.close()
    assert f"cannot reach the Matrix homeserver at {homeserver}" in said, said
    assert "https://matrix.example.org; http:// if it serves no TLS)" in said, said
    if silent:
        assert "(no answer in 3 s, as a server that speaks plain HTTP at that port does)" in said


@pytest.mark.parametrize("token", ["", "syt_loopback_0000"], ids=["password", "token"])
async def test_a_web_page_at_the_homeserver_url_is_said_to_be_no_homeserver(
    tmp_path: Path, token: str
) -> None:
    """It said "the homeserver refused the login of @bot (None: unknown error)"."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>It works!</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    async with serving(app) as url:
        said = await refused_login(url, tmp_path, token=token)
    assert f"{url} did not answer as a Matrix homeserver. Check MATRIX_HOMESERVER" in said
    assert "None" not in said and "refused" not in said, said


async def test_a_refusal_that_repeats_the_login_never_shows_the_password(tmp_path: Path) -> None:
    """A proxy in front of the homeserver answered 403 with the request in its error
    text: MATRIX_PASSWORD went to stderr in clear, past the log's redaction."""
    password = "mxPass-W0rd/Secret+Very%Long"

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        error = {"errcode": "M_FORBIDDEN", "error": f"Invalid credentials: body={body}"}
        return web.json_response(error, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with serving(app) as url:
        said = await refused_login(url, tmp_path, password=password)
    assert "refused the login of @bot:localhost (M_FORBIDDEN: Invalid credentials" in said
    assert password not in said and quote(password, safe="") not in said, said
    assert REDACTED in said


async def test_bad_access_token_is_a_clear_frontend_error(
    synapse_server: SynapseServer, core: Core, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    options = bot_options(synapse_server, bot, tmp_path / "store")
    token = "syt_not_a_real_token_0000"
    options = type(options)(**{**_fields(options), "access_token": SecretValue(token)})
    with pytest.raises(FrontendError, match="refused MATRIX_ACCESS_TOKEN") as caught:
        await asyncio.wait_for(run_matrix(core, options), 30)
    assert token not in str(caught.value)


async def test_access_token_login_uses_the_tokens_device(
    synapse_server: SynapseServer, core: Core, alice: UserClient, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    store = tmp_path / "store"
    options = bot_options(synapse_server, bot, store)
    options = type(options)(
        **{
            **_fields(options),
            "password": SecretValue(""),
            "access_token": SecretValue(bot.access_token),
        }
    )
    async with running_bot(core, options):
        room_id = await alice.create_room([bot.user_id])
        await alice.wait_joined(room_id, bot.user_id)
    saved = json.loads((store / "session.json").read_text())
    assert saved == {"user_id": bot.user_id, "device_id": bot.device_id}


async def test_leaves_a_room_where_it_is_alone(
    synapse_server: SynapseServer, core: Core, alice: UserClient, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
        room_id = await alice.create_room([bot.user_id])
        await alice.wait_joined(room_id, bot.user_id)
        await alice.client.room_leave(room_id)
        admin = synapse_server.admin()

        def members() -> list[str]:
            path = f"/_synapse/admin/v1/rooms/{room_id}/members"
            found = synapse_server.get(path, admin.access_token)["members"]
            assert isinstance(found, list)
            return [str(m) for m in found]

        deadline = time.monotonic() + 30
        while bot.user_id in await asyncio.to_thread(members):
            assert time.monotonic() < deadline, "the bot stayed alone in the room"
            await asyncio.sleep(0.3)


async def test_declines_invites_from_servers_not_allowed(
    synapse_server: SynapseServer, core: Core, alice: UserClient, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    options = bot_options(
        synapse_server, bot, tmp_path / "store", allowed_inviters=(":elsewhere.example",)
    )
    async with running_bot(core, options):
        room_id = await alice.create_room([bot.user_id])

        def declined() -> bool:
            room = alice.client.rooms.get(room_id)
            return (
                any(
                    isinstance(s.event, nio.RoomMemberEvent)
                    and s.event.state_key == bot.user_id
                    and s.event.membership == "leave"
                    for s in alice.seen
                    if s.room_id == room_id
                )
                and room is not None
                and bot.user_id not in room.users
            )

        await alice.wait_for(declined, "the bot to decline the invite")


async def _membership_of(synapse_server: SynapseServer, room_id: str, user_id: str) -> str | None:
    """The user's membership in the room, as the homeserver's admin API states it."""
    admin = synapse_server.admin()
    path = f"/_synapse/admin/v1/rooms/{room_id}/state"
    state = (await asyncio.to_thread(synapse_server.get, path, admin.access_token))["state"]
    for event in state:
        if event.get("type") == "m.room.member" and event.get("state_key") == user_id:
            return str(event["content"].get("membership"))
    return None


async def test_an_invite_to_a_space_is_declined_without_a_word(
    synapse_server: SynapseServer,
    core: Core,
    alice: UserClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A space groups rooms; nobody chats in it. The bot had joined it and stayed."""
    caplog.set_level("INFO", logger="bot.frontends.matrix")
    bot = synapse_server.register("bot")
    async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
        response = await alice.client.room_create(space=True, name="Ours", invite=[bot.user_id])
        assert isinstance(response, nio.RoomCreateResponse), response
        space = str(response.room_id)
        deadline = time.monotonic() + 30
        while await _membership_of(synapse_server, space, bot.user_id) != "leave":
            assert time.monotonic() < deadline, "the bot did not decline the space's invite"
            await asyncio.sleep(0.3)
        # A room invited to next is joined: the bot did not stop joining rooms.
        room_id = await alice.create_room([bot.user_id])
        await alice.wait_joined(room_id, bot.user_id)
    posted = [
        s
        for s in alice.seen
        if s.room_id == space
        and getattr(s.event, "sender", "") == bot.user_id
        and not isinstance(s.event, nio.RoomMemberEvent)
    ]
    assert not posted
    # Declined from the invite's own state: it never joined (then left).
    joins = [
        s
        for s in alice.seen
        if s.room_id == space
        and isinstance(s.event, nio.RoomMemberEvent)
        and s.event.state_key == bot.user_id
        and s.event.membership == "join"
    ]
    assert not joins
    said = [r for r in caplog.records if space in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"] and "a space" in said[0].getMessage()


async def test_a_space_the_bot_is_in_is_left_at_its_start(
    synapse_server: SynapseServer, core: Core, alice: UserClient, tmp_path: Path
) -> None:
    """Joined before spaces were declined (or invited where the invite did not say it is
    one): the room's own state says so once the bot is in it."""
    bot = synapse_server.register("bot")
    response = await alice.client.room_create(space=True, invite=[bot.user_id])
    assert isinstance(response, nio.RoomCreateResponse), response
    space = str(response.room_id)
    as_bot = await UserClient.start(synapse_server, bot, tmp_path / "as-bot")
    try:
        await as_bot.join(space)
    finally:
        await as_bot.close()
    assert await _membership_of(synapse_server, space, bot.user_id) == "join"
    async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
        deadline = time.monotonic() + 30
        while await _membership_of(synapse_server, space, bot.user_id) != "leave":
            assert time.monotonic() < deadline, "the bot stayed in the space"
            await asyncio.sleep(0.3)


def _fields(options: object) -> dict[str, object]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}  # type: ignore[attr-defined]


async def test_kicked_in_the_middle_of_an_answer_it_stops_asking_the_model(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every edit after the kick is refused: the answer ends at the next one (stored as
    cut), the model's stream is closed, and no task is left with an unread error."""
    bot = synapse_server.register("kickbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    async with SSEEndpoint(chunks=300, span=60.0) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        try:
            async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
                room = await alice.create_room([bot.user_id, bob.user.user_id])
                await alice.wait_joined(room, bot.user_id)
                await bob.join(room)
                await bob.send(
                    room, "bot: a long story", **{"m.mentions": {"user_ids": [bot.user_id]}}
                )
                await bob.wait_for(
                    lambda: bob.messages(room, bot.user_id), "the answer's first text"
                )
                kicked = await alice.client.room_kick(room, bot.user_id, reason="enough")
                assert isinstance(kicked, nio.RoomKickResponse), kicked
                await bob.wait_for(lambda: endpoint.asked[0].cut, "the model's stream closed", 20.0)
                assert not endpoint.asked[0].ended
                gc.collect()
                await asyncio.sleep(0.5)
            [*_, stored] = await core.store.history(ChannelRef(Platform.MATRIX, room), 10)
        finally:
            await core.close()
            await alice.close()
            await bob.close()
    assert stored.role is Role.ASSISTANT and stored.content.startswith("w0\nw1 w2")
    assert stored.state is TurnState.STOPPED
    unread = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert unread == [], unread[0].getMessage()


async def test_what_a_room_said_before_the_bot_was_invited_is_not_acted_on(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Room admin probe: joining a room (or rejoining after a kick) answered the
    questions and ran the commands its last few messages held from before (a `!reset`
    sent while the bot was kicked wiped the conversation on its return)."""
    bot = synapse_server.register("latebot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    mention = {"m.mentions": {"user_ids": [bot.user_id]}}
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        ref = ChannelRef(Platform.MATRIX, "")
        try:
            async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
                room = await alice.create_room([bob.user.user_id])
                ref = ChannelRef(Platform.MATRIX, room)
                await bob.join(room)
                await bob.send(room, "bot: before you were here", **mention)
                await alice.send(room, "!reply mode always")
                await alice.invite(room, bot.user_id)
                await alice.wait_joined(room, bot.user_id)
                after = time.monotonic()
                await bob.send(room, "bot: now that you are here", **mention)
                await bob.reply_to(room, bot.user_id, after, "the answer")
                kicked = await alice.client.room_kick(room, bot.user_id, reason="a break")
                assert isinstance(kicked, nio.RoomKickResponse), kicked
                await bob.send(room, "bot: while you were out", **mention)
                await alice.send(room, "!reset")
                await alice.invite(room, bot.user_id)
                await alice.wait_joined(room, bot.user_id)
                await asyncio.sleep(3)  # what its join's sync held is handled by then
                assert [a.question for a in endpoint.asked] == ['"bot: now that you are here"']
                settings = await alice.command(room, bot.user_id, "!settings")
                assert "Reply mode: mention" in settings, settings
            stored = await core.store.history(ref, 10)
        finally:
            await core.close()
            await alice.close()
            await bob.close()
    assert [e.content.strip() for e in stored] == ["bot: now that you are here", endpoint.answer()]
