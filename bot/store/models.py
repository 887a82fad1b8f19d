"""Tables (SQLAlchemy 2 declarative). The schema itself is made only by migrations/."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false, text

from bot.fields import REGISTRY, Registry, Storage


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
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        }
    )


# Short ids on every platform: Discord snowflakes, Matrix room ids (!x:server) fit.
_ID = String(255)


_STORAGE_TYPES: dict[Storage, Any] = {
    Storage.TEXT: Text,
    Storage.SHORT: lambda: String(16),
    Storage.DOUBLE: Double,
    Storage.INTEGER: Integer,
    Storage.BIGINT: BigInteger,
    Storage.BOOLEAN: Boolean,
    Storage.JSON: JSON,
}


def setting_columns(registry: Registry = REGISTRY) -> list[Column[Any]]:
    """One nullable column per setting of the registry (NULL: not set at this scope)."""
    return [Column(f.key, _STORAGE_TYPES[f.stored_as](), nullable=True) for f in registry.fields]


class ChannelConfigRow(Base):
    """Settings of one channel (or a server when channel_id is ''); NULL = not set here.

    The setting columns come from the registry in bot.fields (one per setting); the
    rest is the row's place and the last status check.
    """

    __table__ = Table(
        "channel_configs",
        Base.metadata,
        Column("id", Integer, primary_key=True),
        Column("platform", String(16), nullable=False),
        Column("server_id", _ID, nullable=False),
        Column("channel_id", _ID, nullable=False),
        *setting_columns(),
        Column("status_ok", Boolean),
        Column("status_reason", Text),
        Column("status_checked_url", Text),
        Column("status_checked_at", UTCDateTime),
        Column("status_kind", String(32)),  # ProviderError.kind
        Column("status_step", Text),  # ProviderError.step: what an admin does about it
        Column("created_at", UTCDateTime, nullable=False, default=utcnow),
        Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
        UniqueConstraint("platform", "server_id", "channel_id"),
    )

    id: Mapped[int]
    platform: Mapped[str]
    server_id: Mapped[str]
    channel_id: Mapped[str]
    status_ok: Mapped[bool | None]
    status_reason: Mapped[str | None]
    status_checked_url: Mapped[str | None]
    status_checked_at: Mapped[datetime | None]
    status_kind: Mapped[str | None]
    status_step: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_url: Mapped[str | None]  # a setting column the status check writes


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
    # Set in a direct chat for that chat (its owner's): PERSONAL; HELD once the room
    # became a group (not used until set again); NULL for any other secret.
    direct_chat: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Who set a PERSONAL (or HELD) one: the direct chat's owner; NULL when not known.
    owner: Mapped[str | None] = mapped_column(_ID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MessageRow(Base):
    """A stored conversation turn of a channel or thread."""

    __tablename__ = "messages"
    __table_args__ = (
        Index(None, "platform", "server_id", "channel_id", "thread_id", "id"),
        # An id is never given twice, also after the newest turns were forgotten: buttons
        # and front-ends name turns by it (PostgreSQL's sequences never reuse one).
        {"sqlite_autoincrement": True},
    )

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
    image_count: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    reply_to: Mapped[int | None] = mapped_column(Integer)  # an answer: its question's id
    # An alternative answer not shown (regenerated, swiped away); history skips it.
    hidden: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    author_id: Mapped[str | None] = mapped_column(String(255))  # a question: who asked
    # A question that carried files (its own, or those of the message it replied to):
    # their text is part of its content, so an edit of its text keeps it as it was.
    files: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PostRow(Base):
    """A chat platform's message that shows a stored turn: the question as its asker sent
    it, each page of an answer (every answer the page showed). Deleting the message on
    the platform forgets the turn (HistoryPart.forget_posted)."""

    __tablename__ = "posts"
    __table_args__ = (
        Index(None, "platform", "post_id", "message_id", unique=True),
        Index(None, "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(Integer, ForeignKey("messages.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16))
    post_id: Mapped[str] = mapped_column(String(255))  # Discord message id, Matrix event id


class WaitingRow(Base):
    """A question waiting for its conversation's turn, by the process that holds it (only
    in its memory otherwise): a process that went away without answering it (`kill -9`,
    out of memory) leaves it here, and the one serving the same after it says so."""

    __tablename__ = "waiting_turns"
    __table_args__ = (Index(None, "platform", "served_by"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    thread_id: Mapped[str] = mapped_column(_ID)
    post_id: Mapped[str] = mapped_column(String(255))  # the question's platform message
    served_by: Mapped[str] = mapped_column(String(255))  # what serves it (a lease's claims)
    process: Mapped[str] = mapped_column(String(32))  # which process held it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlobRow(Base):
    """Bytes kept once by their hash (a prepared image), whoever sent them and how often."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageImageRow(Base):
    """An image a message showed; its name outlives the blob (then it is named, not sent)."""

    __tablename__ = "message_images"
    __table_args__ = (Index(None, "message_id"), Index(None, "sha256"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(Integer, ForeignKey("messages.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(32))


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
    # The endpoint URL the list was fetched for ("": the source's own API; None: not known,
    # fetched before 0023): offered only while the channel uses that URL.
    endpoint_url: Mapped[str | None] = mapped_column(Text, nullable=True)


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


class LimitRow(Base):
    """A quota set for a channel (or a server when channel_id is ''); NULL value: off."""

    __tablename__ = "limits"
    __table_args__ = (UniqueConstraint("platform", "server_id", "channel_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[int | None] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(_ID)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AccessRuleRow(Base):
    """Who may chat: allow or deny a user, a Discord role or Matrix power level, per
    channel (or server when channel_id is '')."""

    __tablename__ = "access_rules"
    __table_args__ = (UniqueConstraint("platform", "server_id", "channel_id", "kind", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    kind: Mapped[str] = mapped_column(String(16))  # user | role | level
    subject: Mapped[str] = mapped_column(_ID)
    effect: Mapped[str] = mapped_column(String(8))  # allow | deny
    created_by: Mapped[str] = mapped_column(_ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuotaLockRow(Base):
    """One row per server (a room without one: per room) that a charge locks first, so
    charges there run one after another on every process (PostgreSQL row lock, SQLite's
    write lock) and each sees the usage the one before it reserved. `charges` counts
    them: on PostgreSQL a charge that finds it moved on while it waited for the row reads
    the sums again."""

    __tablename__ = "quota_locks"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    server_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    channel_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    charges: Mapped[int] = mapped_column(BigInteger)


RESERVED = "reserved"
SETTLED = "settled"
RESERVED_ONLY = f"state = '{RESERVED}'"  # ix_usage_reserved's condition


class UsageRow(Base):
    """One provider call that cost tokens: who, where, which model, how many, whose key.

    Where a limit holds, a turn first reserves an estimate ("reserved", see
    store/quotas.py) and settles the real counts after the call ("settled"), in the same
    table, so a limit is one SUM over rows of one transaction on any number of processes.
    """

    __tablename__ = "usage"
    __table_args__ = (
        Index(None, "day"),
        Index(None, "platform", "server_id", "day"),
        Index(None, "platform", "server_id", "channel_id", "day"),
        Index(None, "platform", "user_id", "day"),
        # Rows not settled yet, however old (a crash, then a bot stopped for weeks):
        # few at any time, so a partial index, on PostgreSQL too (migration 0016; named
        # here, postgresql_where would load SQLAlchemy's PostgreSQL dialect into every
        # SQLite process). A query names its condition literally to use it (settle_stale).
        Index(
            "ix_usage_reserved",
            "created_at",
            sqlite_where=text(RESERVED_ONLY),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    day: Mapped[date] = mapped_column(Date)  # UTC day of created_at: what periods group by
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    thread_id: Mapped[str] = mapped_column(_ID)
    user_id: Mapped[str] = mapped_column(_ID)
    source: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(255))
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    estimated: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[bool] = mapped_column(Boolean)
    key_scope: Mapped[str] = mapped_column(String(16))  # channel | server | operator | none
    # SETTLED, or RESERVED: what a call not ended yet may use (a quota charge, or a held
    # row), replaced by what it used when it ends.
    state: Mapped[str] = mapped_column(String(16), server_default=SETTLED, default=SETTLED)


class CharacterRow(Base):
    """The character card of a channel (or a server's default when channel_id is ''):
    its V3 JSON and its image, both in the database."""

    __tablename__ = "characters"
    __table_args__ = (UniqueConstraint("platform", "server_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    name: Mapped[str] = mapped_column(String(255))
    card: Mapped[str] = mapped_column(Text)  # chara_card_v3 JSON
    image: Mapped[bytes | None] = mapped_column(LargeBinary)  # PNG without card chunks
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LoreTimersRow(Base):
    """A conversation's lorebook timed effects (sticky, cooldown: bot.characters.timed),
    as SillyTavern keeps them in a chat's metadata: written when a prompt is sent, gone
    with the conversation's turns on /reset."""

    __tablename__ = "lore_timers"
    __table_args__ = (UniqueConstraint("platform", "server_id", "channel_id", "thread_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(_ID)
    channel_id: Mapped[str] = mapped_column(_ID)
    thread_id: Mapped[str] = mapped_column(_ID)
    effects: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
