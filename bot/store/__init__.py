"""Persistence: configuration, encrypted secrets, history, model cache, audit log."""

from bot.store.repository import (
    CONFIG_FIELDS,
    SECRET_NAMES,
    AuditEntry,
    Store,
    api_key_name,
)
from bot.store.secrets import SecretBox, SecretUnreadable, generate_key

__all__ = [
    "CONFIG_FIELDS",
    "SECRET_NAMES",
    "AuditEntry",
    "SecretBox",
    "SecretUnreadable",
    "Store",
    "api_key_name",
    "generate_key",
]
