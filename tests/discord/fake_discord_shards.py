"""The loopback Discord with several guilds and shards: each identify gets READY and
GUILD_CREATE for the guilds of its shard ((guild_id >> 22) % shard_count, Discord's
rule, under the count that identify gave), and each guild's events go to the websocket of
every session whose shard matches it (sessions with another count than the others get
some guilds' events twice, as on Discord). For running several `chatbot run` processes,
one shard each, against one fake."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.discord.fake_discord import (
    _CHANNEL_PATH,
    EVERYONE_PERMISSIONS,
    MESSAGE_CONTENT,
    Call,
    FakeDiscord,
)

MANAGE_GUILD = 1 << 5


def shard_of(guild_id: int, shard_count: int) -> int:
    return (guild_id >> 22) % shard_count


def guild_ids(per_shard: int, shard_count: int, start: int = 200_000_000_000_000_001) -> list[int]:
    """`per_shard` guild ids on each shard, in shard order."""
    found: dict[int, list[int]] = {s: [] for s in range(shard_count)}
    candidate = start
    while any(len(ids) < per_shard for ids in found.values()):
        shard = shard_of(candidate, shard_count)
        if len(found[shard]) < per_shard:
            found[shard].append(candidate)
        candidate += 1 << 22
    return [g for s in range(shard_count) for g in found[s]]


@dataclass
class ShardedDiscord(FakeDiscord):
    guilds: list[int] = field(default_factory=list)
    shard_count: int = 2  # what guild_ids laid the guilds out for
    channels_per_guild: int = 2
    # (shard, count) → socket
    sockets: dict[tuple[int, int], web.WebSocketResponse] = field(default_factory=dict)
    identified_shards: list[tuple[int, int]] = field(default_factory=list)

    def channels_of(self, guild_id: int) -> list[int]:
        """A guild's text channels: guild id + 1, + 2, …"""
        return [guild_id + 1 + i for i in range(self.channels_per_guild)]

    def guild_of_channel(self, channel_id: int) -> int:
        return next(g for g in self.guilds if channel_id in self.channels_of(g))

    @property
    def channel_ids(self) -> list[int]:
        return [c for g in self.guilds for c in self.channels_of(g)]

    def _guild_of(self, guild_id: int) -> dict[str, Any]:
        guild = self._guild()
        guild["id"] = str(guild_id)
        guild["name"] = f"Guild {guild_id}"
        guild["roles"][0]["id"] = str(guild_id)
        for channel, cid in zip(guild["channels"], self.channels_of(guild_id), strict=False):
            channel["id"] = str(cid)
        guild["channels"] = [
            {**guild["channels"][0], "id": str(cid), "name": f"chat-{i}", "position": i}
            for i, cid in enumerate(self.channels_of(guild_id))
        ]
        return guild

    def _message(
        self, mid: int, cid: int, author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]:
        message = super()._message(mid, cid, author, content, **extra)
        if cid in self.channel_ids:
            message["guild_id"] = str(self.guild_of_channel(cid))
        return message

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == 1:
                self._spawn(self._heartbeat_ack(ws))  # as FakeDiscord acks it
            elif op == 2:
                d = payload["d"]
                if d.get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                shard, count = d.get("shard", [0, 1])
                assert int(d.get("intents", 0)) & MESSAGE_CONTENT
                self.sockets[(shard, count)] = ws
                self.identified_shards.append((shard, count))
                mine = [g for g in self.guilds if shard_of(g, count) == shard]
                ready = self._ready(d)
                ready["guilds"] = [{"id": str(g), "unavailable": True} for g in mine]
                await self._send(ws, "READY", ready)
                for g in mine:
                    await self._send(ws, "GUILD_CREATE", self._guild_of(g))
                self.identified.set()
        return ws

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        """Also bodies with files (multipart: payload_json and the files), as /usage's
        chart comes; the files themselves are not kept."""
        if not request.content_type.startswith("multipart/"):
            return await super()._rest(request)
        path = "/" + request.match_info["tail"]
        payload: dict[str, Any] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == "payload_json":
                payload = json.loads(await part.text())
            elif isinstance(part, BodyPartReader):
                await part.read()
        await self._note(Call(request.method, path, payload))
        if path.startswith(("/interactions/", "/webhooks/")):
            return self._interaction_rest(request.method, path, payload)
        match = _CHANNEL_PATH.match(path)
        if request.method == "POST" and match and int(match["cid"]) in self.channel_ids:
            return self._json(self._post(int(match["cid"]), payload))
        return self._json({"message": "404: Not Found", "code": 0}, 404)

    async def _send(self, ws: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        frame = {"op": 0, "t": event, "s": next(self._seq), "d": data}
        await ws.send_str(json.dumps(frame))

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        """A guild's event to every socket whose shard matches it under its count."""
        guild = int(data["guild_id"])
        for (shard, count), ws in list(self.sockets.items()):
            if shard_of(guild, count) == shard and not ws.closed:
                await self._send(ws, event, data)

    async def stop(self) -> None:
        for ws in self.sockets.values():
            await ws.close()
        await super().stop()

    async def says(self, channel_id: int, user_id: int, content: str) -> int:
        """User `user_id` mentions the bot in `channel_id`; returns the message id."""
        mid = next(self._ids)
        author = self._user(user_id, f"user{user_id % 1000}")
        message = self._message(
            mid, channel_id, author, f"<@{self.bot_id}> {content}", mentions=[self.bot_user()]
        )
        message["member"] = {
            k: v for k, v in self._member(user_id, author["username"]).items() if k != "user"
        }
        await self._dispatch("MESSAGE_CREATE", message)
        return mid

    async def admin_slash(
        self, channel_id: int, name: str, sub: str = "", /, **options: str
    ) -> str:
        """A server admin (Manage Server) runs `/name sub option:value …` in `channel_id`;
        returns the interaction's id (its callback and follow-ups name it)."""
        await self.wait_until(lambda: name in self.command_ids, 30)  # registered meanwhile
        leaf = [{"type": 3, "name": k, "value": v} for k, v in options.items()]
        data = {
            "id": str(self.command_ids[name]),
            "name": name,
            "type": 1,
            "options": [{"type": 1, "name": sub, "options": leaf}] if sub else leaf,
        }
        interaction = self._interaction(2, data)
        guild = self.guild_of_channel(channel_id)
        permissions = str(EVERYONE_PERMISSIONS | MANAGE_GUILD)
        interaction["member"]["permissions"] = permissions
        interaction["guild_id"] = str(guild)
        interaction["channel_id"] = str(channel_id)
        interaction["channel"] = {
            **interaction["channel"],
            "id": str(channel_id),
            "guild_id": str(guild),
            "permissions": permissions,
        }
        interaction["authorizing_integration_owners"] = {"0": str(guild)}
        await self._dispatch("INTERACTION_CREATE", interaction)
        return str(interaction["id"])
