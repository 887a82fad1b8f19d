"""The `chatbot` command: run, console, migrate, keygen, rotate-keys."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from bot.app import rotate_keys, run, run_console
from bot.logfilter import configure_logging
from bot.settings import Settings, SettingsError, load_settings
from bot.store.migrate import upgrade_to_head
from bot.store.secrets import SecretBox, SecretUnreadable, generate_key

log = logging.getLogger("bot.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatbot",
        description="LLM chat bot for Discord and Matrix, configured per channel.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="apply migrations and run the configured front-ends")
    console = sub.add_parser("console", help="chat in this terminal (same database and commands)")
    console.add_argument("--channel", default="console", help="channel name (default: console)")
    sub.add_parser("migrate", help="upgrade the database schema to the newest version")
    sub.add_parser("keygen", help="print a new key for BOT_SECRET_KEYS")
    sub.add_parser(
        "rotate-keys", help="re-encrypt every stored secret under the first BOT_SECRET_KEYS key"
    )
    return parser


def _fail(message: str) -> int:
    print(f"chatbot: {message}", file=sys.stderr)
    return 2


def secret_box(settings: Settings) -> SecretBox:
    """The encryption keys, or a SettingsError saying how to make one."""
    try:
        return SecretBox.from_setting(settings.bot_secret_keys.get_secret_value())
    except ValueError as err:
        raise SettingsError(str(err)) from None


async def _migrate(settings: Settings) -> str:
    revision = await upgrade_to_head(settings.db_url)
    return f"Database is at revision {revision}."


async def _rotate(settings: Settings) -> str:
    count = await rotate_keys(settings, secret_box(settings))
    return f"Re-encrypted {count} secret(s) under the first key in BOT_SECRET_KEYS."


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 0
    if args.command == "keygen":
        print(generate_key())
        return 0
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        if args.command == "migrate":
            print(asyncio.run(_migrate(settings)))
            return 0
        if args.command == "rotate-keys":
            print(asyncio.run(_rotate(settings)))
            return 0
        box = secret_box(settings)
        if args.command == "console":
            return asyncio.run(run_console(settings, box, channel=args.channel))
        return asyncio.run(run(settings, box))
    except SettingsError as err:
        return _fail(str(err))
    except SecretUnreadable as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return 130
