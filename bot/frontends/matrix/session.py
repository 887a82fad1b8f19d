"""Logging in: password or access token, with the device id kept under store_dir."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import nio

from bot.frontends import FrontendError
from bot.types import SecretValue, redact
from bot.types.text import shorten

log = logging.getLogger("bot.frontends.matrix")

SESSION_FILE = "session.json"


def load_device_id(store_dir: Path, user_id: str) -> str:
    """The device id saved for `user_id` ("" when none, or saved for another account)."""
    try:
        data = json.loads((store_dir / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict) or data.get("user_id") != user_id:
        return ""
    device = data.get("device_id")
    return device if isinstance(device, str) else ""


def save_device_id(store_dir: Path, user_id: str, device_id: str) -> None:
    """Persist the device id: the crypto store belongs to it, so it must survive restarts."""
    store_dir.mkdir(parents=True, exist_ok=True)
    path = store_dir / SESSION_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"user_id": user_id, "device_id": device_id}))
    tmp.replace(path)


# Logging in takes a homeserver a second or two. Without this, one that takes the
# connection and never answers (an https:// URL at a plain-http port: Synapse reads the
# TLS greeting as a request still coming) held the start for minutes, saying nothing.
LOGIN_TIMEOUT = 30.0


def unreachable(homeserver: str, err: BaseException, waited: float = 0.0) -> FrontendError:
    timed_out = isinstance(err, TimeoutError) and waited
    tls = homeserver.startswith("https://")
    why = f"no answer in {waited:g} s" if timed_out else type(err).__name__
    if timed_out and tls:  # the likeliest cause: it took the TLS greeting for a request
        why += ", as a server that speaks plain HTTP at that port does"
    hint = "; http:// if it serves no TLS" if tls else ""
    return FrontendError(
        f"cannot reach the Matrix homeserver at {homeserver} ({why}). "
        f"Check MATRIX_HOMESERVER (e.g. https://matrix.example.org{hint}) and that the "
        "server is up."
    )


class NotAHomeserver(FrontendError):
    """Nothing at MATRIX_HOMESERVER answered the client API (its .well-known may name
    where the homeserver is)."""


# What a homeserver says of a route it does not serve: its client API is not at this URL
# (a path after the host), not a wrong user id or password.
UNRECOGNIZED = "M_UNRECOGNIZED"


def not_a_homeserver(homeserver: str) -> FrontendError:
    """An answer with no Matrix error code: something else serves that URL (a web page,
    a proxy's error page); it said "refused the login (None: unknown error)". Or one with
    M_UNRECOGNIZED: a homeserver, but no client API under that path."""
    return NotAHomeserver(
        f"{homeserver} did not answer as a Matrix homeserver. Check MATRIX_HOMESERVER: "
        "the address clients use (its /_matrix/client API), e.g. https://matrix.example.org."
    )


async def log_in(
    client: nio.AsyncClient,
    *,
    user_id: str,
    password: str,
    access_token: str,
    device_name: str,
    store_dir: Path,
    patience: float = LOGIN_TIMEOUT,
) -> str:
    """Log `client` in and return its device id; FrontendError with the fix otherwise."""
    saved = await asyncio.to_thread(load_device_id, store_dir, user_id)

    async def logged_in() -> str:
        if access_token:
            return await _with_token(client, user_id, access_token, saved)
        if password:
            return await _with_password(client, password, device_name, saved)
        raise FrontendError("no Matrix credentials: set MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN.")

    try:
        async with asyncio.timeout(patience):
            try:
                device_id = await logged_in()
            except NotAHomeserver:
                if not await _delegated(client):
                    raise
                device_id = await logged_in()
    except (TimeoutError, aiohttp.ClientError, OSError) as err:
        raise unreachable(client.homeserver, err, patience) from None
    except ValueError as err:  # aiohttp's InvalidURL and friends
        raise FrontendError(
            f"MATRIX_HOMESERVER is not a usable URL ({type(err).__name__}); "
            "write it like https://matrix.example.org"
        ) from None
    if saved and saved != device_id:
        log.warning("logged in as a new device %s (was %s)", device_id, saved)
    await asyncio.to_thread(save_device_id, store_dir, user_id, device_id)
    return device_id


async def _delegated(client: nio.AsyncClient) -> bool:
    """Point `client` at the homeserver its URL's /.well-known/matrix/client names, as
    Element does with a server name (`example.org` for @bot:example.org, its homeserver
    at matrix.example.org); False when it names none (or a plain-http one for https)."""
    configured = client.homeserver
    response = await client.discovery_info()
    if not isinstance(response, nio.DiscoveryInfoResponse):
        return False
    found = response.homeserver_url.rstrip("/")
    scheme = found.partition("://")[0].lower()
    if found == configured or scheme not in ("http", "https") or not found.isprintable():
        return False
    if scheme == "http" and configured.startswith("https://"):  # the password in clear
        return False
    log.info(
        "MATRIX_HOMESERVER %s names its homeserver %s (/.well-known/matrix/client)",
        configured,
        found,
    )
    client.homeserver = found
    return True


async def _with_password(
    client: nio.AsyncClient, password: str, device_name: str, saved: str
) -> str:
    client.device_id = saved  # reuse the device (and so its crypto store) when known
    response = await client.login(password, device_name=device_name)
    if isinstance(response, nio.LoginError) and response.status_code in ("", None, UNRECOGNIZED):
        raise not_a_homeserver(client.homeserver)
    if isinstance(response, nio.LoginError):
        # Its words, not ours: a proxy in front of it may repeat the request, password
        # and all.
        said = shorten(redact(str(response.message), [password]), 300)
        raise FrontendError(
            f"the homeserver refused the login of {client.user} ({response.status_code}: "
            f"{said}). Check MATRIX_USER_ID and MATRIX_PASSWORD."
        )
    # The token the homeserver made for this login is a secret as MATRIX_ACCESS_TOKEN is:
    # known to the log's redaction (nio sends it in a header, and a proxy may echo it).
    SecretValue(str(response.access_token))
    return str(response.device_id)


async def _with_token(client: nio.AsyncClient, user_id: str, access_token: str, saved: str) -> str:
    client.access_token = access_token
    response = await client.whoami()
    if isinstance(response, nio.WhoamiError) and response.status_code in ("", None, UNRECOGNIZED):
        client.access_token = ""
        raise not_a_homeserver(client.homeserver)
    if isinstance(response, nio.WhoamiError):
        client.access_token = ""
        raise FrontendError(
            f"the homeserver refused MATRIX_ACCESS_TOKEN ({response.status_code}). "
            "Make a new token (log in as the bot and copy it) or use MATRIX_PASSWORD."
        )
    if response.user_id != user_id:
        raise FrontendError(
            f"MATRIX_ACCESS_TOKEN belongs to {response.user_id}, not MATRIX_USER_ID {user_id}."
        )
    # A token is bound to one device; the crypto store must be that device's.
    device_id = str(response.device_id or saved)
    if not device_id:
        raise FrontendError(
            "the homeserver did not say which device MATRIX_ACCESS_TOKEN belongs to; "
            "use MATRIX_PASSWORD instead."
        )
    client.restore_login(user_id, device_id, access_token)
    return device_id
