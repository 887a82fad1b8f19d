"""Buttons on answers: 🔄 ⏩ ◀ n/m ▶ when an answer ends, ⏹ while it streams, retry on
an error. Persistent (discord.py DynamicItem): a press is understood from its custom id,
so buttons keep working after a restart. A press rewrites the answer in place."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

import discord

from bot.core import Core, HeldReply, PacedReply, TurnResult
from bot.frontends.discord.buttons import (
    MAX_PAGES,
    TEMPLATE,
    ButtonSpec,
    PageFacts,
    Press,
    answer_buttons,
    buttons_after,
    earlier_pages,
    invocation,
    may_stop,
    parse_custom_id,
    press_for,
    stop_refusal,
    streaming_buttons,
)
from bot.frontends.discord.events import Blocked, blocked_by, edit_check, is_private_thread
from bot.frontends.discord.failures import CALL_FAILED
from bot.frontends.discord.interactions import interaction_context, unthink
from bot.frontends.discord.persona import Personas, Speaker
from bot.frontends.discord.sink import (
    ANSWER_NOTES,
    GREETING_NOTES,
    MIN_INTERVAL,
    DiscordTarget,
    NotPosted,
    Page,
    webhook_of,
)
from bot.types import ChannelRef, Greeting, Reply, failure, went_wrong
from bot.types.recent import RecentIds

log = logging.getLogger("bot.discord")


class ControlButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=TEMPLATE):
    def __init__(self, spec: ButtonSpec) -> None:
        style = discord.ButtonStyle.danger if spec.danger else discord.ButtonStyle.secondary
        super().__init__(
            discord.ui.Button(
                label=spec.label or None,
                emoji=spec.emoji or None,
                style=style,
                custom_id=spec.custom_id,
                disabled=spec.disabled,
            )
        )
        self.spec = spec

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[discord.Client],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ControlButton:
        parsed = parse_custom_id(match.group(0))
        assert parsed is not None  # the template matched
        return cls(ButtonSpec(*parsed))

    async def callback(self, interaction: discord.Interaction[discord.Client]) -> None:
        controls = getattr(interaction.client, "controls", None)
        if isinstance(controls, Controls):
            await controls.press(interaction, self.spec.press, self.spec.target)


def view_of(specs: list[ButtonSpec]) -> discord.ui.View | None:
    """A view of only dynamic items: discord.py keeps no state for it per message."""
    if not specs:
        return None
    view = discord.ui.View(timeout=None)
    for spec in specs:
        view.add_item(ControlButton(spec))
    return view


class AnswerSink:
    """PacedReply into a DiscordTarget; the ⏹ button goes on with the first streamed text
    (a notice, which only finishes, never carries it). An answer longer than the target's
    max_pages messages goes whole as a file on its last one when it settles. A greeting
    (no asker) only finishes."""

    def __init__(self, target: DiscordTarget, asker_id: int | None = None) -> None:
        self._target = target
        self._paced = PacedReply(target)
        self.asker = asker_id  # whose ⏹ it carries (an admin may press it too)
        self._streaming = False
        self._ended: tuple[TurnResult, discord.ui.View | None] | None = None

    async def typing(self) -> None:
        await self._paced.typing()

    async def update(self, answer: str, reasoning: str = "") -> None:
        if not self._streaming and self.asker is not None:
            self._streaming = True
            self._target.view = view_of(streaming_buttons(self.asker))
        await self._paced.update(answer, reasoning)

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        # Known before the final edit, which says whether it can go as a file.
        self._target.whole = (answer, reasoning)
        await self._paced.finish(answer, reasoning, error)
        if not self._paced.clipped:  # it fit in the messages: no file
            self._target.whole = None

    def posts(self) -> list[str]:
        return self._paced.posts()

    def ended(self, result: TurnResult) -> None:
        """The final edit carries the buttons for how the turn ended: one write, not two."""
        self._ended = (result, view_of(buttons_after(result)))
        self._target.view = self._ended[1]

    async def settle(self, result: TurnResult) -> None:
        """The buttons for how the turn ended replace ⏹ (where the final edit did not)."""
        ended = self._ended
        if ended is not None and ended[0] == result:
            view = ended[1]  # the one the final edit carried, so no write is repeated
        else:
            view = view_of(buttons_after(result))
        await self._target.settle(view)


# Said to the importer when Discord failed every post of a greeting (not a refusal).
GREETING_NOT_POSTED = Blocked(
    "Discord failed each time I tried",
    "The conversation starts from it all the same; to show it, /reset and import the card again.",
)


async def _forbidden(err: discord.Forbidden) -> None:
    log.warning("may not edit an answer after a button press: %s", err.text or err.status)


class Controls:
    """Runs a pressed button through the core; refusals are shown only to the presser."""

    def __init__(
        self,
        core: Core,
        *,
        min_interval: float = MIN_INTERVAL,
        personas: Personas | None = None,
        own_deletes: RecentIds | None = None,
    ) -> None:
        self._core = core
        self._min_interval = min_interval
        self._personas = personas or Personas(core)
        # Pages the bot removes itself (left over from a longer answer): their deletion
        # events must not make it forget the answer they were part of.
        self.own_deletes = own_deletes if own_deletes is not None else RecentIds()

    async def typed(
        self, interaction: discord.Interaction[Any], path: tuple[str, ...], raw: dict[str, Any]
    ) -> bool:
        """A typed /regenerate, /continue, /retry or /swipe changes the newest answer in
        place, as its buttons do: a new message beside it would leave the old one with
        its note and live buttons (whose ⏩ then went on from the old text). False when
        no message here shows the newest answer: the core answers as a new message. It
        acts on the answer newest when its turn comes (one typed while a 🔄 runs: the
        🔄's), as a press does on its own."""
        press = press_for(path, raw)
        channel = interaction.channel
        if press is None or not isinstance(channel, discord.abc.Messageable):
            return False
        ref, _ = interaction_context(interaction)
        try:
            found = await self._core.newest_answer_posts(ref)
            if found is None:
                return False
            _, posts = found
            message = await self._shown(channel, ref, int(posts[-1]))
        except Exception as err:  # the database or the message gone: the usual way says
            log.info("a typed %s answers anew: %s", path[0], failure(err))
            return False
        await self.press(interaction, press, None, message=message)
        return True

    async def press(
        self,
        interaction: discord.Interaction[Any],
        press: Press,
        target: int | None,
        *,
        message: Page | None = None,
    ) -> None:
        """A button pressed on `interaction.message` (`target`: the row its id names); or
        a typed control (`target` None: the newest answer when its turn comes) run on
        `message`, the answer's last page as it was typed (its "thinking…" and what it
        says then are the typer's). An unexpected failure (a bug, the database) is said
        to the presser as a failed command's is, and logged in one line: left to
        discord.py's View.on_error, it was a traceback in the log and nothing said."""
        try:
            await self._press(interaction, press, target, message)
        except Exception as err:
            inv = invocation(press)
            name = "/" + " ".join(inv.path) if inv is not None else "a button"
            log.warning("%s failed (a button or a typed control): %s", name, failure(err))
            said = went_wrong(err, name)
            await _privately(interaction, said)

    async def _press(
        self,
        interaction: discord.Interaction[Any],
        press: Press,
        target: int | None,
        message: Page | None,
    ) -> None:
        inv = invocation(press)
        typed = message is not None
        message = message if message is not None else interaction.message
        channel = interaction.channel
        if inv is None or message is None or not isinstance(channel, discord.abc.Messageable):
            await _privately(interaction, "That button does nothing.")
            return
        ref, actor = interaction_context(interaction)
        if press is Press.STOP:
            assert target is not None  # a button's: a typed /stop is a command of its own
            if not may_stop(actor.id, target, admin=await self._core.is_admin(ref, actor)):
                await _privately(interaction, stop_refusal(target))
            elif (not_theirs := await self._core.stop_refusal(ref, actor)) is not None:
                await _privately(interaction, not_theirs)  # a ⏹ left on an older answer
            elif self._core.stop(ref):
                await interaction.response.defer()  # the answer itself shows it stopped
            elif (showing := self._core.end_on_its_way(ref)) is not None:
                await _privately(interaction, showing)
            elif await self._core.answer_cut_off(ref):
                await _drop_stop(interaction, CUT_OFF_STOP)
            else:  # left on a page whose edits Discord failed (its answer ended, shown again)
                await _drop_stop(interaction, "No answer is being written here.")
            return
        in_thread = isinstance(channel, discord.Thread)
        # A DM's interaction carries no permissions (the bot may always answer there).
        permissions = interaction.app_permissions if interaction.guild is not None else None
        blocked = (
            None
            if permissions is None
            else edit_check(
                permissions,
                in_thread=in_thread,
                archived=in_thread and bool(getattr(channel, "archived", False)),
                locked=in_thread and bool(getattr(channel, "locked", False)),
                webhook=webhook_of(message) is not None,
            )
        )
        if blocked is not None:  # the model is not asked for what could not be shown
            await _privately(
                interaction, f"I can't change this answer: {blocked.reason}. {blocked.fix}"
            )
            return
        # Acknowledged at once (no visible reply): the answer message changes instead. A
        # typed one thinks privately, and says so when done.
        await interaction.response.defer(ephemeral=typed, thinking=typed)
        removed: list[str] = []  # leftover pages this press takes out

        def on_delete(post: str) -> None:
            self.own_deletes.add(post)
            removed.append(post)

        refused: list[Blocked] = []  # an edit Discord refused meanwhile: said to the presser

        async def forbidden(err: discord.Forbidden) -> None:
            await _forbidden(err)
            private = is_private_thread(channel)
            refused.append(blocked_by(err.code, permissions, in_thread=in_thread, private=private))

        answer = DiscordTarget(
            channel,
            None,
            forbidden,
            min_interval=self._min_interval,
            on_delete=on_delete,
            on_gone=lambda: self._core.answer_deleted(ref),
        )
        sink = AnswerSink(answer, interaction.user.id)
        held = HeldReply(sink)
        pressed = message

        async def at_turn(answer_id: int | None, asker: str | None) -> None:
            # Found when the control's turn comes, not at the press: one before it (a 🔄,
            # a ⏩ pressed twice) may have changed the answer's pages meanwhile, and has
            # shown its end and tied its pages within its turn (after_turn).
            if asker is not None and asker.isdigit():
                sink.asker = int(asker)  # the ⏹ is its asker's, whoever pressed
            stored = await self._core.answer_posts(ref, answer_id) if answer_id is not None else []
            last = await self._last_page(channel, ref, stored, pressed, typed=typed)
            speaker = await self._speaker(last, channel, ref)
            answer.show_over(await _pages_of(last, channel, stored, speaker), speaker)

        async def after_turn(done: TurnResult) -> None:
            # Within the control's turn: the next question or control there begins once
            # this answer shows its end and buttons (no ⏹ left on it while the next
            # answer is written) and is tied to its pages.
            if done.notice or done.ignored:
                return
            # A swipe streams nothing: its text and its buttons go out in one edit.
            answer.view = view = view_of(buttons_after(done))
            answer.notes = GREETING_NOTES if done.greeting else ANSWER_NOTES
            await held.release()
            await answer.settle(view)
            await self._core.shown_in(ref, done.answer_id, _ids(answer.messages))
            await self._core.unshown(ref, removed)

        try:
            done = await self._core.run_control(
                ref, actor, inv, held, answer_id=target, on_turn=at_turn, after=after_turn
            )
            if isinstance(done, Reply):
                await _privately(interaction, done.text)
            elif done.ignored:  # its question or its answer was deleted meanwhile: no word
                if typed:
                    await unthink(interaction)
            elif done.notice:
                await _privately(interaction, done.answer)
            elif refused:  # said instead of "Done"
                said = f"I could not change this answer: {refused[0].reason}. {refused[0].fix}"
                await _privately(interaction, said)
            elif typed:
                said = f" {done.shown_of}" if done.shown_of else ""
                await _privately(interaction, f"Done: the {done.kind} above changed{said}.")
        finally:
            await answer.close()

    async def greet(
        self, channel: discord.abc.Messageable, ref: ChannelRef, greeting: Greeting
    ) -> Blocked | None:
        """A character's greeting, posted as the character; ◀ n/m ▶ swipe its alternates.
        Why it could not be posted, if it was not (the importer is told)."""
        speaker = await self._personas.speaker(channel, ref)
        refused: list[Blocked] = []

        async def forbidden(err: discord.Forbidden) -> None:
            await _forbidden(err)
            now = None
            if isinstance(channel, discord.abc.GuildChannel | discord.Thread):
                now = channel.permissions_for(channel.guild.me)
            in_thread = isinstance(channel, discord.Thread)
            private = is_private_thread(channel)
            refused.append(blocked_by(err.code, now, in_thread=in_thread, private=private))

        target = DiscordTarget(
            channel,
            None,
            forbidden,
            min_interval=self._min_interval,
            speaker=speaker,
            notes=GREETING_NOTES,
        )
        try:
            # Shown as an answer is (at most max_pages messages, the whole as a file on
            # the last): a card's greeting may be 100,000 characters.
            await AnswerSink(target).finish(greeting.text)
            view = None
            if greeting.answer_id is not None and greeting.count > 1:
                specs = answer_buttons(greeting.answer_id, 1, greeting.count, greeting=True)
                view = view_of(specs)
            await target.settle(view)
            await self._core.shown_in(ref, greeting.answer_id, _ids(target.messages))
            if speaker is not None and speaker.hint and not target.blocked:
                await channel.send(speaker.hint)
        except NotPosted:  # the target logged why
            if not refused:
                refused.append(GREETING_NOT_POSTED)
        except CALL_FAILED as err:  # the hint after it: the greeting itself is on show
            log.warning("could not post a greeting's hint: %s", type(err).__name__)
        finally:
            await target.close()
        return refused[0] if refused else None

    async def _shown(self, channel: Any, ref: ChannelRef, post: int) -> Page:
        """The message `post` of the newest answer. Reading it needs Read Message History;
        without it, a character's is read through its webhook, and the bot's own is known
        by its id alone (edited and deleted all the same)."""
        try:
            found: discord.Message = await channel.fetch_message(post)
            return found
        except discord.Forbidden:
            pass
        speaker = await self._personas.speaker(channel, ref) if ref.server_id else None
        if speaker is not None and speaker.webhook is not None:
            thread = speaker.thread or discord.utils.MISSING
            try:
                return await speaker.webhook.fetch_message(post, thread=thread)
            except discord.NotFound:
                pass  # not the webhook's: the bot's own
        return discord.PartialMessage(channel=channel, id=post)

    async def _last_page(
        self, channel: Any, ref: ChannelRef, stored: list[str], pressed: Page, *, typed: bool
    ) -> Page:
        """The last message of an answer now, by the ids `stored` as it was shown: the
        `pressed` one (or the one a typed control found) when it is that, or when none
        is stored or it is gone; a pressed one none of them is, too (the page the answer
        took as it ended, pressed before it was tied to it)."""
        if not stored or stored[-1] == str(pressed.id):
            return pressed
        if not typed and str(pressed.id) not in stored:
            return pressed
        try:
            return await self._shown(channel, ref, int(stored[-1]))
        except CALL_FAILED as err:  # deleted meanwhile: its deletion forgets the answer
            log.info("could not read an answer's last page: %s", type(err).__name__)
            return pressed

    async def _speaker(
        self, message: Page, channel: discord.abc.Messageable, ref: ChannelRef
    ) -> Speaker | None:
        """Who wrote the pressed answer: the character's webhook (edited through it), or
        the bot with the character's name in bold."""
        hook_id = webhook_of(message)
        if hook_id is not None:
            return await self._personas.by_id(channel, hook_id)
        speaker = await self._personas.speaker(channel, ref)
        if speaker is None or speaker.webhook is not None:
            return None  # the bot's own message stays the bot's
        return replace(speaker, hint="")


def _ids(messages: list[Page]) -> list[str]:
    return [str(m.id) for m in messages]


async def _pages_of(
    message: Page,
    channel: discord.abc.Messageable,
    stored: list[str],
    speaker: Speaker | None,
) -> list[Page]:
    """The answer's messages, the pressed (last) one included: a long answer has several.
    Found by the ids stored as it was shown (`stored`, first to last), else (an answer
    stored before they were) by reading the channel's history."""
    if isinstance(message, discord.Message) and message.reference is not None:
        return [message]  # a reply to the question is the first page: the only one
    if str(message.id) in stored:
        earlier = stored[: stored.index(str(message.id))][-MAX_PAGES:]
        return [*await _stored_pages(message, earlier, speaker), message]
    if stored:
        # A last page the answer took as it ended, pressed before it was tied to it (the
        # answer is tied to its pages once they are shown): the pages tied come before it.
        return [*await _stored_pages(message, stored[-MAX_PAGES:], speaker), message]
    if not isinstance(message, discord.Message):
        return [message]
    try:
        before = [m async for m in channel.history(limit=MAX_PAGES, before=message)]
    except CALL_FAILED as err:  # no Read Message History, or the connection lost: this page alone
        log.info("could not read an answer's earlier pages: %s", type(err).__name__)
        return [message]
    facts = [
        PageFacts(
            by_bot=m.author.id == message.author.id,
            has_buttons=bool(m.components),
            is_reply=m.reference is not None,
            is_command_reply=m.interaction_metadata is not None,
        )
        for m in before
    ]
    count = earlier_pages(facts)
    return [*reversed(before[:count]), message]


async def _stored_pages(message: Page, ids: list[str], speaker: Speaker | None) -> list[Page]:
    """The earlier pages of the pressed answer by their stored ids, not the channel's
    history: the bot's own read when it may (a page gone is passed over), else by id
    alone (editing and deleting them needs no permission to read them); a character's
    through its webhook, which the edits go through."""
    hook = speaker.webhook if speaker is not None else None
    if hook is None or webhook_of(message) != hook.id:
        own = [await _own_page(message.channel, int(i)) for i in ids]
        return [page for page in own if page is not None]
    thread = speaker.thread if speaker is not None and speaker.thread else discord.utils.MISSING
    pages: list[Page] = []
    for i in ids:
        try:
            pages.append(await hook.fetch_message(int(i), thread=thread))
        except CALL_FAILED as err:  # deleted meanwhile: the answer goes on without it
            log.info("could not read an answer's earlier page: %s", type(err).__name__)
    return pages


async def _own_page(channel: Any, post: int) -> Page | None:
    """An earlier page of the bot's own, read when the bot may (None: gone, a link an
    older version left when it removed the page), else known by its id alone."""
    try:
        found: discord.Message = await channel.fetch_message(post)
        return found
    except discord.NotFound:
        return None
    except CALL_FAILED:  # no Read Message History: edited and deleted by id all the same
        return discord.PartialMessage(channel=channel, id=post)


CUT_OFF_STOP = (
    "This answer was cut off when the bot restarted, and nothing is being written now; "
    "/retry asks again."
)


async def _drop_stop(interaction: discord.Interaction[Any], said: str) -> None:
    """A ⏹ pressed with nothing being written or shown here (an answer cut off by a
    restart, or a page whose edits Discord failed and whose answer ended): it goes, as
    pressing it could never work again, and the presser is told `said`. The answer's
    end is shown by then: nothing else edits the page after this."""
    try:
        await interaction.response.edit_message(view=None)
        await interaction.followup.send(said, ephemeral=True)
    except CALL_FAILED as err:
        log.info("could not clear a stale stop button: %s", type(err).__name__)


async def _privately(interaction: discord.Interaction[Any], text: str) -> None:
    """`text` to the presser alone: as the press's response, or once it has one (the
    press acknowledged), as a follow-up."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except CALL_FAILED as err:
        log.info("could not answer a button: %s", type(err).__name__)
