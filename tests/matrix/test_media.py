"""Fetching a file an event names: the homeserver's answer checked, E2EE files decrypted
and verified, a file larger than declared or than the caller takes never read whole. A
loopback server answers the media repository's download as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import nio
import pytest
from aiohttp import web
from nio.crypto import encrypt_attachment

from bot.frontends.matrix.api import DownloadFailed, MatrixApi
from bot.frontends.matrix.events import MediaFile
from bot.frontends.matrix.sink import RatePace
from tests.loopback import serving

MXC = "mxc://example.org/abc"
DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
TOKEN = "syt_loopback_token"
LIMIT = 10_000


class MediaRepo:
    """Serves one file (or an error, or a body that never ends) for any media id."""

    def __init__(self) -> None:
        self.body: bytes | None = DATA
        self.status = 200
        self.endless = False
        self.asked: list[tuple[str, str]] = []  # (path, Authorization)
        self.sent = 0  # bytes of an endless body written before the reader left

    async def download(self, request: web.Request) -> web.StreamResponse:
        self.asked.append((request.path_qs, request.headers.get("Authorization", "")))
        if not self.endless:
            return web.Response(body=self.body, status=self.status)
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(bytes(64 * 1024))
                self.sent += 64 * 1024
                await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):
            return response  # the reader went away


@pytest.fixture
async def served() -> AsyncIterator[tuple[MatrixApi, MediaRepo]]:
    repo = MediaRepo()
    app = web.Application()
    app.router.add_get("/_matrix/client/v1/media/download/{server}/{media}", repo.download)
    async with serving(app) as url:
        client = nio.AsyncClient(url, "@bot:example.org")
        client.access_token = TOKEN
        try:
            yield MatrixApi(client, "unverified", RatePace()), repo
        finally:
            await client.close()


async def test_a_plain_file_is_the_bytes_the_homeserver_serves(
    served: tuple[MatrixApi, MediaRepo],
) -> None:
    api, repo = served
    assert await api.download(MediaFile(MXC, "x.png", "image/png", len(DATA)), LIMIT) == DATA
    # Authenticated media, with the bot's own login in the header (never the query).
    assert repo.asked == [("/_matrix/client/v1/media/download/example.org/abc", f"Bearer {TOKEN}")]


async def test_an_encrypted_file_is_verified_then_decrypted(
    served: tuple[MatrixApi, MediaRepo],
) -> None:
    api, repo = served
    ciphertext, keys = encrypt_attachment(DATA)
    media = MediaFile(
        MXC, "x.png", key=keys["key"]["k"], sha256=keys["hashes"]["sha256"], iv=keys["iv"]
    )
    repo.body = ciphertext
    assert ciphertext != DATA and await api.download(media, LIMIT) == DATA
    # One byte changed on the homeserver: the hash check fails, nothing is decrypted.
    repo.body = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(DownloadFailed, match="failed its check"):
        await api.download(media, LIMIT)
    repo.body = ciphertext
    with pytest.raises(DownloadFailed):
        await api.download(replace(media, key="!!not base64!!"), LIMIT)


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (404, b'{"errcode": "M_NOT_FOUND", "error": "Not found"}', "M_NOT_FOUND"),
        (502, b"<html>Bad gateway</html>", "HTTP 502"),
        (403, b'{"errcode": "M_\\u0000\\u001b[31m", "error": "x"}', "HTTP 403"),
    ],
)
async def test_an_error_answer_is_refused_by_its_code(
    served: tuple[MatrixApi, MediaRepo], status: int, body: bytes, says: str
) -> None:
    api, repo = served
    repo.status, repo.body = status, body
    with pytest.raises(DownloadFailed, match=says) as err:
        await api.download(MediaFile(MXC, "x.png"), LIMIT)
    assert "\x1b" not in str(err.value) and "\x00" not in str(err.value)


async def test_a_file_larger_than_declared_is_read_no_further(
    served: tuple[MatrixApi, MediaRepo],
) -> None:
    api, _ = served
    # The core checked the declared size; one byte more tells it the file is larger (and
    # it says so to the person), without more of it held.
    assert await api.download(MediaFile(MXC, "x.png", size=10), LIMIT) == DATA[:11]
    assert await api.download(MediaFile(MXC, "x.png", size=0), LIMIT) == DATA  # not declared


async def test_a_file_that_never_ends_is_cut_off_after_what_the_caller_takes(
    served: tuple[MatrixApi, MediaRepo],
) -> None:
    """nio's own download held the whole body first: a sender who declared a small size
    (or none) and served more had it all read into memory before any check."""
    api, repo = served
    repo.endless = True
    got = await api.download(MediaFile(MXC, "x.bin", size=0), LIMIT)
    assert len(got) == LIMIT + 1  # one byte more than it takes: the caller refuses it
    declared = await api.download(MediaFile(MXC, "x.bin", size=500), LIMIT)
    assert len(declared) == 501  # one more than declared: the caller says it is larger
    # Read no further than the first parts of the stream (a socket buffer's worth).
    assert repo.sent < 8 * 2**20
