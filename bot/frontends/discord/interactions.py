"""Slash-command interactions: secrets by modal, defer when slow, replies split at 2000."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands

from bot.commands import Command, Invocation
from bot.core import Core, nothing_given, secret_prompt, split_text
from bot.frontends.discord.commands import secret_options
from bot.frontends.discord.events import Blocked, actor_for, attachment_of, channel_ref
from bot.frontends.discord.failures import CALL_FAILED, NETWORK_ERRORS
from bot.frontends.discord.sink import LIMIT, retried
from bot.types import (
    Actor,
    ChannelRef,
    Greeting,
    Reply,
    ReplyFile,
    SecretValue,
    failure,
    went_wrong,
)

log = logging.getLogger("bot.discord")

# Discord wants an answer within 3 s; a command still running after this is deferred.
DEFER_AFTER = 2.0
AUTOCOMPLETE_BUDGET = 2.5
MODAL_TIMEOUT = 600.0
TEXT_INPUT_MAX = 4000  # Discord's limit for a modal text input
# A secret form's custom_id begins so: one submitted that no open form takes (opened
# before a restart, or open past MODAL_TIMEOUT) is answered, not left to fail.
_FORM = "cc:form:"
_FORM_GRACE = 300.0
FORM_GONE = (
    "This form is no longer open (the bot restarted since, or it stayed open too long), "
    "so nothing typed in it was used or kept. Run the command again."
)


class OpenForms:
    """The secret forms this process opened and still takes, until they time out."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def open(self) -> str:
        """A new form's custom_id."""
        now = time.monotonic()
        self._until = {k: t for k, t in self._until.items() if t > now}
        custom_id = _FORM + secrets.token_hex(8)
        # Past discord.py's own timeout for it (which starts once the form is shown, and
        # starts again at a submit that failed): never both answer one submission.
        self._until[custom_id] = now + MODAL_TIMEOUT + _FORM_GRACE
        return custom_id

    def gone(self, custom_id: str) -> bool:
        """A form of this bot's that no open one of this process takes."""
        if not custom_id.startswith(_FORM):
            return False
        return self._until.get(custom_id, 0.0) <= time.monotonic()


def interaction_context(interaction: discord.Interaction) -> tuple[ChannelRef, Actor]:
    """Where the command was run and by whom, as the core sees it."""
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    in_dm = interaction.guild_id is None
    ref = channel_ref(interaction.channel_id or 0, interaction.guild_id, parent)
    user = interaction.user
    actor = actor_for(
        user.id, user.display_name, None if in_dm else interaction.permissions, in_dm=in_dm
    )
    if isinstance(user, discord.Member):  # who-may-chat rules match role ids
        actor = replace(actor, roles=tuple(str(r.id) for r in user.roles))
    return ref, actor


def server_roles(interaction: discord.Interaction) -> dict[str, str] | None:
    """The server's roles, id → name, as cached with it (None in a DM): a who-may-chat
    rule naming another is refused, and an admin may name one (and is offered them)."""
    guild = interaction.guild
    known = guild.roles if guild is not None else []
    return {str(r.id): r.name for r in known} if known else None


NOT_HERE = (
    "I'm not in this conversation: I can't chat here, and settings here would do "
    "nothing. Nothing changed. Use my commands in a server I'm in (a server admin can add "
    "me) or in a DM with me."
)


def elsewhere(interaction: discord.Interaction) -> str | None:
    """Where a command was run that the bot itself is not in, else None: the app
    installed by a user alone (User Install), in a group DM or a DM between others, or in
    a server the bot was never added to. Its commands are registered for neither, but one
    registered before (or by another version) is still offered there. An interaction that
    names no installation is taken to be the bot's own."""
    if interaction.context.private_channel or isinstance(interaction.channel, discord.GroupChannel):
        return "a group DM"
    if interaction.guild_id is None or interaction.is_guild_integration():
        return None
    return "a server the bot is not in" if interaction.is_user_integration() else None


class CommandRunner:
    """Turns an interaction into core.run_command and its Reply into Discord responses."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self.forms = OpenForms()
        # Posts a character's greeting after /character import (the client wires it).
        self.greet: Callable[[Any, ChannelRef, Greeting], Awaitable[Blocked | None]] | None = None
        # Runs a typed turn control on the answer's own message, as its buttons do; False
        # when no message here shows the newest answer (the client wires it).
        self.in_place: (
            Callable[[discord.Interaction, tuple[str, ...], dict[str, Any]], Awaitable[bool]] | None
        ) = None

    async def refuse_elsewhere(self, interaction: discord.Interaction) -> bool:
        """Say so, and run nothing, when a command comes from where the bot is not
        (`elsewhere`); an autocompletion there offers nothing. False when it was."""
        where = elsewhere(interaction)
        if where is None:
            return False
        log.info("a command was run in %s (a user's own install of the app); refused", where)
        if interaction.type is discord.InteractionType.autocomplete:
            try:
                await interaction.response.autocomplete([])
            except CALL_FAILED as err:
                log.info("could not answer an autocompletion: %s", type(err).__name__)
        else:
            await _respond(interaction, Reply(NOT_HERE, True, ok=False))
        return True

    async def form_gone(self, interaction: discord.Interaction) -> None:
        """Say so when a secret form is submitted that no open form takes: discord.py
        answers nothing, and Discord then shows "interaction failed"."""
        data: Any = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        if interaction.type is discord.InteractionType.modal_submit and self.forms.gone(custom_id):
            log.info("a secret form was submitted after it closed; said so")
            await _respond(interaction, Reply(FORM_GONE, True, ok=False))

    async def invoke(
        self, interaction: discord.Interaction, path: tuple[str, ...], values: dict[str, Any]
    ) -> None:
        command = self._core.command(path)
        if command is None:  # the table and the synced commands disagree
            await _respond(interaction, Reply("This command no longer exists.", True, ok=False))
            return
        raw = {name: _raw(value) for name, value in values.items() if value is not None}
        if secret_options(command) or command.slow:
            # Refused commands say so at once: before the form (a key is never typed for
            # nothing), and before "thinking…" (a refusal is not slow).
            ref, actor = interaction_context(interaction)
            refused = await self._core.refusal(ref, actor, Invocation(path, raw))
            if refused is not None:
                await _respond(interaction, refused)
                return
        if secret_options(command):
            await interaction.response.send_modal(SecretModal(self, path, command, raw))
            return
        if command.control and self.in_place is not None:
            if await self.in_place(interaction, path, raw):
                return
        # A turn control is slow when it answers, but a refusal (someone else's turn, not
        # the newest) comes at once and is the presser's alone: deferred at once, publicly
        # (its answer would be everyone's), it would have been shown to the channel.
        defer_now = command.slow and not command.control
        await self.run(interaction, command, Invocation(path, raw), defer_now=defer_now)

    async def run(
        self,
        interaction: discord.Interaction,
        command: Command,
        inv: Invocation,
        *,
        defer_now: bool,
    ) -> None:
        ref, actor = interaction_context(interaction)
        task = asyncio.ensure_future(self._run(ref, actor, command, inv, server_roles(interaction)))
        name = "/" + " ".join(inv.path)
        try:
            if not defer_now:
                await asyncio.wait({task}, timeout=DEFER_AFTER)
            if not task.done():
                await _defer(interaction, private=command.private)
            reply = await task
        except Exception as err:
            task.cancel()
            log.warning("%s failed: %s", name, failure(err))
            reply = Reply(went_wrong(err, name), private=True, ok=False)
        await _respond(interaction, reply)
        if reply.greeting is not None and self.greet is not None and interaction.channel:
            blocked = await self.greet(interaction.channel, ref, reply.greeting)
            if blocked is not None:  # the reply said a greeting was there to swipe
                said = f"I could not post the greeting here: {blocked.reason}. {blocked.fix}"
                await _respond(interaction, Reply(said, True, ok=False))

    async def _run(
        self,
        ref: ChannelRef,
        actor: Actor,
        command: Command,
        inv: Invocation,
        roles: dict[str, str] | None = None,
    ) -> Reply:
        if not command.ordered:
            return await self._core.run_command(ref, actor, inv, roles=roles)
        # After the answer being written here ("thinking…" meanwhile): a /reset in the
        # middle of one was undone when that answer was saved into the fresh conversation.
        async with self._core.ordered(ref):
            return await self._core.run_command(ref, actor, inv, roles=roles)

    async def complete(
        self, interaction: discord.Interaction, path: tuple[str, ...], option: str, typed: str
    ) -> list[app_commands.Choice[str]]:
        ref, actor = interaction_context(interaction)
        # The options filled in so far (/access's kind says whether `id` is a role's).
        given = {name: str(value) for name, value in interaction.namespace if name != option}
        try:
            names = await asyncio.wait_for(
                self._core.autocomplete(
                    ref,
                    actor,
                    path,
                    option,
                    typed,
                    limit=25,
                    given=given,
                    roles=server_roles(interaction),
                ),
                AUTOCOMPLETE_BUDGET,
            )
        except Exception as err:  # an empty list beats no answer at all
            log.info("autocomplete of /%s gave up: %s", " ".join(path), type(err).__name__)
            return []
        fitting = [n for n in names if 1 <= len(n) <= 100]  # Discord's limit for a choice
        return [app_commands.Choice(name=n, value=n) for n in fitting[:25]]


def _raw(value: Any) -> Any:
    """An option's value for the core: text, or an attached file it fetches when used."""
    if isinstance(value, discord.Attachment):
        return attachment_of(value)
    return str(value)


# What an interaction's response shows, kept in its `extras`: "thinking…" (a deferral
# Discord took), or a page of the reply. Unknown when a call was lost on its way back.
_ORIGINAL = "cc:original"
_THINKING, _SHOWN = "thinking", "shown"


async def _respond(interaction: discord.Interaction, reply: Reply) -> None:
    """Send the reply (split at 2000 characters) as the response or as follow-ups; a
    file (the /usage chart) goes with the last page. A silent one sends nothing, and
    takes its "thinking…" away. No page previews its links (a typed /regenerate answers
    here, and replies show cards' and members' text): see sink.LINKS."""
    shows = interaction.extras.get(_ORIGINAL)
    if reply.silent:
        if shows != _THINKING and not interaction.response.is_done():
            await _defer(interaction, private=True)  # Discord wants a response: none shows
        if interaction.extras.get(_ORIGINAL) == _THINKING:
            await unthink(interaction)
        return
    pages = split_text(reply.text or "Done.", LIMIT)
    answered = interaction.response.is_done() or shows == _SHOWN
    try:
        for i, page in enumerate(pages):
            file = reply.file if i == len(pages) - 1 else None

            def files(file: ReplyFile | None = file) -> list[discord.File]:
                if file is None:
                    return []
                return [discord.File(io.BytesIO(file.data), filename=file.filename)]

            if i == 0 and shows == _THINKING:
                await _instead_of_thinking(interaction, page, reply.private, files)
            elif answered:
                await interaction.followup.send(
                    page, ephemeral=reply.private, files=files(), suppress_embeds=True
                )
            else:
                await _response(interaction, page, reply.private, files)
            answered = True
            interaction.extras[_ORIGINAL] = _SHOWN
    except CALL_FAILED as err:
        # Usually the interaction expired (answered too late) or the channel refused it.
        status = err.status if isinstance(err, discord.HTTPException) else "no answer"
        log.warning("could not answer a command: %s %s", status, type(err).__name__)


async def unthink(interaction: discord.Interaction) -> None:
    """A command that came to nothing to say: its "thinking…" goes."""
    try:
        await interaction.delete_original_response()
    except CALL_FAILED as err:
        log.info("could not take a command's thinking away: %s", type(err).__name__)


ALREADY_ANSWERED = 40060  # Discord's "Interaction has already been acknowledged"


async def _response(
    interaction: discord.Interaction,
    page: str,
    private: bool,
    files: Callable[[], list[discord.File]],
) -> None:
    """`page` as the interaction's response. One that failed (its connection cut, a 5xx
    discord.py gave up on) may have been shown, only its answer lost: it is sent once
    more. Discord's "already acknowledged" then says that try, or a deferral whose answer
    was lost ("thinking…" shows), is the response: it is edited to show the page (the
    same page again changes nothing). Never twice on show, and the command is not run
    again."""
    for attempt in range(2):
        try:
            await interaction.response.send_message(
                page, ephemeral=private, files=files(), suppress_embeds=True
            )
            return
        except discord.HTTPException as err:
            if err.code == ALREADY_ANSWERED:
                break
            if attempt or isinstance(err, discord.Forbidden | discord.NotFound):
                raise  # refused, or expired: trying again changes nothing
            log.info("a command's response failed (%s); sent again", err.status)
        except NETWORK_ERRORS as err:
            if attempt:
                raise
            log.info("a command's response failed (%s); sent again", type(err).__name__)
    await _edit_original(interaction, page, files)


async def _instead_of_thinking(
    interaction: discord.Interaction,
    page: str,
    private: bool,
    files: Callable[[], list[discord.File]],
) -> None:
    """The first page after "thinking…": a follow-up (Discord shows it in its place). One
    that failed may have been shown: the response is edited to show the page instead,
    which a second follow-up would have shown twice."""
    try:
        await interaction.followup.send(
            page, ephemeral=private, files=files(), suppress_embeds=True
        )
    except discord.HTTPException as err:
        if isinstance(err, discord.Forbidden | discord.NotFound):
            raise  # refused, or expired: trying again changes nothing
        log.info("a command's reply after thinking failed (%s); shown instead", err.status)
        await _edit_original(interaction, page, files)
    except NETWORK_ERRORS as err:
        log.info("a command's reply after thinking failed (%s); shown instead", type(err).__name__)
        await _edit_original(interaction, page, files)


async def _edit_original(
    interaction: discord.Interaction, page: str, files: Callable[[], list[discord.File]]
) -> None:
    """Make the response (its "thinking…", or the page itself) show `page`: tried again
    while Discord fails it (a lost connection, a 5xx), a few times; the same edit twice
    shows nothing new."""

    async def edit() -> None:
        made = files()
        if made:
            await interaction.edit_original_response(content=page, attachments=made)
        else:
            await interaction.edit_original_response(content=page)

    def again(why: str) -> None:
        log.info("a command's response could not be edited (%s); tried again", why)

    await retried(edit, again)


async def _defer(interaction: discord.Interaction, *, private: bool) -> None:
    """ "Thinking…" while a slow command runs. A deferral that failed leaves the command
    running (it was cancelled, half done): its reply then goes as the response, or in
    place of the deferral when it was shown although its answer was lost (_response)."""
    try:
        await interaction.response.defer(ephemeral=private, thinking=True)
        interaction.extras[_ORIGINAL] = _THINKING
    except CALL_FAILED as err:
        status = err.status if isinstance(err, discord.HTTPException) else "no answer"
        log.info("could not defer a command: %s %s", status, type(err).__name__)


def _label(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if len(text) <= 45 else text[:44] + "…"


class SecretModal(discord.ui.Modal):
    """Collects a command's secret options so they never appear in the channel."""

    def __init__(
        self, runner: CommandRunner, path: tuple[str, ...], command: Command, raw: dict[str, Any]
    ) -> None:
        super().__init__(
            title=_label("/" + " ".join(path)),
            timeout=MODAL_TIMEOUT,
            custom_id=runner.forms.open(),
        )
        self._runner = runner
        self._path = path
        self._command = command
        self._raw = raw
        self._fields: dict[str, discord.ui.TextInput[SecretModal]] = {}
        for opt in secret_options(command):
            field: discord.ui.TextInput[SecretModal] = discord.ui.TextInput(
                label=_label(secret_prompt(opt, raw)),
                custom_id=f"secret:{opt.name}",
                placeholder="only you and the bot see this" if opt.required else "optional",
                required=opt.required,
                max_length=min(opt.max_length, TEXT_INPUT_MAX),
            )
            self.add_item(field)
            self._fields[opt.name] = field

    async def on_submit(self, interaction: discord.Interaction) -> None:
        raw: dict[str, Any] = dict(self._raw)
        for opt in secret_options(self._command):
            value = self._fields[opt.name].value.strip()
            if value:
                raw[opt.name] = SecretValue(value)
            elif opt.required:  # spaces only: Discord lets them through a required field
                await interaction.response.send_message(nothing_given(opt), ephemeral=True)
                return
        # Storing a key may run a status check over the network: always defer.
        inv = Invocation(self._path, raw)
        await self._runner.run(interaction, self._command, inv, defer_now=True)

    async def on_error(  # type: ignore[override]  # Modal's takes no item, unlike View's
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        # The default logs a traceback with the modal's state; say only what failed.
        log.warning("a secret form failed: %s", type(error).__name__)
