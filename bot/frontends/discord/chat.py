"""Chat messages: decide whether to answer, then stream the core's answer into the channel."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

import discord

from bot.commands.parse import CommandError, TypedCommand, plain_prefix, typed_command
from bot.core import Core, Edited, StoreError, unstored
from bot.frontends.discord.controls import AnswerSink
from bot.frontends.discord.events import (
    Blocked,
    MessageFacts,
    SendCheck,
    actor_for,
    attachment_of,
    blocked_by,
    channel_ref,
    ignore_reason,
    is_addressed,
    is_private_thread,
    send_check,
    strip_mention,
)
from bot.frontends.discord.failures import CALL_FAILED
from bot.frontends.discord.persona import Personas, Speaker, webhook_name
from bot.frontends.discord.sink import MIN_INTERVAL, DiscordTarget, NotPosted
from bot.types import ChannelRef, Incoming, Platform, Replied, failure, limits
from bot.types.recent import RecentIds
from bot.types.secrets import held_secret

log = logging.getLogger("bot.discord")

_USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)


def my_role_id(message: discord.Message) -> int | None:
    """The id of the role Discord made for the bot in this server, if any."""
    role = message.guild.self_role if message.guild is not None else None
    return role.id if role is not None else None


def message_facts(
    message: discord.Message,
    me: discord.ClientUser,
    webhook_ids: Collection[int] = (),
    *,
    repeated: bool = False,
) -> MessageFacts:
    """The plain facts `events` decides on, read off a discord.py message; `webhook_ids`:
    the character webhooks the bot speaks through (a reply to them is a reply to it);
    `repeated`: its id came before."""
    channel = message.channel
    ref = message.reference
    resolved = ref.resolved if ref is not None else None
    # People often pick the bot's own role from the mention list instead of the bot.
    role = my_role_id(message)
    return MessageFacts(
        author_is_bot=message.author.bot or message.author.id == me.id,
        is_user_message=message.type in _USER_MESSAGES,
        readable=bool(message.content.strip() or message.attachments),
        is_dm=isinstance(channel, discord.DMChannel),
        mentions_me=any(u.id == me.id for u in message.mentions)
        or (role is not None and any(r.id == role for r in message.role_mentions)),
        replies_to_me=isinstance(resolved, discord.Message) and _mine(resolved, me, webhook_ids),
        in_my_thread=isinstance(channel, discord.Thread) and channel.owner_id == me.id,
        repeated=repeated,
    )


async def replied_files(
    message: discord.Message, me: discord.ClientUser, webhook_ids: Collection[int]
) -> Replied | None:
    """The files of the message `message` replies to (a picture someone else posted,
    asked about), to go with it as if attached to it; None for a reply to the bot's own
    message or to one without files. Read as Discord resolved it, else fetched: without
    Read Message History (or once deleted) the question goes alone, as any other."""
    ref = message.reference
    if ref is None or ref.message_id is None or ref.type is not discord.MessageReferenceType.reply:
        return None  # a forward carries its own snapshot, not a question about it
    if ref.channel_id != message.channel.id:
        return None
    found = ref.resolved or ref.cached_message
    if found is None:
        try:
            found = await message.channel.fetch_message(ref.message_id)
        except CALL_FAILED as err:
            log.info("could not read the message a question replies to: %s", type(err).__name__)
            return None
    if not isinstance(found, discord.Message) or not found.attachments:
        return None  # deleted, or nothing to send
    if _mine(found, me, webhook_ids):
        return None  # the bot's answer (its `answer.md` too) is in the conversation
    return Replied(str(found.id), tuple(attachment_of(a) for a in found.attachments))


def _mine(message: discord.Message, me: discord.ClientUser, webhook_ids: Collection[int]) -> bool:
    """Posted by the bot: as itself, or through a webhook it made (those carry its
    application's id; the ids it knows cover a platform that leaves that out)."""
    if message.author.id == me.id:
        return True
    hook = message.webhook_id
    return hook is not None and (hook in webhook_ids or message.application_id == me.id)


def place_name(channel: Any) -> str:
    """A channel as a DM about it names it: `#name`, and a thread (or a forum post) with
    the channel it is in, whose permissions are the ones to change."""
    name = f"#{getattr(channel, 'name', None) or channel.id}"
    parent = getattr(channel, "parent", None) if isinstance(channel, discord.Thread) else None
    return f"{name} (a thread in #{parent.name})" if parent is not None else name


class NoAccessNotices:
    """Says once per channel that the bot may not post there (DM to the asker, and the log):
    once for all the threads of a channel (a forum's posts) when what is missing is the
    channel's permission."""

    def __init__(self) -> None:
        self._told: set[int] = set()

    def clear(self, *channel_ids: int | None) -> None:
        for channel_id in channel_ids:
            self._told.discard(channel_id or 0)

    async def tell(self, message: discord.Message, blocked: Blocked) -> None:
        channel = message.channel
        parent = getattr(channel, "parent_id", None) if blocked.parents else None
        key = parent or channel.id
        if key in self._told:
            return
        self._told.add(key)
        where = place_name(channel)
        guild = message.guild.name if message.guild else "a DM"
        log.warning("cannot post in channel %s (%s): %s", channel.id, guild, blocked.reason)
        text = f"I can't answer in {where} on {guild}: {blocked.reason}. {blocked.fix}"
        with contextlib.suppress(*CALL_FAILED):
            await message.author.send(text)


class UncachedThreads:
    """Threads discord.py has not cached (archived when the bot connected, so not in the
    server's list of active ones, and reopened since): their messages come with a bare
    channel, no parent, no permissions. Fetched once in a while, each is then the thread
    in its channel it is, with the channel's settings and permissions."""

    def __init__(self) -> None:
        # By channel id: when it was looked up, and the thread (None: it is no thread
        # this bot can place, its channel not seen).
        self._fetched: OrderedDict[int, tuple[float, discord.Thread | None]] = OrderedDict()
        # Lookups under way: a burst of messages reopening a thread waits on one.
        self._looking: dict[int, asyncio.Task[discord.Thread | Failed | None]] = {}

    async def place(self, message: discord.Message) -> bool | None:
        """Give `message` its thread when its channel is one not cached; whether it did
        (None: Discord failed the lookup, so where it belongs is not known)."""
        channel, guild = message.channel, message.guild
        if guild is None or not isinstance(channel, discord.PartialMessageable):
            return False
        # Discord's THREAD_UPDATE may have come since the message did: the cache's thread
        # is kept up to date (archived, locked), a fetched one is not.
        thread = guild.get_thread(channel.id)
        if thread is None:
            known = self._fetched.get(channel.id)
            if known is not None and known[0] >= time.monotonic() - UNCACHED_THREAD_SECONDS:
                self._fetched.move_to_end(channel.id)
                thread = known[1]
            else:
                looking = self._looking.get(channel.id)
                if looking is None:
                    looking = asyncio.get_running_loop().create_task(
                        self._look_up(guild, channel.id)
                    )
                    self._looking[channel.id] = looking
                    looking.add_done_callback(functools.partial(self._looked, channel.id))
                # Shielded: one waiter cancelled (a shutdown) does not end it for the rest.
                found = await asyncio.shield(looking)
                if found is FAILED:
                    return None
                thread = found
        if thread is None:
            return False
        # The rest of the turn (the reply, its permissions, a character's webhook) reads
        # the message's channel: it is this thread.
        message.channel = thread
        return True

    def _looked(self, channel_id: int, task: asyncio.Task[Any]) -> None:
        if self._looking.get(channel_id) is task:
            del self._looking[channel_id]

    async def _look_up(
        self, guild: discord.Guild, channel_id: int
    ) -> discord.Thread | Failed | None:
        """The thread `channel_id` is (None: none to place it in), remembered a while; a
        lookup Discord failed is given only to the messages that waited on it: the next
        one asks again."""
        try:
            found = await guild.fetch_channel(channel_id)
        except (*CALL_FAILED, discord.InvalidData) as err:
            log.warning(
                "could not look up channel %s (a thread not cached?): %s; its messages "
                "meanwhile are not answered",
                channel_id,
                _failed(err),
            )
            return FAILED
        # A thread's permissions are its parent's: without the parent, none to judge by,
        # as before.
        thread = found if isinstance(found, discord.Thread) and found.parent is not None else None
        self._fetched[channel_id] = (time.monotonic(), thread)
        self._fetched.move_to_end(channel_id)
        while len(self._fetched) > UNCACHED_THREADS_KEPT:
            self._fetched.popitem(last=False)
        return thread


class Failed(enum.Enum):
    """A thread's lookup that Discord failed (a 5xx, a lost connection)."""

    LOOKUP = "lookup"


FAILED = Failed.LOOKUP
# Said once per thread to whoever addressed the bot there, until an answer goes through.
LOOKUP_FAILED = Blocked(
    "Discord failed when I looked this thread up", "Send your message again in a moment."
)

# How long a fetched thread is believed (its archived and locked state may change: a
# post refused for it says so), and how many are kept.
UNCACHED_THREAD_SECONDS = 60.0
UNCACHED_THREADS_KEPT = 256


class ChatHandler:
    def __init__(
        self,
        core: Core,
        notices: NoAccessNotices,
        *,
        min_interval: float = MIN_INTERVAL,
        personas: Personas | None = None,
    ) -> None:
        self._core = core
        self._notices = notices
        self._min_interval = min_interval
        self._personas = personas or Personas(core)
        # Threads seen not to start on an answer, and when.
        self._not_on_answers: OrderedDict[str, float] = OrderedDict()
        # Messages handled lately: after a resume, Discord may send one again.
        self._recent = RecentIds()
        self._uncached = UncachedThreads()

    def _typed(self, text: str) -> TypedCommand | None:
        """A command typed into a message, not chat: `/key set …` as on the console, or
        Matrix's `!key set custom <key>` as the README shows it there (the console
        refuses that form too); its key must reach neither the model nor the history."""
        found = typed_command(text, self._core.table)
        matrix = self._core.prefix(Platform.MATRIX)
        if found is None and matrix != "/":
            found = typed_command(text, self._core.table, matrix, exact=True)
        return found

    def _typed_path(self, text: str, typed: TypedCommand) -> tuple[str, ...]:
        """The command a typed one names, as its slash command is (`/key set`, also when
        typed as on Matrix, `!key set …`); its name alone when the line does not parse."""
        line = plain_prefix(text.strip(), "/")
        matrix = self._core.prefix(Platform.MATRIX)
        if not line.startswith("/"):
            line = plain_prefix(line, matrix)
            line = "/" + line.removeprefix(matrix)
        try:
            path = self._core.parse(line, Platform.DISCORD, server=True).path
        except CommandError:
            path = tuple(typed.name.split())
        command = self._core.command(path)
        if command is not None and command.subcommands:  # `/key` alone: its first one
            path = (*path, command.subcommands[0].name)
        return path

    async def on_message(self, message: discord.Message, me: discord.ClientUser) -> None:
        """Whether and as whom to answer a message (a typed command, a channel the bot
        cannot post in, and messages not for it end here); `_answer` streams the answer."""
        key = str(message.id)
        repeated = key in self._recent
        facts = message_facts(message, me, self._personas.webhook_ids, repeated=repeated)
        self._recent.add(key)
        if ignore_reason(facts) is not None:
            return
        placed = await self._uncached.place(message)
        if placed:  # a thread after all: its own, in its channel
            facts = message_facts(message, me, self._personas.webhook_ids, repeated=repeated)
        elif placed is None:  # its channel's settings and rules unknown: not answered
            if is_addressed(facts):
                await self._notices.tell(message, LOOKUP_FAILED)
            return
        channel = message.channel
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        ref = channel_ref(channel.id, message.guild.id if message.guild else None, parent)
        addressed = is_addressed(facts)
        text = strip_mention(message.content, me.id, my_role_id(message))
        typed = self._typed(text)
        unread = False  # the database did not say how to answer here
        try:
            if not addressed and parent is not None:
                # A thread the bot already talks in (kept across restarts), or one started
                # on its answer ("Create Thread" on it: the thread's id is the message's),
                # needs no mention.
                addressed = await self._core.has_conversation(ref) or await self._on_answer(ref)
            if not await self._core.should_answer(ref, addressed):
                # A key command typed as a message (`/key set custom <key>`, as people do
                # when the slash command is not in their menu) is this bot's whether or not
                # it was mentioned: no other bot takes Discord commands as text, and the key
                # must not stay in the channel unsaid. Other messages not for it end here.
                if typed is None or not typed.secret:
                    return
            # A character's answer goes through the channel's webhook: not the bot's post
            # (in a DM, the bot's with the character's name in bold).
            speaker = await self._personas.speaker(channel, ref)
        except StoreError as err:
            # The database down or locked: the asker is told, as a turn that cannot store
            # its question tells them, not left waiting for an answer that never comes.
            log.warning("could not read how to answer a message in %s: %s", ref, err)
            if typed is None or not typed.secret:
                if addressed:
                    await _say(message, unstored(err), Voice())
                return
            speaker, unread = None, True  # a typed key is taken out all the same
        reply_to: discord.Message | None = message
        author = message.author
        guild = message.guild
        voice = Voice()
        check = None
        if guild is not None and not facts.is_dm:
            check, voice = _voices(channel, guild.me, speaker)
        if guild is None or check is None:
            actor = actor_for(author.id, author.display_name, None, in_dm=True)
        else:
            # Only a cached member has permissions; anyone else gets no admin rights.
            perms = channel.permissions_for(author) if isinstance(author, discord.Member) else None
            actor = actor_for(author.id, author.display_name, perms, in_dm=False)
            if isinstance(author, discord.Member):  # who-may-chat rules match role ids
                actor = replace(actor, roles=tuple(str(r.id) for r in author.roles))
        if typed is not None:
            if speaker is not None and speaker.hint:  # not said: said at the next answer
                self._personas.unsaid(channel)
            # Discord hides the admins' commands from everyone else: "pick it from the
            # menu" would send them looking for what is not there.
            path = self._typed_path(text, typed)
            try:  # where to type it is said all the same
                refusal = "" if unread else await self._core.access_refusal(ref, actor, path)
            except StoreError as err:
                log.warning("could not read who may run /%s in %s: %s", path[0], ref, err)
                refusal = ""
            await _typed_command(
                message, " ".join(path), typed.secret, voice, refusal, in_server=guild is not None
            )
            return
        if check is not None:
            if check.blocked is not None:
                if speaker is not None and speaker.hint:  # not said: said when it can be
                    self._personas.unsaid(channel)
                await self._notices.tell(message, check.blocked)
                return
            if not check.can_reply:
                reply_to = None
        incoming = Incoming(
            ref,
            actor,
            text,
            tuple(attachment_of(a) for a in message.attachments),
            str(message.id),
            await replied_files(message, me, self._personas.webhook_ids),
        )
        await self._answer(
            message, incoming, reply_to, speaker, voice, in_thread=parent is not None
        )

    async def _answer(
        self,
        message: discord.Message,
        incoming: Incoming,
        reply_to: discord.Message | None,
        speaker: Speaker | None,
        voice: Voice,
        *,
        in_thread: bool,
    ) -> None:
        """The core's answer to `incoming`, streamed into the message's channel (replying
        to `reply_to`; through the character's webhook when `speaker` is one), then what
        follows it: a held secret taken out, a refusal, the character's hint."""
        channel, guild, ref = message.channel, message.guild, incoming.channel

        async def forbidden(err: discord.Forbidden) -> None:
            # Asked now, not at the mention: a post or an edit refused mid-answer means
            # something changed since (a permission taken, the thread archived).
            mine = guild.me if guild is not None else None
            now = channel.permissions_for(mine) if mine is not None else None
            private = is_private_thread(channel)
            blocked = blocked_by(err.code, now, in_thread=in_thread, private=private)
            await self._notices.tell(message, blocked)

        target = DiscordTarget(
            channel,
            reply_to,
            forbidden,
            min_interval=self._min_interval,
            speaker=speaker,
            on_gone=lambda: self._core.answer_deleted(ref),
        )
        sink = AnswerSink(target, message.author.id)
        try:
            result = await self._core.chat(incoming, sink)
            await sink.settle(result)
            await self._core.shown_in(ref, result.answer_id, [str(m.id) for m in target.messages])
            if result.held_secret:  # not sent or kept; nor left in the channel, if allowed
                await _take_out(message, voice=voice)
            # One at a time: while it shows, the engine tells that member no other here.
            if result.refusal:  # shown or not: only a shown one keeps the next quiet
                shown = not target.blocked and await _say(
                    message, result.refusal, voice, delete_after=limits.REFUSAL_SECONDS
                )
                self._core.refusal_shown(incoming, result, shown)
            if speaker is not None and speaker.hint and not target.blocked:
                await channel.send(speaker.hint)
        except NotPosted:  # the target logged why; the turn stored the answer as cut
            await _tell_not_posted(message)
        except Exception as err:
            log.warning("a chat turn in %s failed: %s", ref, failure(err))
        finally:
            await target.close()
        if not target.blocked:
            self._notices.clear(channel.id, getattr(channel, "parent_id", None))

    async def tell(self, channel: Any, ref: ChannelRef, post: int, text: str) -> None:
        """`text` said of the message `post` in `channel` (a question a process that went
        away left unanswered) as the bot's own words are said: a reply where the bot may
        post and read the history, else with a link to it, posted by the bot or through
        the character's webhook (which posts without Send Messages); where neither gets
        through, the log names the channel. A channel not in the cache (a thread archived
        meanwhile) has no permissions to judge by: it is tried as is."""
        voice = Voice()
        me = getattr(getattr(channel, "guild", None), "me", None)
        known = not isinstance(channel, discord.PartialMessageable)
        if me is not None and known and hasattr(channel, "permissions_for"):
            try:
                speaker = await self._personas.speaker(channel, ref)
            except Exception as err:  # the database: said by the bot alone, where it may
                log.info("could not look up the character in %s: %s", ref, failure(err))
                speaker = None
            if speaker is not None and speaker.hint:  # not said: said at the next answer
                self._personas.unsaid(channel)
            _, voice = _voices(channel, me, speaker)
        asked = channel.get_partial_message(post)
        if not (voice.post and voice.reply):  # no reply: a link says which question
            text = f"{text} ({asked.jump_url})"
        await _say(asked, text, voice)

    async def _on_answer(self, thread: ChannelRef) -> bool:
        """Whether `thread` was started on one of the bot's answers; a thread that was not
        is remembered for a minute, so its chatter does not read the database message by
        message (and one started while its answer was still written is found after)."""
        now = time.monotonic()
        if self._not_on_answers.get(thread.thread_id, -1e9) > now - NOT_ON_AN_ANSWER_SECONDS:
            return False
        if await self._core.shows_an_answer(thread, thread.thread_id):
            return True
        self._not_on_answers[thread.thread_id] = now
        self._not_on_answers.move_to_end(thread.thread_id)
        while len(self._not_on_answers) > 4096:
            self._not_on_answers.popitem(last=False)
        return False

    async def on_edit(
        self,
        payload: discord.RawMessageUpdateEvent,
        me: discord.ClientUser,
        channel: discord.PartialMessageable,
        role_id: int | None,
    ) -> None:
        """A member edited a message: a question the bot keeps reads as edited from the
        next turn on (the answer stays as it was; one that carried files keeps its text,
        the core knows which); the bot's own edits (its answers growing) are not
        questions."""
        data = payload.data
        author = data.get("author") or {}
        content = data.get("content")
        if not isinstance(content, str) or author.get("bot"):
            return
        text = strip_mention(content, me.id, role_id)
        done = await self._core.edited(
            Platform.DISCORD,
            str(payload.channel_id),
            str(payload.message_id),
            text,
            author=str(author.get("id", "")),
            # A command is never chat: it keeps the question as it was, and is only
            # looked at for secrets.
            rewrite=self._typed(text) is None,
        )
        if done is Edited.HELD_SECRET:
            held = channel.get_partial_message(payload.message_id)
            said = held_secret("edit", self._core.prefix(Platform.DISCORD))
            # Said after the message is gone: whose edit it was (a mention pings nobody).
            whose = f"<@{author['id']}> " if str(author.get("id", "")).isdigit() else ""
            await _take_out(held, f"{whose}{said} ")


NOT_ON_AN_ANSWER_SECONDS = 60.0  # how long a thread found not to start on one is believed


async def _typed_command(
    message: discord.Message,
    name: str,
    secret: bool,
    voice: Voice,
    refusal: str,
    *,
    in_server: bool,
) -> None:
    """The command `name` typed into a message: not chat. Say where commands are
    (`refusal`: why it is not the author's to run here, said instead); a message that
    may hold a key (`secret`) is deleted where the bot may (Manage Messages), else its
    author is asked to."""
    if refusal:
        text = f"{refusal} I did not send your message anywhere."
    else:
        text = (
            f"Commands here are Discord's slash commands: type `/{name}` and pick it "
            "from the menu. I did not send your message anywhere."
        )
        if in_server:  # a DM offers every command to whoever may run it
            text += (
                " Not in the menu? A server admin invites the bot again with the "
                "applications.commands scope."
            )
    deleted = False
    if secret:
        if not refusal:
            text += " A key or password is asked for privately once you pick the command."
        with contextlib.suppress(*CALL_FAILED):
            await message.delete()
            deleted = True
        text += (
            " I deleted your message, which may have held one."
            if deleted
            else " Delete your message if it held one."
        )
    await _say(message, text, voice, reply=not deleted)  # once deleted, nothing to reply to


async def _take_out(
    message: discord.Message | discord.PartialMessage, said: str = "", *, voice: Voice | None = None
) -> None:
    """A message holding a key or password: deleted where the bot may, else its author is
    asked to (`said`: what goes first in that word, or in "I deleted your message")."""
    voice = voice or Voice()
    try:
        await message.delete()
    except CALL_FAILED as err:
        log.info("could not delete a message holding a key: %s", type(err).__name__)
        if message.guild is None:  # a DM's messages are only their author's to delete
            why = "I cannot delete messages in a direct message; delete it yourself"
        elif isinstance(err, discord.Forbidden):
            why = (
                "I could not delete your message (I need the Manage Messages permission "
                "here): delete it yourself now, others can still read it"
            )
        else:
            why = "I could not delete your message: delete it yourself now, others can read it"
        await _say(message, f"{said}{why}.", voice)
        return
    if said:
        await _say(message, f"{said}I deleted your message.", voice, reply=False)


@dataclass(frozen=True, slots=True)
class Voice:
    """Where the bot's own words in a channel (a hint, a refusal, a warning) can go: posted
    by the bot where it may (`post`; a reply where it may read the history), else through
    the character's webhook (`via`: it posts without Send Messages). Where neither gets
    through, the asker hears them by DM."""

    post: bool = True
    reply: bool = True
    via: Speaker | None = None


def _voices(channel: Any, me: discord.Member, speaker: Speaker | None) -> tuple[SendCheck, Voice]:
    """Whether an answer may be posted in the server channel `channel` (through the
    character's webhook when `speaker` has one), and where the bot's own words go."""
    mine = channel.permissions_for(me)
    in_thread = isinstance(channel, discord.Thread)
    locked = in_thread and channel.locked
    hooked = speaker is not None and speaker.webhook is not None
    check = send_check(mine, in_thread=in_thread, locked=locked, webhook=hooked)
    # The bot's own words go where the bot may post; else through the character's
    # webhook, which posts without Send Messages.
    own = send_check(mine, in_thread=in_thread, locked=locked) if hooked else check
    via = speaker if hooked and check.can_send else None
    return check, Voice(own.can_send, own.can_reply, via)


async def _say(
    message: discord.Message | discord.PartialMessage,
    text: str,
    voice: Voice,
    *,
    reply: bool = True,
    delete_after: float | None = None,
) -> bool:
    """Say `text` to the author of `message` in its channel (a reply without a ping when
    `reply`), as `voice` allows; gone after `delete_after` seconds if given. Never lost
    quietly: by DM where the channel took it from neither, and the log names the channel.
    Whether it was said somewhere."""
    channel = message.channel
    why = "it may not post there"
    gone: dict[str, Any] = {} if delete_after is None else {"delete_after": delete_after}
    if voice.post:
        try:
            if reply and voice.reply:
                await message.reply(text, mention_author=False, **gone)
            else:
                await channel.send(text, **gone)
            return True
        except CALL_FAILED as err:
            why = _failed(err)
    author = getattr(message, "author", None)  # a message known by its id has none
    hook = voice.via.webhook if voice.via is not None else None
    if hook is not None and message.guild is not None:
        me = message.guild.me
        # A webhook's message is no reply: it names whom it is for (no ping).
        said = f"{author.mention} {text}" if author is not None else text
        thread = voice.via.thread if voice.via is not None else None
        try:
            sent = await hook.send(
                said,
                username=webhook_name(me.display_name),  # the bot's word, not the character's
                avatar_url=me.display_avatar.url,
                wait=True,
                thread=thread or discord.utils.MISSING,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            if delete_after is not None:
                await sent.delete(delay=delete_after)
            return True
        except CALL_FAILED as err:
            why = _failed(err)
    guild = message.guild
    log.warning(
        "could not say something in channel %s (%s): %s",
        channel.id,
        guild.name if guild is not None else "a DM",
        why,
    )
    if guild is None or author is None:  # in a DM the DM itself failed
        return False
    where = place_name(channel)
    try:
        await author.send(f"I could not post this in {where} on {guild.name}: {text}")
    except CALL_FAILED as err:
        log.info("could not say it by DM either: %s", type(err).__name__)
        return False
    return True


def _failed(err: BaseException) -> str:
    status = f"{err.status} " if isinstance(err, discord.HTTPException) else ""
    return f"{status}{type(err).__name__}"


async def _tell_not_posted(message: discord.Message) -> None:
    """No page of the answer to `message` could be posted (Discord failed each try): its
    asker hears so by DM, where Discord may still take a message (in a DM, nowhere)."""
    channel, guild = message.channel, message.guild
    if guild is None:
        return
    where = place_name(channel)
    text = (
        f"I could not post my answer to your message in {where} on {guild.name}: "
        "Discord failed each time I tried. /retry there asks again."
    )
    try:
        await message.author.send(text)
    except CALL_FAILED as err:
        log.info("could not tell the asker an answer was not posted: %s", type(err).__name__)
