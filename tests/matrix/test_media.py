"""Fetching a file an event names: the homeserver's answer checked, E2EE files decrypted
and verified, a file larger than declared refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import nio
import pytest
from nio.crypto import encrypt_attachment

from bot.frontends.matrix.api import DownloadFailed, MatrixApi
from bot.frontends.matrix.events import MediaFile
from bot.frontends.matrix.sink import RatePace

MXC = "mxc://example.org/abc"
DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


class MediaRepo:
    """Stands in for nio's client: answers downloads with what it was given."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def download(self, mxc: str) -> Any:
        self.asked.append(mxc)
        return self.answer


def api_for(answer: Any) -> tuple[MatrixApi, MediaRepo]:
    repo = MediaRepo(answer)
    return MatrixApi(repo, "unverified", RatePace()), repo  # type: ignore[arg-type]


def served(body: bytes) -> nio.MemoryDownloadResponse:
    return nio.MemoryDownloadResponse(body, "application/octet-stream", None)


async def test_a_plain_file_is_the_bytes_the_homeserver_serves() -> None:
    api, repo = api_for(served(DATA))
    assert await api.download(MediaFile(MXC, "x.png", "image/png", len(DATA))) == DATA
    assert repo.asked == [MXC]


async def test_an_encrypted_file_is_verified_then_decrypted() -> None:
    ciphertext, keys = encrypt_attachment(DATA)
    media = MediaFile(
        MXC, "x.png", key=keys["key"]["k"], sha256=keys["hashes"]["sha256"], iv=keys["iv"]
    )
    api, _ = api_for(served(ciphertext))
    assert ciphertext != DATA and await api.download(media) == DATA
    # One byte changed on the homeserver: the hash check fails, nothing is decrypted.
    tampered, _ = api_for(served(bytes([ciphertext[0] ^ 1]) + ciphertext[1:]))
    with pytest.raises(DownloadFailed, match="failed its check"):
        await tampered.download(media)
    wrong_key, _ = api_for(served(ciphertext))
    with pytest.raises(DownloadFailed):
        await wrong_key.download(replace(media, key="!!not base64!!"))


async def test_an_error_answer_or_a_file_larger_than_declared_is_refused() -> None:
    api, _ = api_for(nio.DownloadError("not found", status_code="M_NOT_FOUND"))
    with pytest.raises(DownloadFailed, match="M_NOT_FOUND"):
        await api.download(MediaFile(MXC, "x.png"))
    # The core checked the declared size; more than that is not taken.
    api, _ = api_for(served(DATA))
    with pytest.raises(DownloadFailed, match="where the event said 10"):
        await api.download(MediaFile(MXC, "x.png", size=10))
    assert await api.download(MediaFile(MXC, "x.png", size=0)) == DATA  # size not given
