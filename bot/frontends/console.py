"""A terminal chat on the same database and command table: `/…` lines are commands.

The terminal is a chat, not a log: only answers are printed. `/stop` or Ctrl-C while an
answer streams stops that answer (another line typed meanwhile waits for it to end);
Ctrl-C at the prompt, or Ctrl-D on an empty line, leaves (on a half-typed line Ctrl-D does
nothing: only Enter sends a line).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import getpass
import logging
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TextIO, TypeVar

from bot.commands.handlers import CONSOLE_COMMANDS
from bot.commands.parse import (
    HELP_WORDS,
    CommandError,
    TypedCommand,
    asks_secret,
    plain_prefix,
    typed_command,
)
from bot.commands.spec import Invocation, Kind
from bot.core import Core, nothing_given, secret_prompt
from bot.types import (
    Actor,
    Attachment,
    ChannelRef,
    Incoming,
    Platform,
    Reply,
    ReplyFile,
    SecretValue,
    failure,
    went_wrong,
)
from bot.types.text import MARKDOWN_READ, TextError, normalize_text, quoted, refuse_controls

T = TypeVar("T")
log = logging.getLogger("bot.console")

ATTACH = "/attach"
LEAVE = ("/quit", "/exit")  # as Ctrl-D: what people type to leave a terminal program
# A line longer than this is cut here as it is read: far past any limit a line meets
# (a message takes 32,000 characters), so what it is refused for is still its length.
MAX_LINE_CHARS = 1 << 20
# A terminal in line mode (Linux's) keeps 4,095 bytes of a line and drops the rest
# without a word while the screen still shows it; a line this long (a character cut at
# the end may be read as one replacement character) is taken as cut.
TERMINAL_LINE_BYTES = 4093
# What ends the bot as a stop: SIGTERM, and SIGHUP (the terminal it ran in closed, an SSH
# session; or an operator expected a reload) unless ignored, as `nohup` asks. `chatbot run`
# takes SIGINT so too; the console takes Ctrl-C as /stop first.
ENDING_SIGNALS = (signal.SIGTERM,) + (
    () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
)
CUT_BY_TERMINAL = (
    "That line reached the terminal's limit of 4,095 bytes, which cut off its end before "
    "the console could read it, so nothing was done with it. Put long text in a file and "
    "/attach it to a message, or pipe the console's input."
)


def _own_help(words: list[str]) -> str | None:
    """The line of a console command of its own (/attach, /quit, /exit) that `words`
    ask for, as `/help attach` or `/attach help` (and `/model help`) ask; None when they
    ask for none (the core's commands have their help in the table)."""
    if len(words) < 2 or not words[0].startswith("/"):
        return None  # `attach help` without its `/` is a chat line, as any other
    first, rest = words[0].lower(), words[1].strip().lower()
    if first == "/help":
        return CONSOLE_COMMANDS.get(rest.removeprefix("/"))
    if rest in HELP_WORDS:
        return CONSOLE_COMMANDS.get(first.removeprefix("/"))
    return None


class ConsoleSink:
    """Prints an answer as it grows; reasoning (when shown) first, marked 💭."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._answer = ""
        self._reasoning = ""

    async def typing(self) -> None:
        return None

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    async def update(self, answer: str, reasoning: str = "") -> None:
        if reasoning.startswith(self._reasoning) and len(reasoning) > len(self._reasoning):
            if not self._reasoning:
                self._write("💭 ")
            self._write(reasoning[len(self._reasoning) :])
            self._reasoning = reasoning
        if answer.startswith(self._answer) and len(answer) > len(self._answer):
            if not self._answer and self._reasoning:
                self._write("\n")
            self._write(answer[len(self._answer) :])
            self._answer = answer

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        await self.update(answer, reasoning)
        if self._answer or self._reasoning:
            self._write("\n")
        if error:
            self._write(f"⚠️ {error}\n")
        elif not self._answer and answer:
            self._write(answer + "\n")


class _Reader:
    """Reads stdin in its own (daemon) thread, one line when asked.

    A line is read only on request, so a hidden secret prompt never races a pending
    read. It reads the file descriptor itself: a thread blocked in Python's buffered
    stdin would hold its lock, and leaving on Ctrl-C would then abort the interpreter.
    Bytes are decoded in the terminal's encoding (a UTF-8 BOM at the start is dropped);
    bytes it cannot decode are kept as lone surrogates, for `undecodable` to find.
    """

    def __init__(self, fd: int, tty: bool, encoding: str) -> None:
        self._fd = fd
        self._tty = tty
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wanted = threading.Semaphore(0)
        self._pending: list[tuple[str, bool, asyncio.Future[str | None]]] = []
        self._lock = threading.Lock()
        self._echo_lock = threading.Lock()  # the echo's state, the reader's and the console's
        self._ended = False  # the console ended: no hidden prompt turns the echo off now
        sig = "utf-8-sig" if encoding == "utf-8" else encoding
        self._decoder = codecs.getincrementaldecoder(sig)(errors="surrogateescape")
        self._buffer = ""
        self._at = 0  # where the next line starts in _buffer
        self._eof = False
        self._echoing: list[Any] | None = None  # the terminal's modes while echo is off
        self.echoed = False  # the last hidden line had been typed ahead: it was shown

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._serve, name="console-stdin", daemon=True).start()

    async def line(self, prompt: str = "", *, hidden: bool = False) -> str | None:
        assert self._loop is not None
        done: asyncio.Future[str | None] = self._loop.create_future()
        with self._lock:
            self._pending.append((prompt, hidden, done))
        self._wanted.release()
        return await done

    def _serve(self) -> None:
        assert self._loop is not None
        while True:
            self._wanted.acquire()
            with self._lock:
                prompt, hidden, done = self._pending.pop(0)
            try:
                text = self._read(prompt, hidden)
            except (EOFError, OSError, ValueError):
                text = None
            self._loop.call_soon_threadsafe(_settle, done, text)

    def _read(self, prompt: str, hidden: bool) -> str | None:
        if hidden and self._tty:
            return self._read_hidden(prompt)
        return self._read_line(prompt)

    def _read_hidden(self, prompt: str) -> str | None:
        """A line read with the terminal's echo off. Unlike getpass, whose TCSAFLUSH
        dropped every line pasted after the secret without a word, nothing typed ahead
        is dropped; a line typed ahead was shown when typed, and `echoed` says so."""
        import termios  # a terminal here is a POSIX one

        self.echoed = False
        try:
            modes = termios.tcgetattr(self._fd)
        except termios.error:
            return self._read_line(prompt)
        quiet = list(modes)
        quiet[3] &= ~termios.ECHO
        with self._echo_lock:  # never after the console has ended (echo would stay off)
            if self._ended:
                return None
            termios.tcsetattr(self._fd, termios.TCSANOW, quiet)
            self._echoing = modes
        try:
            self.echoed = self._typed_ahead()
            return self._read_line(prompt)
        finally:
            self.restore_echo()
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.write("\n")  # the Enter that ended the line was not shown
                sys.stdout.flush()
            if self._eof:  # Ctrl-D ends this prompt, not the console
                self._eof = False
                self._decoder.reset()

    def restore_echo(self, *, ending: bool = False) -> None:
        """The terminal's echo back on, as it was before a hidden prompt (if one is open);
        `ending`: the console ends, and no prompt turns it off after this."""
        with self._echo_lock:
            self._ended = self._ended or ending
            modes, self._echoing = self._echoing, None
        if modes is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(self._fd, termios.TCSANOW, modes)

    def _typed_ahead(self) -> bool:
        """Input typed but not read yet: read here, or complete lines still held by the
        terminal (a half line the terminal holds is not counted: it cannot be known)."""
        if self._at < len(self._buffer):
            return True
        import array
        import fcntl
        import termios

        queued = array.array("i", [0])
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._fd, termios.FIONREAD, queued)
        return queued[0] > 0

    def _read_line(self, prompt: str) -> str | None:
        if prompt and self._tty:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        parts: list[str] = []  # the line so far, from earlier reads
        kept = 0
        while True:
            end = self._buffer.find("\n", self._at)
            if end < 0 and self._eof and self._at >= len(self._buffer) and not any(parts):
                return None  # the input ended with no line begun (Ctrl-D at an empty prompt)
            stop = len(self._buffer) if end < 0 else end
            piece = self._buffer[self._at : min(stop, self._at + MAX_LINE_CHARS - kept)]
            parts.append(piece)
            kept += len(piece)
            self._at = stop + 1 if end >= 0 else stop
            if end >= 0 or self._eof:
                return "".join(parts).rstrip("\r")
            # No end of line yet: read on; past MAX_LINE_CHARS the rest is dropped (a
            # longer line is refused as too long anyway) and memory stays bounded.
            chunk = os.read(self._fd, 65536)
            if not chunk and self._tty and any(parts) and os.isatty(self._fd):
                # Ctrl-D on a half-typed line (the terminal hands over what it holds,
                # then nothing): as in a shell, it does nothing; only Enter sends a line.
                # A terminal gone (hung up) is no terminal any more: its end is the end.
                continue
            self._eof = not chunk
            self._buffer, self._at = self._decoder.decode(chunk, final=self._eof), 0

    def discard_typed_ahead(self) -> bool:
        """Drop input typed but not read yet (read here, or still in the terminal's
        queue); True when there was some. Called while no line is being read."""
        with self._lock:
            if self._pending:
                return False  # a line is being read: what it reads is asked for
            dropped = self._typed_ahead() if self._tty else self._at < len(self._buffer)
            self._buffer, self._at = "", 0
        if self._tty:
            import termios  # a terminal here is a POSIX one

            with contextlib.suppress(OSError, termios.error):
                termios.tcflush(self._fd, termios.TCIFLUSH)
        return dropped


def _settle(done: asyncio.Future[str | None], text: str | None) -> None:
    if not done.done():
        done.set_result(text)


class Console:
    def __init__(
        self,
        core: Core,
        channel: str,
        stdin: TextIO,
        stdout: TextIO,
        *,
        user: str = "",
        log_path: Path | None = None,
    ) -> None:
        self._core = core
        self._out = stdout
        self._ref = ChannelRef(Platform.CONSOLE, channel_id=channel)
        self._tty = stdin.isatty()
        self._encoding, self._encoding_from = terminal_encoding(stdin)
        self._reader = _Reader(stdin.fileno(), self._tty, self._encoding)
        self._log_path = log_path
        if user:
            # What a member sees: admin only when ADMIN_IDS lists this id.
            self._actor = Actor(user, user)
        else:
            # Whoever holds the terminal holds the database too: admin.
            self._actor = Actor(
                "console", _login_name(), is_channel_admin=True, is_server_admin=True
            )
        self._answering = False
        self._leave = asyncio.Event()
        self._pending: list[Attachment] = []
        self._held: str | None = None  # a line read ahead, to be handled next
        self._asking = False  # a secret's prompt is waiting for its line
        self._next: asyncio.Future[str | None] | None = None  # a line read during an answer
        self._input_ended = False  # the end of input came during an answer
        self._cancelled = False  # Ctrl-C at that prompt: its line is not the secret
        self._ended_by: int | None = None  # SIGTERM or SIGHUP: the signal that ends it

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def _interrupted(self) -> None:
        """Ctrl-C: stop the answer being written, or leave when none is. At a secret's
        prompt it cancels that prompt: the line typed next is not the secret (the read
        itself cannot be taken back, so the line still ends it)."""
        if self._answering and self._core.stop(self._ref):
            return
        if self._asking:
            self._cancelled = True
            self._print(
                "\nCancelled: nothing will be saved. Press Enter to go on (a command typed "
                "now runs once you press Enter)."
            )
            return
        self._leave.set()

    def _terminated(self, signum: int) -> None:
        """SIGTERM, or SIGHUP (its terminal closed): the answer being written ends as
        /stop ends it (kept, marked stopped), then the console leaves."""
        self._ended_by = signum
        if self._answering and self._core.stop(self._ref):
            return  # left once the answer has ended
        self._leave.set()

    async def run(self) -> int:
        MARKDOWN_READ.set(False)  # a terminal: names are shown as they are, not escaped
        self._reader.start()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._interrupted)
            for sig in ENDING_SIGNALS:
                loop.add_signal_handler(sig, self._terminated, sig)
        if self._tty:
            where = f" The log is in {self._log_path}." if self._log_path else ""
            self._print(
                f"chatbot console, channel '{self._ref.channel_id}'. Lines starting with / are "
                f"commands (/help). /stop or Ctrl-C stops an answer; /quit, Ctrl-D or Ctrl-C "
                f"quits.{where}"
            )
        try:
            while not self._leave.is_set():
                line, self._held = self._held, None
                if line is None and not self._input_ended:
                    line = await self._until_leave(self._next_line())
                if line is None:
                    break
                if self._tty and len(line.encode(self._encoding, "replace")) >= TERMINAL_LINE_BYTES:
                    self._print(CUT_BY_TERMINAL)
                    continue
                if undecodable(line) and not self._in_paths_only(line.strip()):
                    self._print(self._not_text("That line"))
                    continue
                try:
                    await self._until_leave(self._handle(line.strip()))
                except Exception as err:  # one line's failure must not end the console
                    log.error("console: handling a line failed: %s", failure(err))
                    self._answering = self._asking = False
                    where = f" ({self._log_path})" if self._log_path else ""
                    self._print(went_wrong(err, log=f"the log{where}"))
                if self._ended_by is not None:
                    break
        finally:
            # Left (a signal) while a key's prompt waited, or as its reader turned echo off.
            self._reader.restore_echo(ending=True)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
                for sig in ENDING_SIGNALS:
                    loop.remove_signal_handler(sig)
        if self._tty:  # Ctrl-C or Ctrl-D left the cursor after the prompt: the shell's goes below
            with contextlib.suppress(OSError):  # a closed terminal takes nothing more
                self._print("")
        return 0 if self._ended_by is None else 128 + self._ended_by

    async def _next_line(self) -> str | None:
        """The next line: the one an answer left being read, else a new read."""
        pending, self._next = self._next, None
        if pending is None:
            return await self._reader.line("> ")
        if self._tty:
            self._out.write("> ")
            self._out.flush()
        return await pending

    async def _answer(self, work: Coroutine[Any, Any, T]) -> T:
        """Run an answer while reading on: `/stop` typed meanwhile stops it, as Ctrl-C
        does; any other line is handled once the answer has ended."""
        self._answering = True
        task = asyncio.ensure_future(work)
        try:
            while self._held is None and not self._input_ended:
                if self._next is None:
                    self._next = asyncio.ensure_future(self._reader.line())
                either: set[asyncio.Future[Any]] = {task, self._next}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    break
                line, self._next = self._next.result(), None
                if line is None:
                    self._input_ended = True  # leave once the answer is done
                elif (stop := self._stop_typed(line)) is not None:
                    self._print((await self._stop(stop)).text)
                else:
                    self._held = line
            return await task
        finally:
            self._answering = False
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _stop_typed(self, line: str) -> Invocation | None:
        """`/stop`, as typed during an answer; None for any other line."""
        text = plain_prefix(line.strip(), self._core.prefix(Platform.CONSOLE))
        try:
            inv = self._core.parse(text, Platform.CONSOLE)
        except CommandError:
            return None
        return inv if inv.path == ("stop",) else None

    async def _stop(self, inv: Invocation) -> Reply:
        done = await self._core.run_control(self._ref, self._actor, inv, ConsoleSink(self._out))
        assert isinstance(done, Reply)  # stop answers at once, with a reply
        return done

    async def _until_leave(self, work: Coroutine[Any, Any, T]) -> T | None:
        """Run `work` unless Ctrl-C asks to leave first (then None)."""
        task = asyncio.ensure_future(work)
        leave = asyncio.ensure_future(self._leave.wait())
        try:
            await asyncio.wait({task, leave}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            leave.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    async def _handle(self, text: str) -> None:
        text = plain_prefix(text, self._core.prefix(Platform.CONSOLE))
        if not text:
            return
        words = text.split(maxsplit=1)
        if text.lower() in LEAVE:
            self._leave.set()
            return
        if (own := _own_help(words)) is not None:  # `/help attach`, `/attach help`
            self._print(own)
            return
        if words[0].lower() == ATTACH:  # any case, as every command
            # The terminal's way to attach a file, as Discord and Matrix have their own.
            self._print(await self._attach(words[1] if len(words) > 1 else ""))
            return
        incoming = Incoming(self._ref, self._actor, text)
        if self._core.is_command(incoming):
            await self._command(text)
            return
        matrix = self._core.prefix(Platform.MATRIX)
        if matrix != self._core.prefix(Platform.CONSOLE):
            # Matrix's `!model x`, as the README shows it there: a command, not a chat line
            # for the model, and `!key set custom <key>` holds a key.
            if (typed := typed_command(text, self._core.table, matrix, exact=True)) is not None:
                await self._typed_elsewhere(text, typed, matrix)
                return
        incoming = Incoming(self._ref, self._actor, text, tuple(self._pending))
        self._pending.clear()
        result = await self._answer(self._core.chat(incoming, ConsoleSink(self._out)))
        if result.refusal:
            self._print(result.refusal)

    async def _typed_elsewhere(self, text: str, typed: TypedCommand, other: str) -> None:
        """A command written with Matrix's prefix: said where commands are, sent
        nowhere; after a key command without its key, a piped next line is dropped, as
        after any refused one."""
        prefix = self._core.prefix(Platform.CONSOLE)
        rewritten = prefix + plain_prefix(text, other)[len(other) :]
        try:
            inv: Invocation | None = self._core.parse(rewritten, Platform.CONSOLE)
        except CommandError:
            inv = None
        name = prefix + (" ".join(inv.path) if inv is not None else typed.name)
        said = f"Commands here start with {prefix}, not {other} (that is Matrix's): "
        if not typed.secret:
            more = " …" if len(rewritten.split()) > len(name.split()) else ""
            self._print(f"{said}type {name}{more} instead. Nothing was sent to the model.")
            return
        self._print(
            f"{said}type {name}, and the key or password is asked for hidden. Nothing was "
            "sent to the model or saved."
        )
        if inv is None or not any(isinstance(v, SecretValue) for v in inv.raw.values()):
            await self._drop_piped_secret(rewritten)

    async def _attach(self, argument: str) -> str:
        """`/attach <path>` adds a file to the next message; `/attach` lists; `clear` drops."""
        if not argument:
            if not self._pending:
                return f"Nothing is attached. {ATTACH} <path> attaches a file to your next message."
            names = ", ".join(a.filename for a in self._pending)
            return f"Attached to your next message: {names}."
        if argument.strip() == "clear":
            if not self._pending:
                return "Nothing was attached."
            self._pending.clear()
            return "Dropped the attached files."
        opened = _open_file(argument, "attach", self._encoding)
        if isinstance(opened, str):
            return opened
        # Checked now, as Discord and Matrix users see a file refused with its message:
        # one bad file among several lost the message and every file with it.
        refused = await self._core.attachment_refusal(opened, self._pending)
        if refused is not None:
            return f"Not attached: {refused}"
        self._pending.append(opened)
        return f"Attached {opened.filename} ({opened.size:,} bytes) to your next message."

    async def _command(self, text: str) -> None:
        try:
            inv = self._core.parse(text, Platform.CONSOLE)
        except CommandError as err:
            self._print(str(err))
            await self._drop_piped_secret(text)
            return
        if self._core.is_control(inv):
            if inv.path == ("stop",):  # typed at the prompt: no answer is being written
                self._print((await self._stop(inv)).text)
                return
            done = await self._answer(
                self._core.run_control(self._ref, self._actor, inv, ConsoleSink(self._out))
            )
            if isinstance(done, Reply):
                self._print(done.text)
            elif done.shown_of:
                self._print(done.shown_of)
            return
        refused = await self._core.refusal(self._ref, self._actor, inv)
        if refused is not None:
            # Said before any secret is asked for: a key typed next is not swallowed.
            self._print(refused.text)
            await self._drop_piped_secret(text)
            return
        command = self._core.command(inv.path)
        for opt in command.options if command else ():
            if opt.secret and opt.required and opt.name not in inv.raw:
                what = f"{secret_prompt(opt, inv.raw)} (input hidden): "
                self._asking, self._cancelled = True, False
                try:
                    value = await self._reader.line(what, hidden=True)
                finally:
                    self._asking = False
                typed_command = value is not None and self._names_a_command(value)
                if typed_command:  # `/settings` is no key: it is the next thing to do
                    self._held = value
                if self._cancelled or typed_command or value is None or not value.strip():
                    if not self._cancelled:  # Ctrl-C already said so
                        self._print(nothing_given(opt))
                    return
                if self._reader.echoed:  # never the key itself: that it was on the screen
                    self._print(
                        "What was pasted with the command reached the terminal before the "
                        "hidden prompt, so the terminal showed it on the screen: clear the "
                        "screen and the terminal's scrollback (e.g. clear && printf '\\e[3J')."
                    )
                if undecodable(value):
                    self._print(self._not_text("What was typed"))
                    return
                inv.raw[opt.name] = SecretValue(value)
        for opt in command.options if command else ():
            typed = inv.raw.get(opt.name)
            if opt.kind is Kind.FILE and isinstance(typed, str):
                opened = _open_file(typed, encoding=self._encoding)
                if isinstance(opened, str):
                    self._print(opened)
                    return
                inv.raw[opt.name] = opened
        reply = await self._core.run_command(self._ref, self._actor, inv)
        self._print(reply.text)
        if reply.file is not None:
            self._print(await asyncio.to_thread(_save, reply.file))
        if reply.greeting is not None:
            self._print(f"{reply.greeting.name}: {reply.greeting.text}")

    async def _drop_piped_secret(self, text: str) -> None:
        """After a refused secret command read from a pipe, the line that follows is the
        secret it would have asked for (the README's piped form): never chat with it.

        A command on the next line is kept; any other line is dropped, and that is said.
        At a terminal the refusal shows before any prompt: only lines pasted with the
        command can follow, and they are dropped."""
        if not asks_secret(text, self._core.table, self._core.prefix(Platform.CONSOLE)):
            return
        if self._tty:
            # Nothing follows unasked, unless it was pasted with the command: whatever
            # was typed ahead of the refusal may be the secret.
            if self._reader.discard_typed_ahead():
                self._print("What was typed after it was dropped: not saved, not sent.")
            return
        following = await self._reader.line(hidden=True)
        if following is None:
            return
        incoming = Incoming(self._ref, self._actor, following)
        matrix = self._core.prefix(Platform.MATRIX)
        if (
            not following.strip()
            or self._core.is_command(incoming)
            or typed_command(following, self._core.table, matrix, exact=True) is not None
        ):
            self._held = following
            return
        self._print(
            "The next line was taken as the secret it asked for and dropped: not saved, not sent."
        )

    def _in_paths_only(self, text: str) -> bool:
        """`text` is an `/attach` line: what the terminal's encoding could not decode is in
        the file's path, and a file name is bytes, kept as typed. (A command's file option
        is read after the parser has made its text valid: such a line is refused.)"""
        words = plain_prefix(text, self._core.prefix(Platform.CONSOLE)).split(maxsplit=1)
        return bool(words) and words[0].lower() == ATTACH  # as `_handle` tells it

    def _not_text(self, what: str) -> str:
        return (
            f"{what} had bytes that are not {self._encoding} text (the encoding "
            f"{self._encoding_from} names), so nothing was done with it: not sent, not saved. "
            f"Set the terminal and that setting to the same encoding, then type it again."
        )

    def _names_a_command(self, text: str) -> bool:
        """`text` starts with one of the console's commands (`/settings`, `/model x`); a
        password that merely starts with `/` is not echoed back as an unknown command."""
        prefix = self._core.prefix(Platform.CONSOLE)
        words = plain_prefix(text, prefix).strip().split(maxsplit=1)
        if not words or not words[0].startswith(prefix):
            return False
        return words[0].lower() in (ATTACH, *LEAVE) or any(
            c.name == words[0][len(prefix) :].lower() for c in self._core.table
        )


def terminal_encoding(stdin: TextIO) -> tuple[str, str]:
    """The encoding the terminal types in, and the setting that named it: the one the
    locale settings name (LC_ALL, else LC_CTYPE, else LANG, as the C library reads them),
    even when that locale is not installed (Python then reads UTF-8: `é` typed on a
    Latin-1 terminal reached the model as U+FFFD); PYTHONIOENCODING, when set, names it
    instead, as it does for Python."""
    if os.environ.get("PYTHONIOENCODING"):
        source = "PYTHONIOENCODING"
    else:
        source = next((n for n in ("LC_ALL", "LC_CTYPE", "LANG") if os.environ.get(n)), "")
        codeset = os.environ.get(source, "").partition(".")[2].partition("@")[0]
        with contextlib.suppress(LookupError):
            if codeset:
                return codecs.lookup(codeset).name, source
    try:
        return codecs.lookup(stdin.encoding or "utf-8").name, source or "your locale"
    except LookupError:
        return "utf-8", source or "your locale"


def undecodable(text: str) -> bool:
    """`text` holds bytes the terminal's encoding could not decode (lone surrogates)."""
    return not text.isprintable() and _UNDECODED.search(text) is not None


_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of such a byte


# Set by scripts/run.sh, which runs the bot from the project's folder (its .env and
# data/): the folder it was started in, where the person's files are.
CALLER_DIR = "CHATBOT_CALLER_DIR"


def _here() -> Path:
    return Path(os.environ.get(CALLER_DIR) or ".")


def _typed_path(typed: str) -> Path:
    """A path as typed (quotes and `~` allowed), relative to where the console was started.

    A file dropped on a terminal is written as a shell reads it (macOS: `my\\ notes.md`,
    GNOME: `'it'\\''s.md'`): when the path as typed names no file, that shell word does."""
    typed = typed.strip()
    path = _here() / _home_expanded(typed.strip("\"'"))
    if "\\" in typed or "'" in typed or '"' in typed:
        try:
            [word] = shlex.split(typed)
        except ValueError:  # not one shell word: the path as typed
            return path
        dropped = _here() / _home_expanded(word)
        if not _exists(path) and _exists(dropped):
            return dropped
    return path


def _home_expanded(typed: str) -> Path:
    """`~` and `~user` as the user's home folder; a user with none (a name mistyped) as
    typed, so it is no such file."""
    try:
        return Path(typed).expanduser()
    except RuntimeError:  # "Could not determine home directory"
        return Path(typed)


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except (OSError, ValueError):  # a name too long, a NUL: no such file either
        return False
    return True


def _open_file(typed: str, verb: str = "read", encoding: str = "utf-8") -> Attachment | str:
    """A path typed after a command (`/character import card.png`, `/attach notes.txt`):
    the file, or why not. A control character in it is refused, not dropped. The path is
    the bytes typed (in the terminal's `encoding`, undecodable ones included): a file
    name that is no valid text (`caf\\xe9.txt` on a UTF-8 system) could not be attached."""
    try:
        typed = refuse_controls(typed, "path")
    except TextError as err:
        return str(err)
    with contextlib.suppress(UnicodeError):
        typed = os.fsdecode(typed.encode(encoding, "surrogateescape"))
    path = _typed_path(typed)
    # The whole path, also for one typed relative: the console's folder (Docker's /data,
    # or wherever `chatbot console` was started) is not always the one the file is in.
    shown = quoted(normalize_text(str(_absolute(path))), 200)
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"Cannot {verb} {shown}: {err.strerror or 'not found'}."
    if not path.is_file():
        return f"Cannot {verb} {shown}: it is not a file."

    async def fetch(limit: int) -> bytes:  # `size` was checked against `limit`
        return await asyncio.to_thread(_read_as_attached, path, size)

    # The name as text (a byte no encoding reads shown as U+FFFD): the model and the
    # database take text only.
    return Attachment(normalize_text(path.name), "", size, fetch)


def _login_name() -> str:
    """Who holds the terminal, by name: the answers' `{{user}}`, and how other console
    users are told whose question it was ("you" read as them)."""
    try:
        return getpass.getuser() or "operator"
    except (OSError, KeyError):  # no login name in the environment, no passwd entry
        return "operator"


def _absolute(path: Path) -> Path:
    """`path` from the root, as `/character export` names the file it saved; as it is
    when the console's folder is gone (deleted while it ran)."""
    try:
        return path.absolute()
    except OSError:
        return path


def _read_as_attached(path: Path, size: int) -> bytes:
    """The file's bytes as they were when it was attached: the size checks were made on
    `size`, so a file that grew since is refused, never read whole (a 12-byte file made
    1.5 GB before the message went out took 1.6 GB of memory)."""
    with path.open("rb") as file:
        data = file.read(size + 1)
    if len(data) != size:
        raise OSError(f"{path.name} changed since it was attached")
    return data


def _save(file: ReplyFile) -> str:
    """A command's file (an exported card) written where the console was started."""
    target = _here() / (Path(file.filename).name or "file")
    stem, suffix = target.stem, target.suffix
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{stem}-{n}{suffix}")
    try:
        target.write_bytes(file.data)
    except OSError as err:
        return f"Could not save {target}: {err.strerror or 'write failed'}."
    return f"Saved {target.resolve()} ({len(file.data):,} bytes)."


async def run_console(
    core: Core, channel: str, *, user: str = "", log_path: Path | None = None
) -> int:
    # An answer with an emoji must not crash a terminal whose locale cannot show it.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    console = Console(core, channel, sys.stdin, sys.stdout, user=user, log_path=log_path)
    return await console.run()
