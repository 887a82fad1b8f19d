"""Pure decisions about Discord events: ignore or answer, where it belongs, who asked.

Nothing here touches the network; the client turns discord.py objects into these
plain values (see `client.py`) and acts on the answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import discord

from bot.types import Actor, Attachment, ChannelRef, Platform


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the bot needs to know about one incoming message to decide on it."""

    author_is_bot: bool  # bots and webhooks, the bot itself included
    is_user_message: bool  # a normal message or a reply (not a join, pin, thread notice …)
    readable: bool  # has text or attachments (empty without the message-content intent)
    is_dm: bool
    mentions_me: bool
    replies_to_me: bool
    in_my_thread: bool  # a thread the bot created
    # Its id came before: Discord may send an event again after the gateway resumes.
    repeated: bool = False


def ignore_reason(facts: MessageFacts) -> str | None:
    """Why the bot never answers this message, or None when it may."""
    if facts.repeated:
        return "already handled (the same message again)"
    if facts.author_is_bot:
        return "sent by a bot"
    if not facts.is_user_message:
        return "a system message"
    if not facts.readable:
        return "no readable content"
    return None


def is_addressed(facts: MessageFacts) -> bool:
    """Spoken to directly: a DM, a mention, a reply to the bot, or its own thread."""
    return facts.is_dm or facts.mentions_me or facts.replies_to_me or facts.in_my_thread


def strip_mention(text: str, bot_id: int, role_id: int | None = None) -> str:
    """The text without the bot's mention (`<@id>`, legacy `<@!id>`, or its role `<@&id>`)."""
    cleaned = re.sub(rf"<@!?{bot_id}>", " ", text)
    if role_id is not None:
        cleaned = cleaned.replace(f"<@&{role_id}>", " ")
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip()


def channel_ref(channel_id: int, guild_id: int | None, parent_id: int | None = None) -> ChannelRef:
    """Config belongs to the channel (a thread's parent); history to the thread if any.
    Without a guild it is a DM with the bot (group DMs are refused: elsewhere)."""
    server = str(guild_id) if guild_id else ""
    if parent_id:
        return ChannelRef(
            Platform.DISCORD, channel_id=str(parent_id), server_id=server, thread_id=str(channel_id)
        )
    return ChannelRef(
        Platform.DISCORD, channel_id=str(channel_id), server_id=server, direct=not server
    )


def attachment_of(file: discord.Attachment) -> Attachment:
    """A file on a message or a command option, fetched when the core uses it.

    The size Discord states is its own record of the file it stores (not what the sender
    claimed), and the core refuses by it before fetching: the file is read whole."""

    async def fetch(limit: int) -> bytes:
        return await file.read()

    return Attachment(file.filename, file.content_type or "", file.size, fetch)


def actor_for(
    user_id: int, display_name: str, permissions: discord.Permissions | None, *, in_dm: bool
) -> Actor:
    """Manage Server (or Administrator) in the channel makes a channel and server admin.

    Manage Channels alone is not enough: it keeps the core's rule in line with the
    default member permission the config commands are registered with. In a DM the
    user administers their own conversation, and there is no server.
    """
    if in_dm:
        return Actor(str(user_id), display_name, is_channel_admin=True, is_server_admin=False)
    manage = bool(permissions and (permissions.administrator or permissions.manage_guild))
    return Actor(str(user_id), display_name, is_channel_admin=manage, is_server_admin=manage)


@dataclass(frozen=True, slots=True)
class SendCheck:
    """Whether the bot may post here (else why not), and whether it may reply to (quote)
    the asker."""

    can_send: bool
    can_reply: bool
    blocked: Blocked | None = None


def send_check(
    permissions: discord.Permissions,
    *,
    in_thread: bool,
    locked: bool = False,
    webhook: bool = False,
) -> SendCheck:
    """Posting needs Send Messages (in Threads), and in a locked thread Manage Threads;
    a reply also needs Read Message History. A character's answer posted through the
    channel's `webhook` (found with Manage Webhooks) is the webhook's, not the bot's: it
    needs no Send Messages, and is never a reply."""
    send = permissions.send_messages_in_threads if in_thread else permissions.send_messages
    if not permissions.view_channel:
        return SendCheck(False, False, Blocked.missing("View Channel", in_thread=in_thread))
    if webhook and not permissions.manage_webhooks:
        return SendCheck(False, False, Blocked.missing("Manage Webhooks", in_thread=in_thread))
    if not webhook and not send:
        missing = "Send Messages in Threads" if in_thread else "Send Messages"
        return SendCheck(False, False, Blocked.missing(missing, in_thread=in_thread))
    if locked and not permissions.manage_threads:
        return SendCheck(False, False, LOCKED)
    return SendCheck(True, permissions.read_message_history and not webhook)


ARCHIVED_THREAD = 50083  # Discord's code: "Operation on an archived thread"
LOCKED_THREAD = 160005  # "Thread is locked"
MISSING_ACCESS = 50001


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why the bot may not post or edit in a channel, and what would fix it: the words
    of the notice that says so."""

    reason: str
    fix: str
    # Its fix is the channel's a thread is in (a permission): said once for all its threads.
    parents: bool = False

    @staticmethod
    def missing(permission: str, *, in_thread: bool = False) -> Blocked:
        """A thread has no permissions of its own: its channel's are the ones to change."""
        where = (
            "the permissions of the thread's channel" if in_thread else "the channel's permissions"
        )
        return Blocked(
            f"I'm missing the {permission} permission there",
            f"A server admin grants it in {where}.",
            parents=in_thread,
        )


LOCKED = Blocked(
    "the thread is locked", "Unlock it, or give me the Manage Threads permission there."
)
ARCHIVED = Blocked("the thread is archived", "Unarchive it to go on there.")
# A private thread lets in only its members: the bot taken out of one has lost it,
# whatever its permissions in the channel.
LEFT_PRIVATE_THREAD = Blocked(
    "I'm no longer a member of that private thread",
    "Add me back: mention me in it, or add me from its member list.",
)


def is_private_thread(channel: object) -> bool:
    private = discord.ChannelType.private_thread
    return isinstance(channel, discord.Thread) and channel.type is private


def edit_check(
    permissions: discord.Permissions,
    *,
    in_thread: bool,
    archived: bool,
    locked: bool,
    webhook: bool = False,
) -> Blocked | None:
    """Why the bot could not change an answer here (a button pressed on it), else None:
    asked before the model is, since an answer it cannot show must not cost a call. One a
    character's `webhook` shows is changed through the webhook (found with Manage
    Webhooks), not by the bot's own posts: Send Messages is not needed for it."""
    if archived:  # its messages cannot be edited until someone unarchives it
        return ARCHIVED
    return send_check(permissions, in_thread=in_thread, locked=locked, webhook=webhook).blocked


def blocked_by(
    code: int, permissions: discord.Permissions | None, *, in_thread: bool, private: bool = False
) -> Blocked:
    """What a 403 on a post or an edit means: a permission seen missing now, else what
    Discord's error `code` says (an archived or locked thread, access lost: in a
    `private` thread, the bot taken out of it). Discord's "Missing Permissions" names
    none; a post needs Send Messages, so that is the one named."""
    if permissions is not None:
        check = send_check(permissions, in_thread=in_thread)
        if check.blocked is not None:
            return check.blocked
    if code == LOCKED_THREAD:
        return LOCKED
    if code == ARCHIVED_THREAD:
        return ARCHIVED
    if code == MISSING_ACCESS and private:
        return LEFT_PRIVATE_THREAD
    if code == MISSING_ACCESS:
        return Blocked.missing("View Channel", in_thread=in_thread)
    missing = "Send Messages in Threads" if in_thread else "Send Messages"
    return Blocked.missing(missing, in_thread=in_thread)
