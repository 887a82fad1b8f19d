"""The Core facade a front-end is handed: commands, chat turns, autocomplete."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, replace

from bot.commands import TABLE, Command, Invocation
from bot.commands.characters import persona as character_persona
from bot.commands.characters import sent_alone
from bot.commands.endpoint import model_choices
from bot.commands.parse import CommandError, parse, plain_prefix
from bot.commands.quotas import role_choices
from bot.commands.router import accessible, bind, execute, find, prepare
from bot.commands.spec import CommandContext, nothing_given, secret_prompt
from bot.connection import endpoint_url
from bot.conversation.engine import (
    KEPT_MESSAGES,
    AfterTurn,
    ChatEngine,
    Control,
    Gate,
    HeldBack,
    OnTurn,
    TurnLimits,
    TurnResult,
    unstored,
)
from bot.conversation.pacing import MessageTarget, NotUpdated, PacedReply, split_text
from bot.conversation.patience import END_PATIENCE, Deadline, bounding_call, typing_landed
from bot.conversation.posts import Edited
from bot.conversation.stream import ANSWER_DELETED, ReplySink, sink_posts
from bot.providers import ProviderHub
from bot.store import Store, StoreError, Unanswered
from bot.types import (
    Actor,
    Attachment,
    ChannelRef,
    Incoming,
    Persona,
    Platform,
    Reply,
    ReplyMode,
    Role,
    failure,
)
from bot.types.place import logged_in
from bot.types.prices import PriceTable
from bot.types.text import clean_text, strip_invisible

# What front-ends (and app's checks of operator settings) may use from the layers below,
# through the Core they import.
__all__ = [
    "DEFAULT_PREFIXES",
    "END_PATIENCE",
    "AfterTurn",
    "Control",
    "Core",
    "Deadline",
    "Edited",
    "Gate",
    "HeldBack",
    "HeldReply",
    "MessageTarget",
    "NotUpdated",
    "OnTurn",
    "PacedReply",
    "ReplySink",
    "StoreError",
    "TurnLimits",
    "TurnResult",
    "bounding_call",
    "endpoint_url",
    "nothing_given",
    "secret_prompt",
    "split_text",
    "typing_landed",
    "unstored",
]

log = logging.getLogger("bot.core")

DEFAULT_PREFIXES: Mapping[Platform, str] = {
    Platform.DISCORD: "/",
    Platform.MATRIX: "!",
    Platform.CONSOLE: "/",
}


class _Collected:
    """A sink that keeps only how the answer ended (for a front-end that cannot stream)."""

    def __init__(self) -> None:
        self.text = ""

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        return None

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.text = f"{answer}\n\n⚠️ {error}" if error and answer else (answer or error or "")


class HeldReply:
    """A sink for a turn control pressed on an answer already shown: what streams goes
    through; a finish that came without a stream (a refusal, a hint, a swipe) waits until
    the front-end knows which it was (TurnResult.notice), so a refusal never replaces the
    answer. `release` shows what was held."""

    def __init__(self, sink: ReplySink) -> None:
        self._sink = sink
        self.streamed = False
        self.held: tuple[str, str, str | None] | None = None

    async def typing(self) -> None:
        self.streamed = True
        await self._sink.typing()

    async def update(self, answer: str, reasoning: str = "") -> None:
        self.streamed = True
        await self._sink.update(answer, reasoning)

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        if self.streamed:
            await self._sink.finish(answer, reasoning, error)
        else:
            self.held = (answer, reasoning, error)

    async def release(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            await self._sink.finish(*held)

    def posts(self) -> list[str]:
        """The messages showing the answer so far: the new answer's row is tied to them
        as it is saved, as a first answer's is (a 🔄 cut by `kill -9` stays tied)."""
        return sink_posts(self._sink)


# How often a running bot settles what crashed processes reserved and prunes old images.
HOUSEKEEPING_SECONDS = 3600.0
SHUTTING_DOWN = "Stopped: the bot is shutting down. Ask again once it is back."
NOT_ASKED = "Not answered: the bot is shutting down. Ask again once it is back."
NOT_RUN = "Not done: the bot is shutting down. Run it again once it is back."
# A question a process that went away (`kill -9`, out of memory) left waiting for its
# turn: said in reply to it by the process serving its channel next.
UNANSWERED = "Not answered: the bot stopped before it got to this question. Ask again."
# More than ONE_BY_ONE of them in one conversation: one reply, to the newest.
UNANSWERED_MANY = (
    "Not answered: the bot stopped before it got to {count} questions here (this is the "
    "newest of them). Ask again."
)
ONE_BY_ONE = 3
UNANSWERED_RETRY = 60.0  # seconds between asks while the database cannot say


@dataclass(frozen=True, slots=True)
class Untold:
    """What to say, in reply to the platform message `post_id` in `ref`, of questions a
    process that went away left unanswered; `Core.told` once said (or found unsayable)."""

    ref: ChannelRef
    post_id: str
    text: str
    records: tuple[int, ...]


_SAY_ENDED = 2.0  # seconds the front-ends have to say a command was ended by a shutdown
# Seconds the writes still queued when a shutdown closes the store get at least, however
# long its front-ends took to end: plenty for a database that answers.
_LAST_WRITES = 2.0


class Core:
    def __init__(
        self,
        store: Store,
        hub: ProviderHub,
        *,
        admin_ids: Iterable[str] = (),
        prefixes: Mapping[Platform, str] = DEFAULT_PREFIXES,
        limits: TurnLimits | None = None,
        prices: PriceTable | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.store = store
        self._prices = prices or PriceTable()
        self.hub = hub
        self.table: tuple[Command, ...] = TABLE
        self._prefixes = dict(prefixes)
        self._gate = (gate or Gate()).with_admins(admin_ids)
        self._engine = ChatEngine(store, hub, limits, self._gate, self._settings_hint)
        # Commands running: a shutdown lets them end and reply, or ends them with NOT_RUN.
        self._commands: set[asyncio.Future[Reply]] = set()
        self._closing = False
        # Once a shutdown has begun (loop time): the end of its patience, past which the
        # writes the database has not taken are given up (close).
        self._close_by: float | None = None

    def prefix(self, platform: Platform) -> str:
        return self._prefixes.get(platform, "/")

    def _settings_hint(
        self, ref: ChannelRef, actor: Actor, kinds: Sequence[str], others: bool
    ) -> str:
        """What `actor` is told of character cards or presets sent here with no question
        (not sent to the model; `others`: its other files were): the import command, if
        theirs to run."""
        return sent_alone(self._context(ref, actor), kinds, others=others)

    async def is_admin(self, ref: ChannelRef, actor: Actor) -> bool:
        """Whether `actor` administers this channel: by the platform, ADMIN_IDS, or a
        bot-admin role of its server."""
        return self._gate.operator.admin(await self._here(ref, actor))

    async def _here(self, ref: ChannelRef, actor: Actor) -> Actor:
        """`actor`, an admin of this channel when one of their roles (as the front-end
        handed them in) is a bot-admin role of its server (`/access admin role …`): what
        the rest of the core reads from `is_channel_admin`. Never a server admin."""
        return await self._engine.admin_here(ref, actor)

    def is_command(self, incoming: Incoming) -> bool:
        prefix = self.prefix(incoming.channel.platform)
        return strip_invisible(plain_prefix(incoming.text, prefix)).startswith(prefix)

    def command(self, path: tuple[str, ...]) -> Command | None:
        return find(self.table, path)

    def parse(self, text: str, platform: Platform, *, server: bool = False) -> Invocation:
        """Raises CommandError with a message for the person who typed it. `server`:
        whether the channel has a server (Matrix rooms and the console have none)."""
        return parse(text, self.table, self.prefix(platform), server=server, platform=platform)

    def _context(
        self,
        ref: ChannelRef,
        actor: Actor,
        roles: Mapping[str, str] | None = None,
        personal: bool = False,
    ) -> CommandContext:
        return CommandContext(
            store=self.store,
            hub=self.hub,
            ref=ref,
            actor=actor,
            is_admin=self._gate.operator.admin(actor),
            is_server_admin=self._gate.operator.server_admin(actor),
            table=self.table,
            prefix=self.prefix(ref.platform),
            prices=self._prices,
            gate=self._gate,
            server_roles=roles,
            personal=personal,
        )

    async def access_refusal(self, ref: ChannelRef, actor: Actor, path: tuple[str, ...]) -> str:
        """Why the command at `path` is not `actor`'s to run here, whatever its values
        ("" when it is): for a front-end to say before telling them where to send it."""
        found = accessible(self.table, path, self._context(ref, await self._here(ref, actor)))
        return found.text if isinstance(found, Reply) else ""

    async def refusal(self, ref: ChannelRef, actor: Actor, inv: Invocation) -> Reply | None:
        """Why this command would be refused, before a front-end collects its secret."""
        prepared = prepare(self.table, inv, self._context(ref, await self._here(ref, actor)))
        return prepared if isinstance(prepared, Reply) else None

    async def run_command(
        self,
        ref: ChannelRef,
        actor: Actor,
        inv: Invocation,
        *,
        roles: Mapping[str, str] | None = None,
        personal: bool = False,
    ) -> Reply:
        """Run a command. `roles`: the roles the server has now, id → name, where the
        platform has roles (a rule naming another id is refused, and marked where rules
        are listed; a role may be given by its name).
        `personal`: typed in a Matrix direct chat about that chat, whose secrets are its
        owner's (held once the room is a group: hold_personal_secrets)."""
        if self._closing:  # started now, it would be cut off at once
            return Reply(NOT_RUN, private=True, ok=False)
        known = dict(roles) if roles is not None else None
        with logged_in(ref):  # the task takes the place along
            work = asyncio.ensure_future(self._run_command(ref, actor, inv, known, personal))
        self._commands.add(work)
        try:
            return await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if work.cancelled() and (current is None or not current.cancelling()):
                return Reply(NOT_RUN, private=True, ok=False)  # the shutdown ended it
            raise
        finally:
            self._commands.discard(work)

    async def _run_command(
        self,
        ref: ChannelRef,
        actor: Actor,
        inv: Invocation,
        roles: Mapping[str, str] | None = None,
        personal: bool = False,
    ) -> Reply:
        actor = await self._here(ref, actor)
        command = self.command(inv.path)
        if command is not None and command.control:
            # A front-end that cannot stream it gets the new answer as the reply.
            collected = _Collected()
            done = await self.run_control(ref, actor, inv, collected)
            if isinstance(done, Reply):
                return done
            if done.ignored:  # its turn was deleted meanwhile: nothing to show anyone
                return Reply("", private=True, silent=True)
            text = collected.text or done.answer
            if done.shown_of:
                text += f"\n{done.shown_of}"
            # A notice (refused, nothing to do) is the presser's; a new answer everyone's.
            return Reply(text, private=done.notice, ok=done.error is None)
        return await execute(self.table, inv, self._context(ref, actor, roles, personal))

    async def hold_personal_secrets(
        self, ref: ChannelRef, actor: Actor, holds: Callable[[str | None], bool]
    ) -> list[str]:
        """The secrets set in the room while it was a direct chat, whose owner `holds`
        says may no longer pay for them (the room is no longer one, or the owner left), are
        not used from now on. The names held now ([] when none, or held before);
        StoreError when the database could not say: nothing may use them then, and the
        front-end tells whoever asked in the store's own words."""
        return await self.store.hold_personal_secrets(ref, actor, holds)

    async def settle_legacy_secrets(self, ref: ChannelRef, *, private: bool) -> None:
        """At start: the room's own secrets an older version stored are its owner's when
        it is a private direct chat now (held if it becomes a group), else the room's."""
        try:
            if await self.store.settle_legacy_secrets(ref, private=private) and private:
                log.info("%s is a direct chat: its keys are its owner's", ref)
        except StoreError as err:  # tried again at the next start
            log.warning("could not settle the keys an older version stored in %s: %s", ref, err)

    def is_control(self, inv: Invocation) -> bool:
        """A command that acts on the newest turn (give it a sink: Core.run_control)."""
        command = self.command(inv.path)
        return command is not None and command.control

    async def run_control(
        self,
        ref: ChannelRef,
        actor: Actor,
        inv: Invocation,
        sink: ReplySink,
        *,
        answer_id: int | None = None,
        any_shown: bool = False,
        on_turn: OnTurn | None = None,
        after: AfterTurn | None = None,
    ) -> TurnResult | Reply:
        """Regenerate, continue, retry or swipe into `sink`; stop, or a bad value: a Reply.
        `answer_id`, `any_shown`, `on_turn`, `after`: ChatEngine.control's.

        Deliberately outside the turn order's queue for `stop`: it must reach the answer
        being written, not wait for it.
        """
        command = self.command(inv.path)
        assert command is not None and command.control
        actor = await self._here(ref, actor)
        p = self.prefix(ref.platform)
        try:
            args = bind(command, inv, p, server=ref.has_server, platform=ref.platform)
        except CommandError as err:
            return Reply(str(err), private=True, ok=False)
        name = inv.path[0]
        if name == "stop":
            refused = await self.stop_refusal(ref, actor)
            if refused is not None:
                # Someone else's answer is being written: their own questions waiting
                # behind it are theirs to stop.
                if waiting := self._engine.stop_waiting(ref, actor.id):
                    return Reply(_waiting_stopped(waiting), private=True)
                return Reply(refused, private=True, ok=False)
            if not self._engine.stop(ref):  # said to the one who asked only: no noise
                if waiting := self._engine.stop_waiting(ref, actor.id):  # behind a command
                    return Reply(_waiting_stopped(waiting), private=True)
                if (showing := self.end_on_its_way(ref)) is not None:
                    return Reply(showing, private=True)
                if await self._engine.cut_off(ref):
                    return Reply(
                        "No answer is being written here: the last one was cut off when the "
                        f"bot stopped. {p}retry asks for it again.",
                        private=True,
                    )
                return Reply("No answer is being written here.", private=True)
            # To the one who stopped it: the answer itself says "Stopped." to everyone.
            return Reply("Stopped the answer.", private=True)
        if name == "swipe":
            action = Control.NEXT if args["direction"] == "next" else Control.PREVIOUS
        else:
            action = Control(name)
        with logged_in(ref):
            return await self._engine.control(
                ref,
                actor,
                action,
                sink,
                admin=self._gate.operator.admin(actor),
                answer_id=answer_id,
                prefix=p,
                any_shown=any_shown,
                on_turn=on_turn,
                after=after,
            )

    async def run_text_command(self, incoming: Incoming) -> Reply:
        try:
            inv = self.parse(
                incoming.text, incoming.channel.platform, server=incoming.channel.has_server
            )
        except CommandError as err:
            return Reply(str(err), private=True, ok=False)
        return await self.run_command(incoming.channel, incoming.actor, inv)

    async def should_answer(self, ref: ChannelRef, addressed: bool) -> bool:
        """Addressed (mention, reply, DM) always; otherwise only in `always` channels."""
        if addressed:
            return True
        config = await self.store.effective_config(ref)
        return config.reply_mode is ReplyMode.ALWAYS

    async def persona(self, ref: ChannelRef, *, avatar: bool = False) -> Persona | None:
        """Who answers here when a character card is set (its name; with `avatar`, a small
        PNG of its image), else None."""
        return await character_persona(self.store, ref, avatar=avatar)

    async def has_conversation(self, ref: ChannelRef) -> bool:
        """Whether this channel or thread holds turns with the bot (kept across restarts)."""
        return bool(await self.store.history(ref, 1))

    async def newest_answer_posts(self, ref: ChannelRef) -> tuple[int, list[str]] | None:
        """The newest answer here and the platform messages showing it (first to last), for
        a typed control to change it in place as its buttons do; None when the newest
        turn is no answer, or no message shows it."""
        history = await self.store.history(ref, 1)
        newest = history[-1] if history else None
        if newest is None or newest.role is not Role.ASSISTANT or newest.id is None:
            return None
        posts = await self.store.posts_of(ref, newest.id)
        return (newest.id, posts) if posts else None

    async def answer_posts(self, ref: ChannelRef, answer_id: int) -> list[str]:
        """The platform messages showing answer `answer_id` here, first to last, as they
        were stored ([] when that cannot be read): a long answer's pages, found without
        reading the channel's history (which needs a permission the bot may lack)."""
        try:
            return await self.store.posts_of(ref, answer_id)
        except StoreError as err:
            log.warning("could not read which messages show an answer in %s: %s", ref, err)
            return []

    async def unshown(self, ref: ChannelRef, posts: Sequence[str]) -> None:
        """The front-end removed these messages of its own (pages left over from a longer
        answer): they show nothing now. A failure is logged."""
        if not posts:
            return
        try:
            await self.store.unlink_posts(ref, posts)
        except StoreError as err:
            log.warning("could not note removed messages in %s: %s", ref, err)

    async def answer_thread(self, ref: ChannelRef, post: str) -> str | None:
        """The thread of `ref`'s channel whose answer the platform message `post` shows
        ("": the channel's own conversation); None when it shows no answer here (or that
        cannot be read)."""
        try:
            found = await self.store.posted(ref.platform, ref.channel_id, [post])
        except StoreError as err:
            log.warning("could not read which conversation a message shows in %s: %s", ref, err)
            return None
        for where, shown in found.items():
            if shown.answered and where.channel_id == ref.channel_id:
                return where.thread_id or ""
        return None

    async def shows_an_answer(self, ref: ChannelRef, post: str) -> bool:
        """Whether the platform message `post`, in `ref`'s channel, shows one of the bot's
        answers (a thread started on it is spoken to the bot)."""
        found = await self.store.posted(ref.platform, ref.channel_id, [post])
        return any(shown.answered for shown in found.values())

    async def chat(self, incoming: Incoming, sink: ReplySink) -> TurnResult:
        # A bot-admin role is read by the turn, after its reads (one round trip, the
        # roles' grants among them): not in a round of its own before them.
        clean = replace(incoming, text=clean_text(incoming.text))
        with logged_in(incoming.channel):
            return await self._engine.turn(clean, sink, self.prefix(incoming.channel.platform))

    def refusal_shown(self, incoming: Incoming, result: TurnResult, shown: bool) -> None:
        """Whether the refusal of `result` (a limit's, TurnResult.refusal) got to its asker:
        one that did not show leaves the next refusal to be told, not silenced."""
        if result.refused_by is not None:
            self._engine.refusal_shown(
                incoming.channel, incoming.actor.id, result.refused_by, shown
            )

    def ordered(self, ref: ChannelRef) -> AbstractAsyncContextManager[None]:
        """Wait for this conversation's turn: messages there are handled in arrival order.

        Chat turns take it by themselves; a front-end takes it around a command so that
        `!model x` typed before a question is applied before that question is answered.
        """
        return self._engine.ordered(ref)

    def waiting_before(
        self,
        ref: ChannelRef,
        post_id: str,
        asker: Callable[[], Awaitable[Actor | None]],
        sender: str = "",
    ) -> AbstractContextManager[HeldBack]:
        """Around a question that waits before `chat` behind another message of its
        conversation (a command running there, which a front-end lets end first): it is
        recorded meanwhile, as one waiting for its turn in `chat` is, so a process killed
        first leaves it to be said unanswered (`unanswered`); behind a command, held
        (HeldBack.hold) it waits as one in `chat`'s turn order does, its asker's stop and
        its deletion reaching it at once. `asker`: who asked it, or None when it is not
        one the bot answers; `sender`: who sent it (a deletion by one who may remove only
        their own messages takes the record away for theirs alone)."""
        return self._engine.waiting_before(ref, post_id, asker, sender)

    async def attachment_refusal(
        self, attachment: Attachment, attached: Sequence[Attachment] = ()
    ) -> str | None:
        """Why a message could not take this file beside those `attached` already, or
        None (the console asks at /attach)."""
        return await self._engine.attachment_refusal(attachment, attached)

    def stop(self, ref: ChannelRef) -> bool:
        """Stop the answer being written in this conversation (what arrived is kept)."""
        return self._engine.stop(ref)

    async def may_chat(self, ref: ChannelRef, actor: Actor) -> bool:
        """Whether `actor` may chat here (the operator's lists, the access rules): a
        front-end passes over a reaction of someone who may not without a word, as it
        does their chat."""
        return await self._engine.may_chat(ref, actor)

    async def stop_refusal(self, ref: ChannelRef, actor: Actor) -> str | None:
        """Why `actor` may not stop the answer being written here (it is someone else's,
        and they are no admin), or None. Asked of the answer being written, not of a
        button's: a ⏹ left on an older answer names whoever asked that one."""
        asker = self._engine.asker(ref)
        if asker is not None and asker != actor.id and not await self.is_admin(ref, actor):
            return (
                f"Only the person who asked or an admin of this {ref.place} can stop this answer."
            )
        return None

    def answer_deleted(self, ref: ChannelRef) -> bool:
        """The message of the answer being written here was deleted: no one reads the
        rest, so it stops (and is forgotten once shown_in ties it to that message)."""
        return self._engine.stop(ref, ANSWER_DELETED)

    async def shown_in(self, ref: ChannelRef, row_id: int | None, posts: Sequence[str]) -> None:
        """An answer (`row_id`, TurnResult.answer_id) is on show in these platform messages:
        deleting one forgets it (`deleted`). A failure is logged; the answer stands."""
        if row_id is None or not posts:
            return
        try:
            await self._engine.shown_in(ref, row_id, posts)
        except StoreError as err:
            log.warning("could not note which messages show an answer in %s: %s", ref, err)

    async def edited(
        self,
        platform: Platform,
        where: str,
        post: str,
        text: str,
        *,
        author: str,
        rewrite: bool = True,
    ) -> Edited:
        """`author` edited their message `post` (channel or thread `where`) to `text`: a
        question the conversation holds reads so from the next turn on. HELD_SECRET: the
        edit wrote a key or password in and was not kept; the front-end takes the message
        out where it may (which forgets the question). A question that carried text files
        (its own, or the message's it replied to) keeps its text: theirs is part of it.
        `rewrite=False` for a message that reads as a command: only checked for secrets.
        A failure is logged."""
        try:
            return await self._engine.edited(
                platform, where, post, text, author, prefix=self.prefix(platform), rewrite=rewrite
            )
        except StoreError as err:
            log.warning("could not apply an edited message in %s: %s", where, err)
            return Edited.NOTHING

    async def deleted(
        self, platform: Platform, where: str, posts: Sequence[str], *, author: str | None = None
    ) -> int:
        """Messages deleted on the platform in channel or thread `where` (a question, an
        answer's page): the turns they showed leave the history, so the model never sees
        them again; the answer to a deleted question stops. `author`: the deleter may
        remove only their own messages (a Matrix member without the redact power).
        Returns how many stored entries went; a failure is logged."""
        try:
            return await self._engine.forget_posted(platform, where, posts, author)
        except StoreError as err:
            log.warning("could not forget deleted messages in %s: %s", where, err)
            return 0

    async def autocomplete(
        self,
        ref: ChannelRef,
        actor: Actor,
        path: tuple[str, ...],
        option: str,
        typed: str,
        limit: int = 25,
        *,
        given: Mapping[str, str] | None = None,
        roles: Mapping[str, str] | None = None,
    ) -> list[str]:
        """What to suggest for `option` of the command at `path` as `actor` types it:
        nothing when the command is not theirs to run here (admins only, outside the
        operator's ALLOWED_* lists), as running it would be refused. `given`: the other
        options filled in so far; `roles`: the server's roles, id → name, as run_command."""
        ctx = self._context(ref, await self._here(ref, actor), roles)
        command = accessible(self.table, path, ctx)
        if isinstance(command, Reply):
            return []
        source = next((o.autocomplete for o in command.options if o.name == option), None)
        if source == "models":
            return await model_choices(ctx, typed, limit)
        if source == "roles":
            return role_choices(ctx, given or {}, typed, limit)
        return []

    async def carry_over(self, old: ChannelRef, new: ChannelRef, actor: Actor) -> bool:
        """The settings of a channel taken to the one that continues it (a Matrix room
        upgraded to a new room); whether any came (none when the new one has its own)."""
        try:
            carried = await self.store.carry_over(old, new, actor)
        except StoreError as err:  # the new one starts as a new channel: said in the log
            log.warning("could not take the settings of %s to %s: %s", old, new, err)
            return False
        if carried:
            log.info("the settings of %s came along to %s", old, new)
        return carried

    def serve(self, platform: Platform, served_by: str) -> None:
        """This process serves `platform` as `served_by` (its lease's claims, the same
        after a restart): the questions waiting their turn are recorded under it."""
        self._engine.waiting.serve(platform, served_by)

    async def unanswered(self, platform: Platform) -> list[Untold]:
        """What to say of the questions the process that served `platform` before this one
        left waiting for their turn when it went away (`kill -9`): a reply to each, or,
        past ONE_BY_ONE in a conversation, one to its newest; while the database cannot
        say, asked again every UNANSWERED_RETRY s. Each is this process's to say now:
        `told` once said; a process that goes away first leaves the rest to the next."""
        while True:
            try:
                left = await self._engine.waiting.left(platform)
                break
            except StoreError as err:
                log.warning(
                    "could not read the questions a stopped process left waiting (%s); "
                    "trying again in %.0f s",
                    err,
                    UNANSWERED_RETRY,
                )
            await asyncio.sleep(UNANSWERED_RETRY)
        by_place: dict[ChannelRef, list[Unanswered]] = {}
        for question in left:
            by_place.setdefault(question.ref, []).append(question)
        untold: list[Untold] = []
        for ref, questions in by_place.items():
            if len(questions) <= ONE_BY_ONE:
                untold += [Untold(ref, q.post_id, UNANSWERED, (q.id,)) for q in questions]
                continue
            text = UNANSWERED_MANY.format(count=len(questions))
            untold.append(Untold(ref, questions[-1].post_id, text, tuple(q.id for q in questions)))
        return untold

    async def told(self, untold: Untold) -> None:
        """Said (or it could not be: the message or the channel gone): not said again."""
        try:
            await self._engine.waiting.said(untold.records)
        except StoreError as err:  # said again by the next process, at worst
            log.warning(
                "could not note that %s was told of unanswered questions: %s", untold.ref, err
            )

    async def settle_reserved(self) -> int:
        """Usage a crashed process left reserved is settled as it stands."""
        return await self._engine.settle_reserved()

    async def housekeeping(self) -> None:
        """What a bot does at start and now and then (HOUSEKEEPING_SECONDS) while it runs,
        whether or not anyone chats: usage the database refused is recorded, usage a
        crashed process reserved is settled, messages past each conversation's newest
        KEPT_MESSAGES are deleted, and images past MEDIA_RETENTION_DAYS or MEDIA_STORE_MB
        are pruned. Failures are logged (a read-only or full database: turns say so
        themselves)."""
        try:
            retried = await self.store.retry_usage()
        except StoreError as err:
            log.warning("could not record the usage the database refused before: %s", err)
        else:
            if retried:
                log.info("recorded %d usage row(s) the database had refused", retried)
        try:
            settled = await self.settle_reserved()
        except StoreError as err:
            log.warning("could not settle usage a stopped process had reserved: %s", err)
        else:
            if settled:
                log.info("settled %d usage row(s) a stopped process had reserved", settled)
        try:
            await self._engine.waiting.tidy()
        except StoreError as err:
            log.warning("could not note that waiting questions had their turn: %s", err)
        old = await self._engine.prune_old_messages()
        if old:
            log.info(
                "deleted %d message(s) past the newest %d of their conversation", old, KEPT_MESSAGES
            )
        pruned = await self._engine.prune_images()
        if pruned:
            log.info("pruned %d stored image(s) past their retention or the store's size", pruned)

    async def keep_house(self, every: float = HOUSEKEEPING_SECONDS) -> None:
        """housekeeping() every `every` s until cancelled (`chatbot run` runs it)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.housekeeping()
            except Exception as err:  # a bug here must not stop the bot
                log.error("housekeeping failed: %s", failure(err))

    def end_on_its_way(self, ref: ChannelRef) -> str | None:
        """What a stop says while the answer here has ended and the platform is slow to
        take its end (its final edit); None when that is not so. Nothing more: the answer
        may have been stopped or failed, and the platform may never take its end (one
        none of whose text was shown is then stored as cut)."""
        if not self._engine.showing_end(ref):
            return None
        return (
            "Nothing to stop: the answer here has ended; the platform is slow to show its "
            f"end in this {ref.place}."
        )

    async def answer_cut_off(self, ref: ChannelRef) -> bool:
        """The newest answer here was cut off by a process that went away, and nothing is
        being written now (a ⏹ left on it can go)."""
        return await self._engine.cut_off(ref)

    async def wind_down(self, patience: float = 10.0) -> None:
        """Before a shutdown: every answer being written ends as a /stop ends it (stored,
        charged, shown as stopped, its ⏹ gone); the questions waiting for them, and any
        that come meanwhile, are told they were not answered; commands running (a status
        check, an import) end and reply. Waited for up to `patience` s."""

        async def commands_end() -> None:
            if self._commands:
                await asyncio.wait(set(self._commands), timeout=patience)
            ended = list(self._commands)
            for work in ended:  # past its patience: ended, and it says so (NOT_RUN)
                work.cancel()
            if ended:  # the front-ends' replies go out after run_command returns
                await asyncio.sleep(_SAY_ENDED)

        self._closing = True
        self._close_by = asyncio.get_running_loop().time() + patience
        await asyncio.gather(
            self._engine.wind_down(SHUTTING_DOWN, NOT_ASKED, patience), commands_end()
        )

    async def close(self) -> None:
        """Close the provider hub and the store. After a shutdown (wind_down) the writes
        the database has not taken when its patience ends (or _LAST_WRITES s on, if that
        is later) are given up: a database that is down does not hold the exit."""
        await self.hub.aclose()
        patience = None
        if self._close_by is not None:
            left = self._close_by - asyncio.get_running_loop().time()
            patience = max(left, _LAST_WRITES)
        await self.store.close(patience)


def _waiting_stopped(count: int) -> str:
    """To one whose own questions waited behind someone else's answer, stopped by /stop."""
    if count == 1:
        return "Stopped your question waiting here: it will not be answered."
    return f"Stopped your {count} questions waiting here: they will not be answered."
