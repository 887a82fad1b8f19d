"""Composition root: settings → store, providers, Core → front-ends."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import glob
import hashlib
import json
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from bot.core import DEFAULT_PREFIXES, Core, Gate, TurnLimits, endpoint_url
from bot.frontends import FrontendError
from bot.frontends.console import ENDING_SIGNALS
from bot.providers import (
    AddressRefused,
    EndpointPolicy,
    EndpointRefused,
    ProviderHub,
    ProviderSettings,
    saved_url,
)
from bot.settings import Settings, SettingsError
from bot.store import (
    Claim,
    Lease,
    SecretBox,
    Store,
    StoreBusy,
    StoreDamaged,
    StoreError,
    StoreUnwritable,
    generate_key,
)
from bot.store.copy import (
    LOCK_WAIT_SECONDS,
    Copied,
    CopyFailed,
    CopyLocked,
    CopyMismatch,
    Progress,
    TargetNotEmpty,
    copy_rows,
    foreign_tables,
    lock_holders,
    lock_timed_out,
    same_database,
)
from bot.store.db import NotReadable, create_engine, read_only
from bot.store.errors import classify
from bot.store.leases import served
from bot.store.migrate import (
    MigrationFailed,
    UnknownRevision,
    current,
    is_known,
    newest_file_revision,
    upgrade_to_head,
)
from bot.types import Actor, ChannelConfig, Platform, redact
from bot.types.text import TextError, shorten, visible_id
from bot.types.usage import USAGE_COLUMNS

if TYPE_CHECKING:
    from bot.frontends.discord import DiscordOptions
    from bot.frontends.matrix import MatrixOptions

log = logging.getLogger("bot.app")

NO_PLATFORM = (
    "No chat platform is configured. For Discord set DISCORD_TOKEN; for Matrix set "
    "MATRIX_HOMESERVER and MATRIX_USER_ID with MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN "
    "(in .env or the environment). To chat in this terminal instead, run "
    "`./scripts/run.sh console` (Docker: `docker run --rm -it --env-file .env "
    "-v chatbot-data:/data chat-completion-bot console`)."
)


class StartError(Exception):
    """The database cannot be reached or opened at start; the message says where and
    which setting to check, and never holds a password."""


def keep_private(settings: Settings, *, quiet: bool = False) -> int:
    """The bot's files (the SQLite database, the console log, the Matrix store), readable
    by its own user only, as it makes them: an older version left them readable by others.
    Only permissions for others are taken away; returns how many files changed. `quiet`:
    one that cannot be changed is no warning (a command that only reads another user's
    copy)."""
    if sys.platform == "win32":
        return 0
    url = make_url(settings.db_url)
    database = Path(url.database or "") if url.get_backend_name() == "sqlite" else None
    ours = [settings.data_dir / name for name in ("chatbot.db", "chatbot.log")]
    if database is not None and database.name:
        ours.append(database)
    found: list[Path] = []
    for path in dict.fromkeys(ours):
        # SQLite's -wal and -shm files, the log's rotations (chatbot.log.1 …).
        found += [p for p in path.parent.glob(f"{glob.escape(path.name)}*") if p.is_file()]
    store = settings.data_dir / "matrix"
    if store.is_dir():
        found += [store, *store.rglob("*")]
    if settings.data_dir.is_dir():
        # The folder too: a backup made in it (README: sqlite3 .backup) is created as the
        # umask says, readable by all; inside a folder only the bot may enter, it is not.
        found.append(settings.data_dir)
    changed = 0
    for path in found:
        try:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not mode & 0o077:
                continue
            path.chmod(stat.S_IMODE(mode) & ~0o077)
            changed += 1
        except OSError as err:  # another user's file, or gone meanwhile
            said = log.debug if quiet else log.warning
            said("could not make %s private: %s", path, err.strerror or err)
    if changed:
        log.debug("made %d of the bot's files readable by its own user only", changed)
    return changed


_NEWER = (
    "the database is at schema revision {revision}, which this version of the bot does "
    "not know: a newer version upgraded it. Run that version (or a newer one) here too, "
    "or restore a backup taken before the upgrade."
)


async def migrate(settings: Settings) -> str | None:
    """Bring the bot's database to the newest schema and return its revision. Every
    command touches the database here first, so one it cannot reach or open stops it
    here; the bot's files are made its own user's first."""
    keep_private(settings)
    return await _upgraded(settings, "DATABASE_URL")


async def _upgraded(settings: Settings, named: str, lock_wait: float | None = None) -> str | None:
    """`settings.db_url` at the newest schema; StartError saying to correct `named`.
    With `lock_wait` (a copy's target), a lock another session holds that long is given
    up: CopyLocked."""
    try:
        return await upgrade_to_head(settings.db_url, lock_wait=lock_wait)
    except UnknownRevision as err:
        raise StartError(_NEWER.format(revision=shorten(err.revision, 40))) from None
    except MigrationFailed as err:
        if lock_wait is not None:
            _raise_if_locked(err.cause)
        log.debug("the migration failed", exc_info=True)  # for LOG_LEVEL=DEBUG
        said = _database_failure(settings, err.cause, upgrading=err.revision or "none", named=named)
        raise StartError(said) from None
    except (OSError, DBAPIError) as err:
        if lock_wait is not None:
            _raise_if_locked(err)
        log.debug("the database failed at start", exc_info=True)  # for LOG_LEVEL=DEBUG
        raise StartError(_database_failure(settings, err, named=named)) from None


def _raise_if_locked(err: OSError | DBAPIError) -> None:
    """A wait for another session's lock given up (lock_wait): CopyLocked, on no table
    known (a read of the schema's revision, or its upgrade)."""
    if isinstance(err, DBAPIError) and lock_timed_out(err):
        raise CopyLocked(None) from err


async def as_it_is(settings: Settings, lock_wait: float | None = None) -> URL:
    """For a command that only reads (an export): the database is not upgraded (a backup
    looked into stays as it was), nor made where none is, nor written (a copy in a folder
    or on a mount this user may not write is read there); one at another schema revision
    is refused, saying what to run. Returns the URL that reads it so. `lock_wait`:
    _upgraded's."""
    keep_private(settings, quiet=True)
    missing = _missing_file(settings)
    if missing is not None:
        raise StartError(f"there is no database file at {missing}: correct DATABASE_URL.")
    try:
        url = read_only(settings.db_url)
        revision = await current(url, lock_wait=lock_wait)
    except NotReadable as err:
        raise StartError(str(err)) from None
    except (OSError, DBAPIError) as err:
        if lock_wait is not None:
            _raise_if_locked(err)
        log.debug("the database failed at start", exc_info=True)  # for LOG_LEVEL=DEBUG
        raise StartError(_database_failure(settings, err)) from None
    newest = newest_file_revision()
    if revision == newest:
        return url
    if revision is None:
        raise StartError("the database holds no bot data yet (it was never migrated).")
    if not is_known(revision):
        raise StartError(_NEWER.format(revision=shorten(revision, 40)))
    raise StartError(
        f"the database is at schema revision {shorten(revision, 40)}; this version reads "
        f"{newest}. Upgrade it with `chatbot migrate` (there is no way back: copy it "
        "first), or read it with the version that wrote it."
    )


def _missing_file(settings: Settings) -> Path | None:
    """A SQLite database file that is not there (opening it would make an empty one)."""
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    where = Path(url.database or "").resolve()
    return None if where.is_file() else where


def _damaged(settings: Settings, detail: str, named: str = "DATABASE_URL") -> str:
    """A database found damaged (StoreDamaged's `detail`, the driver's words)."""
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite":
        where = f"the database file {Path(url.database or '').resolve()}"
        fix = "or move the file away to start with an empty one"
    else:
        where = f"the database at {url.host or 'localhost'}:{url.port or 5432}"
        fix = "see PostgreSQL's log for the damaged table"
    return (
        f"{where} is damaged or is no database ({detail}). Restore a backup (README: "
        f"Restoring a backup), {fix}; or correct {named}."
    )


def _database_failure(
    settings: Settings,
    err: OSError | DBAPIError,
    *,
    upgrading: str | None = None,
    named: str = "DATABASE_URL",
) -> str:
    """What failed, where, and which setting (`named`) to check. `upgrading`: the schema
    revision a failed upgrade started from (the database was left at it)."""
    url = make_url(settings.db_url)
    cause = err.orig if isinstance(err, DBAPIError) else err
    # `copy-database --to` starts nothing: what to do next is to run it again.
    again = "start again" if named == "DATABASE_URL" else "run the command again"
    if url.get_backend_name() == "sqlite":
        why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        where = f"the database file {Path(url.database or '').resolve()}"
        if isinstance(classify(err), StoreDamaged):  # the file, not the folder
            if named == "DATABASE_URL":
                return _damaged(settings, why)
            return f"{where} is damaged or is no database ({why}). Give {named} a new file."
        left = (
            ""
            if upgrading is None
            else f" The upgrade from schema revision {upgrading} was not made: the file was "
            "left as it was."
        )
        if isinstance(typed := classify(err), StoreUnwritable) and typed.full:  # not the folder
            return (
                f"cannot write {where} ({why}): the disk may be full or failing, or a file "
                f"size limit (ulimit -f) holds the bot.{left} Free space there, then "
                f"{again}."
            )
        if isinstance(typed, StoreBusy) and upgrading is not None:  # not the file's rights
            return (
                f"could not upgrade {where}: another process held its write lock all the "
                f"while the upgrade waited ({why}).{left} End what holds it (a stuck bot "
                f"process, an sqlite3 shell inside a transaction), then {again}."
            )
        if upgrading is not None:
            return (
                f"could not upgrade {where} from schema revision {upgrading} ({why}); it "
                "was left as it was. Check that the bot's user may write that file and its "
                f"folder, then {again}."
            )
        if settings.database_url:
            return f"cannot open {where} ({why}): correct {named}."
        return (
            f"cannot open {where} ({why}): DATA_DIR {settings.data_dir} must be a folder the "
            "bot can create and write; set DATA_DIR to one."
        )
    host = f"{url.host or url.query.get('host') or 'localhost'}:{url.port or 5432}"
    if upgrading is not None:
        said = _driver_words(cause, [url.password or ""])
        if named != "DATABASE_URL":  # one the bot's user may not make tables in, say
            return (
                f"could not make the bot's tables in the {named} database at {host} "
                f"({said}); it was left as it was. Check that {named} names an empty "
                f"database its user may create tables in, then {again}."
            )
        return (
            f"could not upgrade the database at {host} from schema revision {upgrading} "
            f"({said}); it was left as it was. Check the database's log, then start again."
        )
    if isinstance(err, DBAPIError):  # it answered: a login, a database name…
        # The driver's own words ("password authentication failed for user …", "database
        # … does not exist"), under SQLAlchemy's adapter whose name says nothing.
        driver: BaseException = (err.orig.__cause__ or err.orig) if err.orig else err
        said = _driver_words(driver, [url.password or ""])
        return (
            f"the database at {host} refused the connection ({said}): check {named} and "
            "the database's log."
        )
    if isinstance(err, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(err, socket.gaierror):
        why = "host name not found"
    elif isinstance(err, TimeoutError):
        why = "no answer in time"
    else:  # asyncpg's words when it has no errno: "… rejected SSL upgrade" (?ssl=require)
        why = err.strerror or _driver_words(err, [url.password or ""])
    return f"cannot reach the database at {host} ({why}): start it, or correct {named}."


def _driver_words(cause: BaseException | None, passwords: list[str]) -> str:
    """A driver's message on one line of at most 200 characters, without the passwords
    (PostgreSQL's come with a HINT line: `verify-full` without a root certificate)."""
    said = " ".join(redact(str(cause), passwords).split())
    return shorten(said, 200) or type(cause).__name__


def default_proxy_url(settings: Settings) -> str:
    """DEFAULT_PROXY_URL as `/proxy set` keeps a pasted URL: routes such as
    /chat/completions cut off (the bot adds them), `/V1` and doubled slashes undone, a
    short IPv4 spelling (`127.1`) written out."""
    url = endpoint_url(settings.default_proxy_url)[0]
    return saved_url(url) if url else ""


class _LookedUpOnUse(Exception):
    """A host name: the addresses it has are vetted when a connection is made."""


async def _not_at_start(host: str, port: int) -> list[str]:
    raise _LookedUpOnUse  # DNS may not be up yet, and a name may point elsewhere later


async def _refusal(url: str, allow_private: bool) -> EndpointRefused | None:
    """Why the endpoint policy refuses `url` by its text or literal host, or None."""
    try:
        await EndpointPolicy(allow_private=allow_private, resolver=_not_at_start).check(url)
    except _LookedUpOnUse:
        pass
    except EndpointRefused as err:
        return err
    return None


async def check_default_proxy_url(settings: Settings) -> None:
    """Refuse at start a DEFAULT_PROXY_URL every turn would be refused (SettingsError
    naming the fix), and log once the URL in use when it is not the one written."""
    url, cut = endpoint_url(settings.default_proxy_url)
    refused = await _refusal(url, settings.allow_private_endpoints) if url else None
    if refused is None:
        url = default_proxy_url(settings)
        if url != settings.default_proxy_url:  # it holds no secret: user info is refused
            why = "; the bot adds the routes it needs (/chat/completions, /models) itself"
            log.warning("DEFAULT_PROXY_URL is used as %s%s", url, why if cut else "")
        return
    if not isinstance(refused, AddressRefused):  # not a URL the bot can use at all
        reason = str(refused)
        raise SettingsError(
            f"Setting DEFAULT_PROXY_URL is invalid: {reason[:1].lower()}{reason[1:]}"
        )
    what = f"Setting DEFAULT_PROXY_URL is refused: {refused.shown} is {refused.what}"
    if refused.always:
        raise SettingsError(f"{what}, which the bot never contacts.")
    raise SettingsError(
        f"{what}, and ALLOW_PRIVATE_ENDPOINTS is off. Fix: set ALLOW_PRIVATE_ENDPOINTS=true, "
        "or give DEFAULT_PROXY_URL a public URL."
    )


def operator_defaults(settings: Settings) -> ChannelConfig:
    return ChannelConfig.of(
        source=settings.default_source,
        model=settings.default_model or None,
        proxy_url=default_proxy_url(settings) or None,
        system_prompt=settings.default_system_prompt or None,
        reply_mode=settings.default_reply_mode,
    )


def turn_limits(settings: Settings) -> TurnLimits:
    return TurnLimits(
        answer_timeout=settings.provider_answer_timeout,
        max_answer_chars=settings.max_answer_chars,
        max_images=settings.max_images_per_turn,
        history_image_turns=settings.history_image_turns,
        max_attachment_bytes=int(settings.max_attachment_mb * 2**20),
        media_store_bytes=settings.media_store_mb * 2**20,
        media_retention_days=settings.media_retention_days,
    )


def provider_settings(settings: Settings) -> ProviderSettings:
    return ProviderSettings(
        connect_timeout=settings.provider_connect_timeout,
        first_byte_timeout=settings.provider_first_byte_timeout,
        idle_timeout=settings.provider_idle_timeout,
        max_retries=settings.provider_max_retries,
        allow_private_endpoints=settings.allow_private_endpoints,
        custom_extra_headers=dict(settings.custom_extra_headers),
    )


async def build_core(settings: Settings, box: SecretBox) -> Core:
    """Migrate, open the store and the provider hub, and hand them to a Core."""
    await check_default_proxy_url(settings)  # a mistake stops before the database
    revision = await migrate(settings)
    log.info("database at revision %s", revision)
    store = await Store.open(
        settings.db_url,
        box,
        defaults=operator_defaults(settings),
        default_secrets=settings.default_secrets(),
    )
    try:
        await check_keys(store, box)
    except StoreDamaged as err:  # it will not mend: said now, not at every turn
        await store.close()
        raise StartError(_damaged(settings, err.detail)) from None
    except StoreError as err:  # the turns say what fails, if it lasts
        log.warning("could not check the stored secrets' keys: %s", err)
    hub = ProviderHub(provider_settings(settings))
    prefixes = {**DEFAULT_PREFIXES, Platform.MATRIX: settings.matrix_command_prefix}
    limits = turn_limits(settings)
    core = Core(
        store,
        hub,
        admin_ids=settings.admin_ids,
        prefixes=prefixes,
        limits=limits,
        prices=settings.price_table(),
        gate=Gate.of(
            settings.limit_defaults(),
            servers=settings.allowed_servers,
            users=settings.allowed_users,
            matrix_level=settings.matrix_admin_power_level,
        ),  # the operator's admins: admin_ids above, the one way Core takes them
    )
    await core.housekeeping()
    return core


# Each front-end is imported only when it runs: discord.py and matrix-nio (with its crypto)
# are a third of the process's memory, and a Discord-only bot needs no Matrix code.
def discord_options(settings: Settings) -> DiscordOptions:
    from bot.frontends.discord import DiscordOptions

    return DiscordOptions(
        token=settings.discord_token,
        shard_count=settings.discord_shard_count,
        shard_ids=settings.discord_shard_ids,
        message_content=settings.discord_message_content,
        command_guilds=settings.discord_command_guilds,
        api_url=settings.discord_api_url,
        gateway_url=settings.discord_gateway_url,
    )


def matrix_options(settings: Settings) -> MatrixOptions:
    from bot.frontends.matrix import MatrixOptions

    return MatrixOptions(
        homeserver=settings.matrix_homeserver,
        user_id=settings.matrix_user_id,
        password=settings.matrix_password,
        access_token=settings.matrix_access_token,
        device_name=settings.matrix_device_name,
        store_dir=settings.data_dir / "matrix",
        e2ee=settings.matrix_e2ee,
        trust_devices=settings.matrix_trust_devices,
        admin_power_level=settings.matrix_admin_power_level,
        allowed_inviters=settings.matrix_allowed_inviters,
    )


def discord_claims(settings: Settings) -> tuple[list[Claim], str]:
    """What a process serving Discord holds, and what it is called in the log: the bot
    (by its token's hash), or its shards, each with the bot shared and its shard count
    shared only with processes of the same count."""
    token = hashlib.sha256(settings.discord_token.reveal().encode()).hexdigest()[:16]
    bot = f"discord bot {token}"
    ids, count = sorted(set(settings.discord_shard_ids)), settings.discord_shard_count
    if not ids:
        return [Claim(bot)], "this Discord bot"
    shards = [Claim(f"{bot} shard {i} of {count}") for i in ids]
    # Discord sends a guild's messages to every session whose shard matches it under that
    # session's count: shard 0 of 2 and shard 0 of 3 both answer a sixth of the guilds.
    counted = Claim(f"{bot} shard count", shared=True, variant=count)
    what = f"shard {', '.join(map(str, ids))} of this bot"
    return [Claim(bot, shared=True), counted, *shards], what


def matrix_claims(settings: Settings) -> tuple[list[Claim], str]:
    return [Claim(f"matrix {settings.matrix_user_id}")], f"the account {settings.matrix_user_id}"


def served_by(claims: list[Claim]) -> str:
    """What the questions a front-end keeps waiting are recorded under: a digest of its
    own claims (not the bot's shared one), the same for the same bot or shards after a
    restart, of one width however many shards (a token's hash stays out of the rows)."""
    names = "\n".join(sorted(c.name for c in claims if not c.shared))
    return hashlib.blake2b(names.encode(), digest_size=8).hexdigest()


LEASE_RETRY = 5.0  # seconds between tries for what another process serves
# Seconds between checks that what this process serves is still its own: well under
# LEASE_RETRY, so after a database restart the process that held a claim takes it back
# before one waiting for it does (both answered meanwhile).
LEASE_CHECK = 2.0


async def _serving(
    store: Store, held: tuple[list[Claim], str], name: str, runner: Coroutine[Any, Any, None]
) -> None:
    """Run `runner` once this process holds its claims. While another process serves the
    same on this database, wait (said once): two processes logged in as one Matrix account,
    or serving one Discord shard, answered every message twice."""
    claims, what = held
    lease = store.lease()
    lost = asyncio.Event()
    watch: asyncio.Task[None] | None = None
    serving = asyncio.current_task()
    assert serving is not None
    try:
        await _claim(lease, claims, name, what)
        watch = asyncio.create_task(_keep(lease, claims, name, what, lost, serving))
        await runner
    except asyncio.CancelledError:
        if not lost.is_set():
            raise
        while serving.uncancel():  # the watcher's, as many as it took to end the runner
            pass
        raise FrontendError(
            f"another process took over serving {what} on this database while the "
            "connection that held it here was down; this process stops, so that one answers"
        ) from None
    finally:
        runner.close()  # stopped while it waited: never started, nor warned about
        try:
            if watch is not None:
                watch.cancel()
                await asyncio.wait({watch})  # off the connection before it is closed
        finally:
            # In a task of its own: a shutdown cancelling this one again must not leave
            # the claims' connection in the pool.
            await asyncio.shield(lease.close())


async def _claim(lease: Lease, claims: list[Claim], name: str, what: str) -> None:
    """Until this process holds `claims`: said once when another holds them, and once
    per kind of database error meanwhile (the next try may well get through)."""
    waited, failed = False, ""
    while True:
        try:
            if await lease.take(claims):
                break
        except PermissionError as err:  # the claims' folder beside an SQLite database
            raise FrontendError(
                f"cannot claim {what}: {err.strerror} ({err.filename}); the bot's user must "
                "be able to write beside its database"
            ) from None
        except (DBAPIError, OSError) as err:
            if type(err).__name__ != failed:
                failed = type(err).__name__
                log.warning("%s: could not claim %s (%s); trying again", name, what, failed)
        else:
            if not waited:
                counted = any(c.variant is not None for c in claims)
                log.warning(
                    "%s: another process serves %s%s on this database; waiting for it to "
                    "stop (two would answer every message twice)",
                    name,
                    what,
                    ", or this bot with another DISCORD_SHARD_COUNT" if counted else "",
                )
                waited = True
        await asyncio.sleep(LEASE_RETRY)
    if waited:
        log.info("%s: the other process stopped; starting", name)


async def _keep(
    lease: Lease,
    claims: list[Claim],
    name: str,
    what: str,
    lost: asyncio.Event,
    serving: asyncio.Task[Any],
) -> None:
    """Check now and then that this process still holds `claims` (PostgreSQL lets them go
    with the connection they were taken on): taken again when they came free; when
    another process took them meanwhile, the front-end is stopped (`lost`), cancelled
    again every second (a reconnecting client may swallow one cancellation). A database
    that cannot be reached is said once as it goes, and once as it comes back."""
    down = False  # the claim could not be checked: said once, until it can be again
    while not lost.is_set():
        await asyncio.sleep(LEASE_CHECK)
        if serving.cancelling():
            return  # shutting down: nothing to keep
        try:
            held = await lease.holding(claims)
            again = held or await lease.take(claims)
        except Exception as err:  # the database is down: nobody can take them meanwhile
            said = log.debug if down else log.warning
            said(
                "%s: could not check the claim on %s (%s); checking again every %g s",
                name,
                what,
                type(err).__name__,
                LEASE_CHECK,
            )
            down = True
            continue
        if down and again:
            down = False
            log.info(
                "%s: the database answers again; the claim on %s is %s",
                name,
                what,
                "still held" if held else "held again",
            )
        elif held:
            continue
        elif again:
            log.info(
                "%s: the claim on %s lapsed with a database connection; held again", name, what
            )
        elif not serving.cancelling():
            log.error("%s: another process took over serving %s; stopping here", name, what)
            lost.set()
    while not serving.done():
        serving.cancel()
        await asyncio.sleep(1.0)


def settle_start_up() -> None:
    """Keep the garbage collector off what start-up made: it lives as long as the process.

    `gc.freeze()` moves every object tracked now (modules, classes, the front-ends'
    libraries: most of the heap) to a generation no collection walks, so each full
    collection of a long run walks only what came later. Reference counting still frees
    them; only a cycle among them that became garbage would stay. bench/RESULTS.md has
    what it saves a turn.
    """
    gc.collect()  # what start-up already dropped is not kept forever
    gc.freeze()


async def run(settings: Settings, box: SecretBox) -> int:
    """Run every configured front-end until SIGINT/SIGTERM or until one cannot go on."""
    if not settings.discord_enabled and not settings.matrix_enabled:
        print(f"chatbot: {NO_PLATFORM}", file=sys.stderr)
        return 2
    core = await build_core(settings, box)
    runners: dict[str, Coroutine[Any, Any, None]] = {}
    if settings.discord_enabled:
        from bot.frontends.discord import run_discord

        discord = run_discord(core, discord_options(settings))
        held = discord_claims(settings)
        core.serve(Platform.DISCORD, served_by(held[0]))
        runners["Discord"] = _serving(core.store, held, "Discord", discord)
    if settings.matrix_enabled:
        from bot.frontends.matrix import run_matrix

        matrix = run_matrix(core, matrix_options(settings))
        held = matrix_claims(settings)
        core.serve(Platform.MATRIX, served_by(held[0]))
        runners["Matrix"] = _serving(core.store, held, "Matrix", matrix)
    runners["housekeeping"] = core.keep_house()
    settle_start_up()
    stuck: list[str] = []
    try:
        stuck = await _until_stopped(runners, core.wind_down)
    except FrontendError as err:
        # Past the log's redaction: cleaned here of every secret the process has seen.
        print(f"chatbot: {redact(str(err))}", file=sys.stderr)
        return 1
    finally:
        await core.close()
        log.info("stopped")
    if stuck:
        # The event loop, closing, would wait for them forever: everything is saved and
        # closed, so the process ends without them.
        log.warning("%s did not end when told to; exiting without it", " and ".join(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


# How long front-ends get to end once told to. Each is told again every second: Python
# 3.11's asyncio.wait_for, which discord.py reconnects with, can swallow a cancellation
# that arrives as the connection it waits for is made.
STOP_GRACE = 10.0


async def _cancel(tasks: Collection[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` until they end; those still running after STOP_GRACE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE
    pending = set(tasks)
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(1.0, deadline - loop.time()))
    return pending


# Ctrl-C, and what ends the console too: the answers being written end as a stop.
_STOP_SIGNALS = (signal.SIGINT, *ENDING_SIGNALS)


async def _until_stopped(
    runners: dict[str, Coroutine[Any, Any, None]],
    wind_down: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Wait for a stop signal or for a front-end to end; then cancel the others (after
    `wind_down`, on a stop signal: the answers being written end while the front-ends
    can still show it). The names of those that would not end."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks = {asyncio.create_task(coro, name=name): name for name, coro in runners.items()}
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done: set[asyncio.Task[Any]] = set()
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            log.info("stop signal received; shutting down")
            if wind_down is not None:
                await wind_down()
    finally:
        stopper.cancel()
        stuck = await _cancel(tasks)
        for sig in _STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    for task, name in tasks.items():
        if task in stuck or task.cancelled():
            continue
        error = task.exception()
        if error is None:
            if task in done and stopper not in done:
                # Front-ends run until cancelled; one that returns has lost its connection.
                raise FrontendError(f"{name} stopped on its own; see the log above.")
            continue
        if isinstance(error, FrontendError):
            raise FrontendError(f"{name}: {error}")
        log.error("%s front-end failed: %s", name, type(error).__name__)
        raise FrontendError(
            f"{name} stopped after an unexpected error ({type(error).__name__}); see the log above."
        )
    return [tasks[task] for task in stuck]


CONSOLE_ID_CHARS = 255  # what the store's id columns hold


def console_id(typed: str, what: str) -> str:
    """A `console --channel` or `--user` id as the store keeps it: visible characters
    only (bytes a terminal could not decode arrive as lone surrogates, which no database
    or terminal takes); TextError saying why not."""
    value = visible_id(typed, what)
    if len(value) > CONSOLE_ID_CHARS:
        raise TextError(f"The {what} is longer than {CONSOLE_ID_CHARS} characters.")
    return value


async def run_console(
    settings: Settings,
    box: SecretBox,
    channel: str,
    *,
    user: str = "",
    log_path: Path | None = None,
) -> int:
    from bot.frontends.console import run_console as console_loop

    core = await build_core(settings, box)
    try:
        return await console_loop(core, channel, user=user, log_path=log_path)
    finally:
        await core.close()


# Who forgets unreadable secrets in the audit log: the operator, at the terminal.
OPERATOR = Actor("operator", "the operator (chatbot rotate-keys)")


async def rotate_keys(
    settings: Settings, box: SecretBox, *, forget_unreadable: bool = False
) -> tuple[int, list[str]]:
    """Re-encrypt every stored secret under the first key (all or nothing); with
    `forget_unreadable`, the ones no key opens are deleted first. Returns how many were
    re-encrypted, and which were forgotten."""
    await migrate(settings)
    store = await Store.open(settings.db_url, box, defaults=operator_defaults(settings))
    try:
        forgotten: list[str] = []
        if forget_unreadable:
            stored = await store.secret_key_ids()
            if stored and not set(stored) & set(box.key_ids):
                # Not one of them opens: these are not the keys the bot runs with (another
                # .env), and forgetting would delete every secret.
                raise StartError(
                    f"none of the {sum(stored.values())} stored secret(s) was encrypted "
                    "with a key in BOT_SECRET_KEYS: these are probably not the keys the bot "
                    "runs with. Nothing was deleted; run this with the bot's own .env."
                )
            forgotten = await store.forget_unreadable_secrets(OPERATOR)
        return await store.rotate_keys(), forgotten
    finally:
        await store.close()


async def check_keys(store: Store, box: SecretBox) -> None:
    """Say at start when stored secrets were encrypted with a key BOT_SECRET_KEYS lacks
    (removed too early, or another install's database): their channels cannot answer."""
    for key_id, count in sorted((await store.secret_key_ids()).items()):
        if key_id not in box.key_ids:
            log.warning(
                "%d stored secret(s) were encrypted with key %s, which BOT_SECRET_KEYS "
                "lacks: their channels cannot answer until that key is added back (`chatbot "
                "rotate-keys --forget-unreadable` deletes them instead)",
                count,
                key_id,
            )


EXPORT_FORMATS = ("csv", "jsonl")
# Valid in a JSON string, but a line end to Python's splitlines() (and U+2028/9 to older
# JavaScript): escaped, so a JSON Lines record is one line to every reader.
_LINE_ENDS = str.maketrans({c: f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"})


def _json_line(row: dict[str, object]) -> str:
    return json.dumps(row, ensure_ascii=False).translate(_LINE_ENDS) + "\n"


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list).
# User ids (every Matrix id starts with @) and model ids come from chat and endpoints.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _as_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading ' before a formula's start; a
    carriage return as the line break csv quotes (the writer ends rows with \n alone, so
    a bare \r went out unquoted and a reader split the row there)."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n")


async def export_usage(settings: Settings, since: date, fmt: str, out: TextIO) -> int:
    """Write every usage row from the UTC day `since` on to `out`; returns the count."""
    url = await as_it_is(settings)
    # The export reads no secret: a throwaway key lets it run without BOT_SECRET_KEYS.
    box = SecretBox.from_setting(generate_key())
    store = await Store.open(url, box, defaults=operator_defaults(settings))
    count = 0
    try:
        writer: csv.DictWriter[str] | None = None
        async for record in store.usage_records(since):
            row = record.as_dict()
            if fmt == "jsonl":
                out.write(_json_line(row))
            else:
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
                    writer.writeheader()
                writer.writerow({name: _as_cell(value) for name, value in row.items()})
            count += 1
        if fmt == "csv" and writer is None:  # the header alone says which columns exist
            out.write(",".join(USAGE_COLUMNS) + "\n")
    finally:
        await store.close()
    return count


def _same_database(first: str, second: str) -> bool:
    """Whether two URLs name one database by their words; the same PostgreSQL database
    spelled otherwise (`localhost`) is found once both are reached (same_database)."""
    one, other = make_url(first), make_url(second)
    if one.get_backend_name() != other.get_backend_name():
        return False
    if one.get_backend_name() == "sqlite":
        paths = [Path(one.database or "").resolve(), Path(other.database or "").resolve()]
        if all(path.is_file() for path in paths):  # a hard link, a bind mount: one file
            return os.path.samefile(*paths)
        return paths[0] == paths[1]
    return (one.host, one.port or 5432, one.database) == (
        other.host,
        other.port or 5432,
        other.database,
    )


class CopyStopped(Exception):
    """copy-database ended by a stop signal (`signum`); the message says what stands and
    what to do next."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


_SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C"}


def _copy_stopped(signum: int, progress: _CopyStage) -> str:
    """What a stop at `progress` leaves: nothing is copied before the commit, which a
    stop does not interrupt (one transaction, rolled back as the copy ends or, if the
    process is gone, by the server)."""
    name = _SIGNAL_NAMES.get(signum) or signal.Signals(signum).name
    if progress.rows.table is not None:
        where = f"while copying the table {progress.rows.table}"
        target = "the --to database holds the bot's empty tables only"
    elif progress.schema:
        where = "while making the bot's tables in the --to database"
        target = "the --to database is as it was, or holds the bot's empty tables only"
    else:
        where = "before it wrote anything to the --to database"
        target = "the --to database is as it was"
    return (
        f"copy-database was stopped ({name}) {where}. Nothing was copied: the bot's "
        f"database is as it was and {target}. Run the same command again to copy."
    )


class _CopyStage:
    """Where copy_database is: making the target's schema, then copying its rows."""

    def __init__(self) -> None:
        self.schema = False
        self.rows = Progress()


async def copy_database(settings: Settings, to: str) -> list[Copied]:
    """Every row of the bot's database into the empty one at `to` (made at the newest
    schema first): moving to PostgreSQL, or back. Refused while a process serves either
    one; all or nothing. A stop signal (Ctrl-C, SIGTERM) ends it as CopyStopped, saying
    what stands; one that comes once the commit is under way lets it finish."""
    stage = _CopyStage()
    copying = asyncio.create_task(_copy_database(settings, to, stage))
    loop = asyncio.get_running_loop()
    stopped: list[int] = []
    timers: list[asyncio.TimerHandle] = []

    def force(signum: int) -> None:
        # The driver did not end its statement when cancelled (asyncpg can wait forever
        # on a silent server or in executemany): nothing was committed, and the server
        # rolls the transaction back once this process has gone.
        with contextlib.suppress(OSError):
            print(f"chatbot: {_copy_stopped(signum, stage)}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(128 + signum)

    def stop(signum: int) -> None:
        if stage.rows.committing or copying.done():
            return
        if stopped:  # asked twice: at once
            force(stopped[0])
        stopped.append(signum)
        copying.cancel()
        timers.append(loop.call_later(STOP_GRACE, force, signum))

    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop, sig)
    try:
        return await copying
    except (asyncio.CancelledError, StartError):
        if not stopped:
            raise
        # A failure as it ended (a statement the server ended) is the stop's doing.
        raise CopyStopped(stopped[0], _copy_stopped(stopped[0], stage)) from None
    finally:
        for timer in timers:
            timer.cancel()
        for sig in _STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _copy_database(settings: Settings, to: str, stage: _CopyStage) -> list[Copied]:
    target = replace(settings, database_url=to)
    url = make_url(to)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise StartError("--to names no database file: give its path, sqlite+aiosqlite:///…")
    if _same_database(settings.db_url, target.db_url):
        raise StartError(_OWN_DATABASE)
    # Read as the export reads it: a backup in a folder this user may not write is
    # copied from where it is, and left as it was.
    # A lock another session holds is given up after LOCK_WAIT_SECONDS in each step,
    # reading the schema's revisions and upgrading --to's too (a forgotten session's:
    # every process of the bot is stopped by then), and said with whose it is.
    passwords = [p for p in (make_url(settings.db_url).password, url.password) if p]
    source: AsyncEngine | None = None
    copy = create_engine(target.db_url, poolclass=NullPool)
    try:
        source_url = await as_it_is(settings, LOCK_WAIT_SECONDS)
        source = create_engine(source_url, poolclass=NullPool)
        await _not_served(source, "the bot's database")
        await _empty_target(target, copy, source)
        stage.schema = True
        await _upgraded(target, "--to", LOCK_WAIT_SECONDS)
        return await copy_rows(source, copy, stage.rows)
    except TargetNotEmpty as err:
        raise StartError(
            f"the --to database already holds bot data (in {', '.join(err.tables)}): copy "
            "into an empty database. Nothing was changed."
        ) from None
    except CopyMismatch as err:
        raise StartError(f"the copy did not add up ({err}). Nothing was copied.") from None
    except CopyLocked as err:
        # The bot's database, where the lock may be, is not open yet when its revision
        # was being read: looked into here, as the --to database is.
        looked = source or create_engine(settings.db_url, poolclass=NullPool)
        try:
            raise StartError(await _locked(err.table, looked, copy)) from None
        finally:
            if looked is not source:
                await looked.dispose()
    except (CopyFailed, OSError, DBAPIError) as err:
        log.debug("the copy failed", exc_info=True)  # for LOG_LEVEL=DEBUG
        failed = err.cause if isinstance(err, CopyFailed) else err
        cause = failed.orig if isinstance(failed, DBAPIError) else failed
        said = _driver_words(cause, passwords)
        if isinstance(err, CopyFailed):  # after the upgrade: the tables are there, empty
            raise StartError(
                f"copying the table {err.table} failed ({said}). Nothing was copied: the --to "
                "database holds empty tables only, so the same command can run again once "
                "that is fixed."
            ) from None
        raise StartError(f"the copy failed ({said}). Nothing was copied.") from None
    finally:
        if source is not None:
            await source.dispose()
        await copy.dispose()


_OWN_DATABASE = (
    "--to names the bot's own database: name another one to copy it to. Nothing was changed."
)


async def _locked(table: str | None, source: AsyncEngine, copy: AsyncEngine) -> str:
    """What a copy that waited LOCK_WAIT_SECONDS for another session's lock says: whose."""
    what = f"the table {table}" if table else "a table"
    found = []
    for engine, which in ((copy, "the --to database"), (source, "the bot's database")):
        try:
            holders = await lock_holders(engine, table)
        except (OSError, DBAPIError):
            continue
        if holders:
            found.append(f"In {which}: {', '.join(holders)}.")
    who = " ".join(found) if found else "It has let go of it since."
    return (
        f"the copy waited {LOCK_WAIT_SECONDS} s for a lock another session holds on {what}, "
        f"and gave up. {who} Nothing was copied. End that session (or its transaction), "
        "then run the same command again."
    )


async def _empty_target(target: Settings, copy: AsyncEngine, source: AsyncEngine) -> None:
    """Refuse a --to database that is the bot's own, is in use or holds a bot's data or
    another program's tables before anything is written to it: an upgrade of its schema
    cannot be undone, and would break the bot it belongs to."""
    try:
        revision = await current(target.db_url, lock_wait=LOCK_WAIT_SECONDS)
    except (OSError, DBAPIError) as err:
        _raise_if_locked(err)
        raise StartError(_database_failure(target, err, named="--to")) from None
    if await same_database(source, copy):
        raise StartError(_OWN_DATABASE)
    await _not_served(copy, "the --to database")
    # One at the newest schema is left as it is by the upgrade, and refused by the copy
    # itself if it holds rows.
    if revision is not None and revision != newest_file_revision():
        raise StartError(
            f"the --to database already has a bot's tables (schema revision "
            f"{shorten(revision, 40)}): copy into an empty database. Nothing was changed."
        )
    foreign = await foreign_tables(copy, migrated=revision is not None)
    if foreign:
        raise StartError(
            f"the --to database is not empty: it holds {shorten(', '.join(foreign), 80)}, "
            "which the bot did not make. Copy into an empty database (createdb chatbot). "
            "Nothing was changed."
        )


async def _not_served(engine: AsyncEngine, which: str) -> None:
    if await served(engine):
        raise StartError(
            f"a `chatbot run` process is using {which}: stop it first (and any `chatbot "
            "console`), so that nothing said meanwhile is left behind. Nothing was changed."
        )
