"""Persistence: configuration, encrypted secrets, history, model cache, audit log."""

from bot.store.characters import StoredCharacter
from bot.store.config import AuditEntry
from bot.store.errors import (
    StoreBusy,
    StoreDamaged,
    StoreError,
    StoreUnavailable,
    StoreUnwritable,
)
from bot.store.history import Posted
from bot.store.leases import Claim, Lease
from bot.store.repository import FOLLOWING_CLEARED, Store
from bot.store.secrets import SecretBox, SecretUnreadable, generate_key
from bot.store.vault import PROXY_PASSWORD, SECRET_NAMES, api_key_name
from bot.store.waiting import Unanswered

__all__ = [
    "FOLLOWING_CLEARED",
    "PROXY_PASSWORD",
    "SECRET_NAMES",
    "AuditEntry",
    "Claim",
    "Lease",
    "Posted",
    "SecretBox",
    "SecretUnreadable",
    "Store",
    "StoreBusy",
    "StoreDamaged",
    "StoreError",
    "StoreUnavailable",
    "StoreUnwritable",
    "StoredCharacter",
    "Unanswered",
    "api_key_name",
    "generate_key",
]
