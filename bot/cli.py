"""The `chatbot` command: run, console, migrate, keygen, rotate-keys, usage export,
copy-database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

from bot.app import (
    EXPORT_FORMATS,
    CopyStopped,
    StartError,
    console_id,
    copy_database,
    export_usage,
    migrate,
    rotate_keys,
    run,
    run_console,
)
from bot.logfilter import configure_logging
from bot.settings import (
    ENV_FILE,
    Settings,
    SettingsError,
    dotenv_typos,
    load_settings,
    read_database_url,
)
from bot.store import StoreError
from bot.store.secrets import SecretBox, SecretUnreadable, generate_key

log = logging.getLogger("bot.cli")

# The console's log, under DATA_DIR: its terminal is a chat, so log lines go here instead.
CONSOLE_LOG_NAME = "chatbot.log"
# How a shell reports a writer whose reader went away (128 + SIGPIPE), as `cat` ends.
CLOSED_PIPE = 141


class _Once(argparse.Action):
    """Stores the option's value; given twice, it is refused rather than the last winning."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        given: set[str] = namespace.__dict__.setdefault("_given", set())
        if self.dest in given:
            raise argparse.ArgumentError(self, "given more than once; give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def _console_id(what: str) -> Callable[[str], str]:
    """An argparse type: a console id, refused at start when the store could not keep it."""

    def read(text: str) -> str:
        try:
            return console_id(text, what)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return read


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatbot",
        allow_abbrev=False,  # `rotate-keys --forget` is no flag that deletes secrets
        description="LLM chat bot for Discord and Matrix, configured per channel.",
    )
    parser.add_argument("--version", action="version", version=f"chatbot {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, what: str
    ) -> argparse.ArgumentParser:
        """A subcommand whose own --help says what it does, as the list does."""
        return parent.add_parser(
            name, help=what, description=what[:1].upper() + what[1:] + ".", allow_abbrev=False
        )

    command(sub, "run", "apply migrations and run the configured front-ends")
    console = command(sub, "console", "chat in this terminal (same database and commands)")
    console.add_argument(
        "--channel",
        action=_Once,
        default="console",
        type=_console_id("channel name"),
        help="channel name (default: console)",
    )
    console.add_argument(
        "--user",
        action=_Once,
        default=None,  # you, as admin (an empty --user, an unset variable's, is refused)
        type=_console_id("user id"),
        metavar="ID",
        help="chat as this user id (admin only if ADMIN_IDS lists it); default: you, as admin",
    )
    console.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=f"also print the log to stderr (it always goes to DATA_DIR/{CONSOLE_LOG_NAME})",
    )
    command(sub, "migrate", "upgrade the database schema to the newest version")
    command(sub, "keygen", "print a new key for BOT_SECRET_KEYS")
    rotate = command(
        sub, "rotate-keys", "re-encrypt every stored secret under the first BOT_SECRET_KEYS key"
    )
    rotate.add_argument(
        "--forget-unreadable",
        action="store_true",
        help="first delete the secrets no key opens (their channels set them again)",
    )
    usage = command(sub, "usage", "usage records (tokens per provider call)")
    usage_sub = usage.add_subparsers(dest="usage_command", metavar="ACTION", required=True)
    export = command(usage_sub, "export", "print usage rows to stdout")
    export.add_argument(
        "--since",
        action=_Once,
        required=True,
        type=_day,
        metavar="YYYY-MM-DD",
        help="first UTC day to include",
    )
    export.add_argument(
        "--format",
        action=_Once,
        choices=EXPORT_FORMATS,
        default="csv",
        help="csv (default) or jsonl",
    )
    copy = command(
        sub,
        "copy-database",
        "copy every row of the bot's database into another, empty one (to PostgreSQL, or back)",
    )
    copy.add_argument(
        "--to",
        action=_Once,
        required=True,
        type=_target_url,
        metavar="URL",
        help="the database to fill, as DATABASE_URL takes it (a password can come from "
        "PGPASSWORD instead of the URL)",
    )
    return parser


def _target_url(text: str) -> str:
    try:
        return read_database_url(text.strip())
    except ValueError as err:  # its words never hold the URL: it may carry a password
        raise argparse.ArgumentTypeError(str(err)) from None


def _version() -> str:
    try:
        return metadata.version("chat-completion-bot")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "(not installed)"


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01") from None


def _fail(message: str, code: int = 2) -> int:
    print(f"chatbot: {message}", file=sys.stderr)
    return code


def secret_box(settings: Settings) -> SecretBox:
    """The encryption keys, or a SettingsError saying how to make one."""
    try:
        return SecretBox.from_setting(settings.bot_secret_keys.reveal())
    except ValueError as err:
        if not settings.bot_secret_keys.reveal().strip() and not Path(ENV_FILE).exists():
            # Most often chatbot started in another folder than the one with the .env.
            raise SettingsError(
                f"There is no {ENV_FILE} in {Path.cwd()}: run chatbot in the folder that "
                f"holds your {ENV_FILE} (./scripts/run.sh does). {err}"
            ) from None
        raise SettingsError(str(err)) from None


def _console_logging(settings: Settings, verbose: bool) -> Path | None:
    """Log to DATA_DIR's file, and to stderr only when asked; return the file in use."""
    debug = settings.log_level == "DEBUG"
    log_path = configure_logging(
        settings.log_level,
        log_file=settings.data_dir / CONSOLE_LOG_NAME,
        to_stderr=verbose,
    )
    if not debug:
        # Every start announces its migration context at INFO; the chat needs none of it.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return log_path


async def _migrate(settings: Settings) -> str:
    revision = await migrate(settings)
    return f"Database is at revision {revision}."


def _export(settings: Settings, since: date, fmt: str) -> int:
    """Usage rows to stdout. A reader that stops early (`| head -1`) ends it quietly; a
    stdout that cannot be written (a full disk) is said in one line."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): Python gives it no file
        return _fail("standard output is closed: send the export to a file (> usage.csv).", 1)
    try:
        count = asyncio.run(export_usage(settings, since, fmt, sys.stdout))
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return CLOSED_PIPE
    except OSError as err:  # the database's own failures arrive as StoreError/StartError
        _drop_stdout()
        why = err.strerror or type(err).__name__
        return _fail(f"cannot write the export to standard output: {why}.", 1)
    log.info("exported %d usage row(s)", count)
    return 0


def _said(text: str, *, done: str) -> int:
    """`text`, a command's result, on stdout. One that cannot be written there (a full
    disk, a closed stdout) is said on stderr in one line with `done`, what stands of the
    command's work; status 1. A reader gone early (`| head`) ends it quietly."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): Python gives it no file
        return _fail(f"cannot write to standard output (it is closed). {done}", 1)
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return CLOSED_PIPE
    except OSError as err:
        _drop_stdout()
        why = err.strerror or type(err).__name__
        return _fail(f"cannot write to standard output ({why}). {done}", 1)
    return 0


def _drop_stdout() -> None:
    """Send what is left of stdout's buffer nowhere: Python flushes it at exit, and that
    flush would fail (and print a traceback) the same way again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


async def _copy(settings: Settings, to: str) -> str:
    copied = await copy_database(settings, to)
    width = max(len(c.table) for c in copied)
    lines = [f"  {c.table:<{width}}  {c.rows:>9,}" for c in copied]
    total = sum(c.rows for c in copied)
    return "\n".join(
        [
            f"Copied {total:,} row(s) into the --to database:",
            *lines,
            "To use it, set DATABASE_URL to it (with the same BOT_SECRET_KEYS: the keys "
            "stored for channels stay encrypted under them) and start the bot. The old "
            "database was left as it was.",
        ]
    )


async def _rotate(settings: Settings, forget_unreadable: bool) -> str:
    box = secret_box(settings)
    count, forgotten = await rotate_keys(settings, box, forget_unreadable=forget_unreadable)
    lines = [f"Forgot the {what}: no key opened it." for what in forgotten]
    done = f"Re-encrypted {count} secret(s) under key {box.primary_key_id}"
    if len(box.key_ids) > 1:
        done += (
            " (the first in BOT_SECRET_KEYS); the others can go once every process runs "
            "with it first"
        )
    lines.append(done + ".")
    return "\n".join(lines)


_FORGET = (
    "Nothing was re-encrypted. `chatbot rotate-keys --forget-unreadable` deletes the "
    "secrets no key opens (their channels then set them again) and re-encrypts the rest"
)


def _event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop `chatbot run` serves on: uvloop, whose wakeups and callbacks cost less
    CPU than asyncio's own (bench/RESULTS.md, bench_wakeup.py); asyncio's own on Windows,
    where uvloop does not run."""
    if sys.platform == "win32":
        return None
    import uvloop

    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # What the bot writes (the database, its log, exported cards) holds conversations:
    # readable by its own user only, whatever umask it was started with.
    os.umask(os.umask(0o077) | 0o077)
    if args.command is None:
        _parser().print_help()
        return 0
    if args.command == "keygen":
        key = generate_key()
        # Never on stderr instead: that may go to a log.
        lost = "No key was given: delete any part of one that was written, and run keygen again."
        if said := _said(key, done=lost):
            return said
        # On stderr, so `keygen >> .env`-style use keeps the key alone on stdout.
        key_id = SecretBox.from_setting(key).primary_key_id
        print(f"(its id is {key_id}: rotate-keys and the log name keys by it)", file=sys.stderr)
        return 0
    try:
        for typo in dotenv_typos():  # first: a misspelt name may be why a setting is wrong
            print(f"chatbot: {typo}", file=sys.stderr)
        settings = load_settings()
        if args.command == "console":
            box = secret_box(settings)  # before the log file: a refused start leaves none
            log_path = _console_logging(settings, args.verbose)
            return asyncio.run(
                run_console(
                    settings,
                    box,
                    channel=args.channel,
                    user=args.user or "",
                    log_path=log_path,
                )
            )
        configure_logging(settings.log_level)
        if args.command == "migrate":
            revision = asyncio.run(_migrate(settings))
            return _said(revision, done=revision)
        if args.command == "rotate-keys":
            rotated = asyncio.run(_rotate(settings, args.forget_unreadable))
            return _said(rotated, done="The stored secrets were re-encrypted all the same.")
        if args.command == "usage":
            return _export(settings, args.since, args.format)
        if args.command == "copy-database":
            if settings.log_level != "DEBUG":  # the new database's migrations: not news here
                logging.getLogger("alembic").setLevel(logging.WARNING)
            copied = asyncio.run(_copy(settings, args.to))
            done = "Every row was copied into the --to database all the same."
            return _said(copied, done=done)
        box = secret_box(settings)
        with asyncio.Runner(loop_factory=_event_loop()) as runner:
            return runner.run(run(settings, box))
    except SettingsError as err:
        return _fail(str(err))
    except SecretUnreadable as err:
        return _fail(f"{err} {_FORGET}." if args.command == "rotate-keys" else str(err))
    except (StartError, StoreError) as err:
        return _fail(str(err), 1)
    except CopyStopped as err:  # 128 + the signal, as a shell reports a command it ended
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            _fail(str(err))
        return 128 + err.signum
    except KeyboardInterrupt:
        return 130
