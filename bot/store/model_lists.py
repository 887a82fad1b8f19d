"""The model list an endpoint last reported, per channel and source, and for which URL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.base import Database, where
from bot.store.models import ModelCacheRow, utcnow
from bot.types import ChannelRef, ModelInfo, Scope, Source
from bot.types.text import clean_text


def _to_json(model: ModelInfo) -> dict[str, Any]:
    return {
        "id": clean_text(model.id),
        "display_name": None if model.display_name is None else clean_text(model.display_name),
        "context_length": model.context_length,
        "vision": model.vision,
    }


def _from_json(data: Mapping[str, Any]) -> ModelInfo:
    return ModelInfo(
        id=str(data["id"]),
        display_name=data.get("display_name"),
        context_length=data.get("context_length"),
        vision=data.get("vision"),
    )


class ModelLists:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(
        self, ref: ChannelRef, source: Source, url: str, models: Sequence[ModelInfo]
    ) -> None:
        """Replace the cached model list of this channel and source, fetched for `url`."""
        key = ref.scope_key(Scope.CHANNEL)
        stmt = self._db.insert(ModelCacheRow).values(
            platform=key[0],
            server_id=key[1],
            channel_id=key[2],
            source=Source(source).value,
            models=[_to_json(m) for m in models],
            fetched_at=utcnow(),
            endpoint_url=url,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["platform", "server_id", "channel_id", "source"],
            set_={
                "models": stmt.excluded.models,
                "fetched_at": stmt.excluded.fetched_at,
                "endpoint_url": stmt.excluded.endpoint_url,
            },
        )

        async def work(session: AsyncSession) -> None:
            await session.execute(stmt)

        await self._db.write("model list write", work)

    async def get(self, ref: ChannelRef, source: Source, url: str) -> list[ModelInfo] | None:
        """The cached list, or None when none was stored for this channel and source, or
        it was fetched for another endpoint URL than `url` (another server's models)."""
        key = ref.scope_key(Scope.CHANNEL)

        async def read(session: AsyncSession) -> ModelCacheRow | None:
            return await session.scalar(
                select(ModelCacheRow).where(
                    where(ModelCacheRow, key), ModelCacheRow.source == Source(source).value
                )
            )

        row = await self._db.read("model list read", read)
        if row is None or row.endpoint_url != url:
            return None
        return [_from_json(m) for m in row.models]
