"""Tables (SQLAlchemy 2 declarative). The schema itself is made only by migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite (which stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; store timestamps in UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    # Explicit names keep constraints identical between SQLite and PostgreSQL, which
    # the drift test relies on.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# Short ids on every platform: Discord snowflakes, Matrix room ids (!x:server) fit.
_ID = String(255)


class ChannelConfigRow(Base):
    """Settings of one channel (or a server when channel_id is ''); NULL = not set here."""

    __tablename__ = "channel_configs"
    __table_args__ = (UniqueConstraint("platform", "server_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)

    source: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(Text)
    proxy_url: Mapped[str | None] = mapped_column(Text)
    resolved_url: Mapped[str | None] = mapped_column(Text)
    bypass_status_check: Mapped[bool | None] = mapped_column(Boolean)
    show_external_models: Mapped[bool | None] = mapped_column(Boolean)
    system_prompt: Mapped[str | None] = mapped_column(Text)
    temperature: Mapped[float | None] = mapped_column(Double)
    top_p: Mapped[float | None] = mapped_column(Double)
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    context_tokens: Mapped[int | None] = mapped_column(Integer)
    stop: Mapped[list[str] | None] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    reply_mode: Mapped[str | None] = mapped_column(String(16))
    show_reasoning: Mapped[bool | None] = mapped_column(Boolean)
    mistral_safe_prompt: Mapped[bool | None] = mapped_column(Boolean)

    status_ok: Mapped[bool | None] = mapped_column(Boolean)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_checked_url: Mapped[str | None] = mapped_column(Text)
    status_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_kind: Mapped[str | None] = mapped_column(String(32))  # ProviderError.kind

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SecretRow(Base):
    """One encrypted secret; the AAD (platform, server, channel, name) ties it to this row."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("platform", "server_id", "channel_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    name: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MessageRow(Base):
    """A stored conversation turn of a channel or thread."""

    __tablename__ = "messages"
    __table_args__ = (Index(None, "platform", "server_id", "channel_id", "thread_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    thread_id: Mapped[str] = mapped_column(_ID)
    role: Mapped[str] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    token_estimate: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # done | streaming (being written) | stopped | interrupted | failed (see TurnState)
    state: Mapped[str] = mapped_column(String(16), server_default="done", default="done")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelCacheRow(Base):
    """The model list an endpoint last reported for a channel and source."""

    __tablename__ = "model_cache"
    __table_args__ = (UniqueConstraint("platform", "server_id", "channel_id", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    source: Mapped[str] = mapped_column(String(16))
    models: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditRow(Base):
    """Who changed what, and when. `detail` never holds a secret value."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "platform", "server_id", "channel_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    actor_id: Mapped[str] = mapped_column(_ID)
    actor_name: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
