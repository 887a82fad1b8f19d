"""Character cards per channel or server (the V3 JSON and the image) and their greetings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.store.base import NAME_CHARS, Database, Key, audit_row, chain, key_of, rows_at, where
from bot.store.batch import Batcher
from bot.store.cache import ScopedCache
from bot.store.models import CharacterRow, MessageRow, utcnow
from bot.store.reads import TurnReads, conversation_of
from bot.types import Actor, ChannelRef, Role, Scope, TurnState
from bot.types.text import clean_text

# Above what bot.characters reads (2 MB JSON, 10 MB PNG): a guard, not the user's limit.
MAX_CARD_CHARS = 4 * 1024 * 1024
MAX_IMAGE_BYTES = 10 * 1024 * 1024
_CACHE_TTL = 30.0
_CACHE_ENTRIES = 2_000
_READ_BATCH = 200  # channels per batched read
_CARDS_AT = rows_at(  # without the image, which only an export or an avatar needs
    CharacterRow.platform,
    CharacterRow.server_id,
    CharacterRow.channel_id,
    CharacterRow.name,
    CharacterRow.card,
    CharacterRow.image.is_not(None),
    CharacterRow.updated_at,
)


@dataclass(frozen=True, slots=True)
class StoredCharacter:
    """A card as stored: where it is set, its name, its V3 JSON and (when asked) its image."""

    scope: Scope
    name: str
    card: str = field(repr=False)
    has_image: bool
    updated_at: datetime
    image: bytes | None = field(default=None, repr=False)


# A channel's row with no card: "no character here", whatever its server sets.
NO_CHARACTER = ""


class CharacterPart:
    """Reads fall through channel → server like settings; writes are audited. A channel
    row without a card (NO_CHARACTER) stops the fall: no character there."""

    def __init__(self, db: Database, reads: TurnReads) -> None:
        self._db = db
        self._reads = reads
        # What a turn reads (no image), per channel; None remembered too (most channels).
        self._cache: ScopedCache[tuple[StoredCharacter | None]] = ScopedCache(
            ttl=_CACHE_TTL, max_entries=_CACHE_ENTRIES
        )
        # Channels not read yet that ask together (a burst) share one query.
        self._reads_batch: Batcher[tuple[Key, ...], StoredCharacter | None] = Batcher(
            self._read_many, _READ_BATCH
        )

    async def get(self, ref: ChannelRef, *, with_image: bool = False) -> StoredCharacter | None:
        scope_key = ref.scope_key(Scope.CHANNEL)
        keys = chain(ref)
        generation = self._cache.generation()
        if not with_image:
            cached = self._cache.get(scope_key)
            if cached is not None:
                return cached[0]
            found = await self._reads_batch.submit(tuple(keys))
            found = None if found is not None and found.card == NO_CHARACTER else found
            self._cache.put(scope_key, scope_key, (found,), generation=generation)
            return found
        r = CharacterRow
        whole = select(r.channel_id, r.name, r.card, r.image.is_not(None), r.updated_at, r.image)

        async def read(session: AsyncSession) -> StoredCharacter | None:
            for key in keys:  # nearest first
                row = (await session.execute(whole.where(where(CharacterRow, key)))).first()
                if row is not None:
                    channel, name, card, has_image, updated_at, image = row
                    if card == NO_CHARACTER:
                        return None
                    scope = Scope.SERVER if channel == "" else Scope.CHANNEL
                    return StoredCharacter(scope, name, card, bool(has_image), updated_at, image)
            return None

        stored = await self._db.read("character read", read)
        if stored is not None:
            plain = StoredCharacter(
                stored.scope, stored.name, stored.card, stored.has_image, stored.updated_at
            )
            self._cache.put(scope_key, scope_key, (plain,), generation=generation)
        return stored

    async def turned_off(self, ref: ChannelRef) -> bool:
        """Whether the channel's own row is "none" (`/character none`)."""
        key = key_of(ref, Scope.CHANNEL)
        card = select(CharacterRow.card).where(where(CharacterRow, key))

        async def read(session: AsyncSession) -> bool:
            return bool(await session.scalar(card) == NO_CHARACTER)

        return await self._db.read("character read", read)

    async def _read_many(self, chains: Sequence[tuple[Key, ...]]) -> list[StoredCharacter | None]:
        """Each channel's card (nearest of its keys), without images, in one query."""
        wanted = sorted({key for keys in chains for key in keys})

        async def read(conn: AsyncConnection) -> dict[Key, StoredCharacter]:
            return {
                (platform, server, channel): StoredCharacter(
                    Scope.SERVER if channel == "" else Scope.CHANNEL,
                    name,
                    card,
                    bool(has_image),
                    updated_at,
                )
                for platform, server, channel, name, card, has_image, updated_at in (
                    await conn.execute(_CARDS_AT, {"keys": wanted})
                ).all()
            }

        found = await self._db.read_plain("character read", read)
        return [next((found[k] for k in keys if k in found), None) for keys in chains]

    async def put(
        self,
        ref: ChannelRef,
        scope: Scope,
        actor: Actor,
        name: str,
        card: str,
        image: bytes | None,
        action: str = "character import",
    ) -> None:
        """Store (replace) the card at `scope`; ValueError when it is over the caps. A
        card of NO_CHARACTER: no character here (`/character none`)."""
        if len(card) > MAX_CARD_CHARS or (image is not None and len(image) > MAX_IMAGE_BYTES):
            raise ValueError(
                "That card is too large to store; use one with a smaller image or lorebook."
            )
        key = key_of(ref, scope)
        shown = clean_text(name)[:NAME_CHARS]

        async def work(session: AsyncSession) -> None:
            now = utcnow()
            stmt = self._db.insert(CharacterRow).values(
                platform=key[0],
                server_id=key[1],
                channel_id=key[2],
                name=shown,
                card=card,
                image=image,
                updated_at=now,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["platform", "server_id", "channel_id"],
                set_={
                    "name": stmt.excluded.name,
                    "card": stmt.excluded.card,
                    "image": stmt.excluded.image,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            await session.execute(stmt)
            session.add(audit_row(key, actor, action, f"character={shown!r}"))

        await self._db.write("character write", work)
        self._cache.drop_scope(key)

    async def clear(self, ref: ChannelRef, scope: Scope, actor: Actor) -> str | None:
        """Remove the card at `scope`; its name when there was one (audited)."""
        key = key_of(ref, scope)

        async def work(session: AsyncSession) -> str | None:
            name = await session.scalar(select(CharacterRow.name).where(where(CharacterRow, key)))
            if name is None:
                return None
            await session.execute(delete(CharacterRow).where(where(CharacterRow, key)))
            session.add(audit_row(key, actor, "character clear", f"character={name!r} removed"))
            return name

        name = await self._db.write("character write", work)
        self._cache.drop_scope(key)
        return name

    async def add_greetings(self, ref: ChannelRef, name: str, texts: Sequence[str]) -> int:
        """Store greetings as one assistant turn: the first shown, the others its hidden
        alternatives (swipes), all tied to the first's id (their "question"). Its id."""
        assert texts, "a greeting needs text"
        author = clean_text(name)[:NAME_CHARS]
        platform, server_id, channel_id, thread_id = conversation_of(ref)

        def row(text: str, hidden: bool) -> MessageRow:
            return MessageRow(
                platform=platform,
                server_id=server_id,
                channel_id=channel_id,
                thread_id=thread_id,
                role=Role.ASSISTANT.value,
                author=author,
                content=clean_text(text),
                token_estimate=0,
                error=None,
                state=TurnState.DONE.value,
                image_count=0,
                hidden=hidden,
                created_at=utcnow(),
            )

        async def work(session: AsyncSession) -> int:
            rows = [row(t, i > 0) for i, t in enumerate(texts)]
            session.add_all(rows)
            await session.flush()
            ids = [r.id for r in rows]
            await session.execute(
                update(MessageRow).where(MessageRow.id.in_(ids)).values(reply_to=ids[0])
            )
            return ids[0]

        greeting_id = await self._db.write("history write", work)
        self._reads.histories.drop(conversation_of(ref))
        return greeting_id
