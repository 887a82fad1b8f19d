"""The model list an endpoint last reported, per channel and source, and for which URL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import or_, select
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
        self,
        ref: ChannelRef,
        source: Source,
        url: str,
        models: Sequence[ModelInfo],
        scope: Scope = Scope.CHANNEL,
    ) -> None:
        """Replace the cached model list of this channel (or its server: `scope`) and
        source, fetched for `url`."""
        key = ref.scope_key(scope)
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

    async def get(
        self, ref: ChannelRef, source: Source, url: str, scopes: Sequence[Scope] = (Scope.CHANNEL,)
    ) -> list[ModelInfo] | None:
        """The newest list cached at `scopes` of this channel for this source and fetched
        for the endpoint URL `url` (not another server's models), or None when none was."""
        keys = [ref.scope_key(scope) for scope in scopes]

        async def read(session: AsyncSession) -> Sequence[ModelCacheRow]:
            return (
                await session.scalars(
                    select(ModelCacheRow).where(
                        or_(*(where(ModelCacheRow, key) for key in keys)),
                        ModelCacheRow.source == Source(source).value,
                        ModelCacheRow.endpoint_url == url,
                    )
                )
            ).all()

        rows = await self._db.read("model list read", read)
        if not rows:
            return None
        newest = max(rows, key=lambda row: row.fetched_at)
        return [_from_json(m) for m in newest.models]
