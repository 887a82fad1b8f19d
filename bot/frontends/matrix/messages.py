"""One room message → a command for the core, or a chat turn streamed back as edits."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import nio

from bot.commands.parse import CommandError
from bot.core import Core, PacedReply, split_text
from bot.frontends.matrix import events
from bot.frontends.matrix.access import is_room_admin
from bot.frontends.matrix.api import MatrixApi
from bot.frontends.matrix.secret_commands import (
    carries_secret,
    may_hold_secret,
    scrub_reply,
    split_target,
)
from bot.frontends.matrix.sink import MatrixTarget, SendFailed
from bot.types import Actor, ChannelRef, Incoming, Platform

log = logging.getLogger("bot.frontends.matrix")

_THREADS_KEPT = 5000
REDACT_REASON = "It contained a secret; the bot removed it."
_DELETED = "I deleted your message so the key does not stay in the room history."
_NOT_DELETED = (
    "⚠️ I could not delete your message (I need permission to remove messages here). "
    "Delete it yourself now: the key is visible in the room history."
)


@dataclass(frozen=True, slots=True)
class Message:
    """What the handler needs from one m.room.message event."""

    room_id: str
    event_id: str
    sender: str
    content: dict[str, Any]
    text: str


def reasoning_as_quote(answer: str, reasoning: str) -> str:
    """Shown reasoning as a Matrix block quote before the answer."""
    thought = reasoning.strip()
    if not thought:
        return answer
    quoted = "\n".join(f"> {line}" for line in f"💭 {thought}".split("\n"))
    return f"{quoted}\n\n{answer}" if answer else quoted


class MessageHandler:
    """Decides what a message is (command, chat, nothing) and dispatches it."""

    def __init__(self, core: Core, api: MatrixApi, admin_power_level: int) -> None:
        self._core = core
        self._api = api
        self._admin_level = admin_power_level
        self._threads: OrderedDict[str, None] = OrderedDict()  # threads it answered in
        self.display_name = ""

    @property
    def _prefix(self) -> str:
        return self._core.prefix(Platform.MATRIX)

    def _room(self, room_id: str) -> nio.MatrixRoom | None:
        room: nio.MatrixRoom | None = self._api.client.rooms.get(room_id)
        return room

    async def handle(self, msg: Message) -> None:
        room = self._room(msg.room_id)
        if room is None:
            return
        if msg.text.lstrip().startswith(self._prefix):
            await self._command(room, msg)
        else:
            await self._chat(room, msg)

    async def _actor(self, room: nio.MatrixRoom, user_id: str) -> Actor:
        level = int(room.power_levels.get_user_level(user_id))
        authority = None
        if level < self._admin_level:  # only then can being a creator change anything
            authority = await self._api.authority(room.room_id)
        admin = is_room_admin(user_id, level, authority, self._admin_level)
        name = room.user_name(user_id) or user_id
        return Actor(user_id, str(name), is_channel_admin=admin)

    # --- commands ------------------------------------------------------------------
    async def _command(self, room: nio.MatrixRoom, msg: Message) -> None:
        thread = events.thread_root(msg.content)
        direct = events.is_direct_room(room.member_count)
        note = ""
        table, p = self._core.table, self._prefix
        if may_hold_secret(msg.text, table, p):
            # Before anything else: a key must not stay in the history a second longer.
            redacted = await self._api.redact(msg.room_id, msg.event_id, REDACT_REASON)
            note = _DELETED if redacted else _NOT_DELETED
        answer = await self._run_command(room, msg, thread, direct, bool(note))
        if note:
            answer = scrub_reply(answer, msg.text, table, p)
        await self._notice(msg, thread, f"{answer}\n\n{note}" if note else answer)

    async def _run_command(
        self, room: nio.MatrixRoom, msg: Message, thread: str, direct: bool, secret: bool
    ) -> str:
        if secret and not direct:
            return (
                "I only take keys and passwords in a direct chat with me. Start one and send "
                f"the command there, naming this room with `room:{room.room_id}`."
            )
        try:
            # Only a direct chat may name another room: there it keeps keys out of groups.
            targeted = split_target(msg.text) if direct else None
            inv = self._core.parse(targeted.text if targeted else msg.text, Platform.MATRIX)
        except CommandError as err:
            return str(err)
        p = self._prefix
        if carries_secret(inv) and not direct:
            return (
                "I only take keys and passwords in a direct chat with me. Start one and send "
                f"`{p}{' '.join(inv.path)} … room:{room.room_id}` there."
            )
        target_room = room
        if targeted and targeted.target:
            found = await self._target_room(targeted.target, msg.sender)
            if isinstance(found, str):
                return found
            target_room, thread = found, ""
        actor = await self._actor(target_room, msg.sender)
        ref = ChannelRef(Platform.MATRIX, channel_id=target_room.room_id, thread_id=thread)
        command = self._core.command(inv.path)
        slow = command is not None and command.slow
        if slow:
            await self._api.typing(msg.room_id, True)
        try:
            reply = await self._core.run_command(ref, actor, inv)
        finally:
            if slow:
                await self._api.typing(msg.room_id, False)
        if target_room is not room:
            return f"[{target_room.display_name}] {reply.text}"
        return reply.text

    async def _target_room(self, target: str, sender: str) -> nio.MatrixRoom | str:
        """The room a DM command configures, or why it cannot."""
        room_id = await self._api.resolve_room(target)
        if room_id is None:
            return f"I can't find the room {target}. Check the alias, or use its room id."
        room = self._room(room_id)
        if room is None:
            return f"I'm not in {target}. Invite me there first."
        member = room.users.get(sender)
        if member is None or member.invited:
            return f"You are not a member of {target}."
        return room

    async def _notice(self, msg: Message, thread: str, text: str) -> None:
        target = MatrixTarget(
            self._api.send,
            msg.room_id,
            pace=self._api.pace,
            thread_root=thread,
            reply_to=msg.event_id,
            msgtype="m.notice",
        )
        try:
            for page in split_text(text, target.limit):
                await target.send(page)
        except SendFailed as err:
            log.warning("could not answer a command in %s: %s", msg.room_id, err)

    # --- chat ----------------------------------------------------------------------
    async def _addressed(
        self, room: nio.MatrixRoom, msg: Message, thread: str, ref: ChannelRef
    ) -> bool:
        if events.is_direct_room(room.member_count):
            return True
        me = self._api.user_id
        if events.mentions_user(msg.content, me, self.display_name):
            return True
        if thread and (thread in self._threads or await self._core.has_conversation(ref)):
            return True
        reply = events.replied_to(msg.content)
        return bool(reply) and await self._api.is_own_event(msg.room_id, reply)

    async def _chat(self, room: nio.MatrixRoom, msg: Message) -> None:
        thread = events.thread_root(msg.content)
        ref = ChannelRef(Platform.MATRIX, channel_id=msg.room_id, thread_id=thread)
        addressed = await self._addressed(room, msg, thread, ref)
        if not await self._core.should_answer(ref, addressed):
            return
        if thread:
            self._threads[thread] = None
            self._threads.move_to_end(thread)
            while len(self._threads) > _THREADS_KEPT:
                self._threads.popitem(last=False)
        direct = events.is_direct_room(room.member_count)
        text = events.strip_mention(msg.text, self._api.user_id, self.display_name)
        actor = await self._actor(room, msg.sender)
        target = MatrixTarget(
            self._api.send,
            msg.room_id,
            pace=self._api.pace,
            thread_root=thread,
            # In a direct chat a plain answer is clear; elsewhere say whom it answers.
            reply_to="" if direct and not events.replied_to(msg.content) else msg.event_id,
            mention="" if direct else msg.sender,
            typing=self._api.typing,
        )
        sink = PacedReply(target, render=reasoning_as_quote)
        incoming = Incoming(ref, actor, text, message_id=msg.event_id)
        try:
            await self._core.chat(incoming, sink)
        except SendFailed as err:
            log.warning("an answer in %s could not be delivered: %s", msg.room_id, err)
        finally:
            if not target.event_ids:
                await self._api.typing(msg.room_id, False)
