"""Encryption of stored secrets: AES-256-GCM, keys from BOT_SECRET_KEYS, rows bound by AAD."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.types import SecretValue
from bot.types.secrets import KEYGEN_HINT, SECRET_REGISTRY

log = logging.getLogger("bot.store")

SETTING = "BOT_SECRET_KEYS"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_HOW_TO_FIX = KEYGEN_HINT


def generate_key() -> str:
    """A new random 256-bit key as URL-safe base64, the form BOT_SECRET_KEYS expects."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def key_id_of(key: bytes) -> str:
    """A stable, non-secret name for a key, so rows say which key sealed them."""
    return hashlib.sha256(key).hexdigest()[:8]


def describe_scope(platform: str, server_id: str, channel_id: str) -> str:
    """Human words for a secret's row, used in errors (ids only, never values)."""
    if not channel_id:
        return f"server {server_id} on {platform}"
    if server_id:
        return f"channel {channel_id} (server {server_id}) on {platform}"
    return f"channel {channel_id} on {platform}"


def associated_data(platform: str, server_id: str, channel_id: str, name: str) -> bytes:
    """The AAD binding a ciphertext to its row.

    JSON rather than a plain `|` join so ids containing the separator cannot make two
    different rows produce the same AAD.
    """
    return json.dumps(["v1", platform, server_id, channel_id, name]).encode("utf-8")


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted. `str(err)` is safe to show a person."""

    def __init__(self, where: str, name: str, reason: str) -> None:
        self.where = where
        self.name = name
        self.reason = reason
        # Most often the operator's doing (a key added to SETTING while the bot ran, or
        # one removed too early): setting the secret again is the last resort, not the first.
        shown, command = _SHOWN.get(name) or (name.removesuffix("_api_key") + " key", "key set")
        super().__init__(
            f"The {shown} stored for {where} cannot be decrypted: {reason}. If the operator "
            f"changed {SETTING}, the bot needs every key that encrypted something in it, "
            f"and a restart with them; otherwise set it again with the {command} command."
        )


# A stored secret's name → what people call it, and the command that sets it.
_SHOWN = {"proxy_password": ("proxy password", "proxy password")}


@dataclass(frozen=True, slots=True)
class Sealed:
    """What is stored for one secret: the key id, nonce and ciphertext (tag included)."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


class SecretBox:
    """Encrypts with the first configured key; decrypts with any of them."""

    __slots__ = ("_ciphers", "_primary")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError(f"{SETTING} holds no key: {_HOW_TO_FIX}.")
        ciphers: dict[str, AESGCM] = {}
        for key in keys:
            if len(key) != _KEY_BYTES:
                raise ValueError(f"each key in {SETTING} must be {_KEY_BYTES} bytes")
            # setdefault: a key listed twice keeps its first position (first encrypts).
            ciphers.setdefault(key_id_of(key), AESGCM(key))
        self._ciphers = ciphers
        self._primary = key_id_of(keys[0])

    @classmethod
    def from_setting(cls, text: str | None) -> SecretBox:
        """Parse BOT_SECRET_KEYS (comma-separated); errors never echo the key text."""
        entries = [part.strip() for part in (text or "").split(",")]
        entries = [part for part in entries if part]
        if not entries:
            raise ValueError(f"{SETTING} is empty: {_HOW_TO_FIX}.")
        keys: list[bytes] = []
        for position, entry in enumerate(entries, start=1):
            odd = next((c for c in entry if c.isspace() or c in ";#"), None)
            if odd is not None:
                # Read leniently, `NEW OLD` was NEW alone: OLD's secrets went unreadable,
                # and `rotate-keys --forget-unreadable` deleted them.
                what = "a space or line break" if odd.isspace() else f"a {odd}"
                raise ValueError(
                    f"{SETTING} entry #{position} has {what} in it: separate keys with commas "
                    "only, and put a comment on a line of its own."
                )
            try:  # strictly: leniently read, a key run on into another was the first alone
                raw = base64.b64decode(
                    entry + "=" * (-len(entry) % 4), altchars=b"-_", validate=True
                )
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != _KEY_BYTES:
                raise ValueError(
                    f"{SETTING} entry #{position} is not a valid key (expected URL-safe "
                    f"base64 of {_KEY_BYTES} random bytes): {_HOW_TO_FIX}."
                )
            keys.append(raw)
        return cls(keys)

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def seal(self, value: SecretValue, aad: bytes) -> Sealed:
        """Encrypt under the first key with a fresh random nonce."""
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self._ciphers[self._primary].encrypt(
            nonce, value.reveal().encode("utf-8"), aad
        )
        return Sealed(self._primary, nonce, ciphertext)

    def open(self, sealed: Sealed, aad: bytes, *, where: str, name: str) -> SecretValue:
        """Decrypt, or raise SecretUnreadable naming the row (never the value); the log
        says so too (only the operator can mend BOT_SECRET_KEYS)."""
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            why = f"it was encrypted with key {sealed.key_id}, which this bot's {SETTING} lacks"
        else:
            try:
                plaintext = cipher.decrypt(sealed.nonce, sealed.ciphertext, aad)
            except InvalidTag:
                why = "the stored data does not match its row (altered or copied)"
            else:
                opened = plaintext.decode("utf-8")
                SECRET_REGISTRY.add(opened, stored=True)  # a short one too (_SecretRegistry)
                return SecretValue(opened)
        log.warning("cannot decrypt the %s stored for %s: %s", name, where, why)
        raise SecretUnreadable(where, name, why)

    def __repr__(self) -> str:
        return f"SecretBox(key_ids={list(self._ciphers)!r})"
