"""A message's attachments → images for the model and text files inside the message.

Bytes come only from the platform (each attachment's own `fetch`): the bot never
downloads a URL someone typed. Image and PDF work runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from bot.characters import SETTINGS_EXTENSIONS, SETTINGS_TYPES, SettingsKind, settings_kind
from bot.media import (
    Measure,
    MediaError,
    binary_refusal,
    classify,
    display_name,
    extension,
    file_block,
    named_image,
    prepare_image,
    unread_refusal,
)
from bot.types import Attachment, Image, failure
from bot.types.files import Downloads, FetchFailed, too_slow
from bot.types.text import shorten

log = logging.getLogger("bot.conversation")
T = TypeVar("T")


class Refused(Exception):
    """Attachments the turn cannot take; the message says which and what to do."""


class SettingsFiles(Exception):
    """A message of SillyTavern files alone, with no question: each a character card or a
    preset (`kinds`, in the order sent), for an import rather than the model."""

    def __init__(self, kinds: tuple[SettingsKind, ...]) -> None:
        super().__init__(", ".join(kinds))
        self.kinds = kinds


@dataclass(frozen=True, slots=True)
class Prepared:
    images: tuple[Image, ...] = ()
    text: str = ""  # fenced blocks, one per text file, to follow the message's own text
    cut: tuple[str, ...] = ()  # the files only part of which fit (names as shown)
    # Where each of those was cut, the text on both sides (Block.edge): never sent, only
    # checked for a key or password cut in two.
    edges: tuple[str, ...] = ()
    # Character cards and presets sent with other files and no question: left out of
    # the question (spot_settings), and said so.
    spotted: tuple[SettingsKind, ...] = ()

    @property
    def cut_note(self) -> str:
        """What to tell the person who attached files too long to send whole ("" if none)."""
        if not self.cut:
            return ""
        if len(self.cut) == 1:
            return f"({self.cut[0]} is too long to send whole: the model read only its start.)"
        names = ", ".join(self.cut[:-1]) + f" and {self.cut[-1]}"
        return f"({names} are too long to send whole: the model read only the start of each.)"


async def prepare(
    attachments: Sequence[Attachment],
    *,
    max_images: int,
    max_bytes: int,
    text_budget: int,
    measure: Measure = len,
    replied: int = 0,
    downloads: Downloads | None = None,
) -> Prepared:
    """Fetch, check and prepare every attachment; Refused says what was wrong.

    `text_budget` is what text files may take in all (the context's room), as `measure`
    counts it: tokens for a turn, characters unless said. The last `replied` attachments
    are the message's the question replies to: a refusal says so. `downloads`: the
    message's download time, when some of it went already (spot_settings).
    """
    if not attachments:
        return Prepared()
    too_many = count_refusal(attachments, max_images, max_bytes, replied)
    if too_many is not None:
        raise Refused(too_many)
    own = len(attachments) - replied
    images: list[Image] = []
    theirs = 0  # of the images, those of the message replied to
    files: list[tuple[str, bytes]] = []
    replied_files = 0  # of the text files, those of the message replied to (the last)
    fetched = 0
    downloads = downloads or Downloads()
    try:
        for i, attachment in enumerate(attachments):
            whose = _in_replied if i >= own else str
            shown = display_name(attachment.filename)
            try:
                data = await _download(downloads, attachment, shown, max_bytes)
            except Refused as err:
                raise Refused(whose(str(err))) from None
            fetched += len(data)  # as declared sizes are checked: a platform may declare none
            if len(attachments) > 1 and fetched > MESSAGE_FILES_SHARE * max_bytes:
                raise Refused(_too_large_together(fetched, max_bytes, own, replied))
            try:
                kind = classify(data, attachment.filename, attachment.content_type)
                if kind == "image":
                    prepared = await _in_media_thread(prepare_image, data, attachment.filename)
                    images.append(prepared.to_image())
                    theirs += i >= own
                elif kind in ("text", "pdf"):
                    files.append((attachment.filename, data))  # read below, with its share
                    replied_files += i >= own
                else:
                    raise binary_refusal(attachment.filename, data)
            except MediaError as err:
                raise Refused(whose(str(err))) from None
        if len(images) > max_images:
            raise Refused(_too_many(len(images) - theirs, theirs, max_images))
        # A PDF's pages are read only until its share is full: the rest would be cut anyway.
        share = text_budget // max(1, len(files))
        blocks = []
        for i, (name, data) in enumerate(files):
            try:
                blocks.append(await _in_media_thread(file_block, data, name, share, measure))
            except MediaError as err:
                theirs_file = i >= len(files) - replied_files
                raise Refused(_in_replied(str(err)) if theirs_file else str(err)) from None
    except MediaError as err:
        raise Refused(str(err)) from None
    cut = tuple(
        display_name(name) for (name, _), block in zip(files, blocks, strict=True) if block.cut
    )
    edges = tuple(block.edge for block in blocks if block.edge)
    return Prepared(tuple(images), "".join(block.text for block in blocks), cut, edges)


async def spot_settings(
    attachments: Sequence[Attachment], max_images: int, max_bytes: int, downloads: Downloads
) -> tuple[tuple[Attachment, ...], tuple[SettingsKind, ...]]:
    """A message's own files, sent with no question: SettingsFiles when each is a
    character card or a preset (settings_kind); else the other files, to prepare (those
    downloaded to tell handed on with their bytes, not fetched twice), and what the
    cards and presets among them were, left out: they are for an import, not the model.
    A file that cannot be one by its name or declared type is not downloaded here, nor
    any of a message `prepare` refuses by what is declared or by a download: it says
    why (all its files handed on)."""
    if not attachments or count_refusal(attachments, max_images, max_bytes) is not None:
        return tuple(attachments), ()
    kinds: list[SettingsKind] = []
    rest: list[Attachment] = []
    seen: list[Attachment] = []  # all so far, as `prepare` takes them if it is to refuse
    held = 0
    for i, attachment in enumerate(attachments):
        if not (
            extension(attachment.filename) in SETTINGS_EXTENSIONS
            or attachment.content_type in SETTINGS_TYPES
        ):
            rest.append(attachment)
            seen.append(attachment)
            continue
        try:
            shown = display_name(attachment.filename)
            data = await _download(downloads, attachment, shown, max_bytes)
        except Refused:  # said by `prepare`, which fetches it again
            return (*seen, *attachments[i:]), ()
        held += len(data)
        if held > MESSAGE_FILES_SHARE * max_bytes:  # `prepare` refuses them together
            return (*seen, *attachments[i:]), ()
        seen.append(_holding(attachment, data))
        kind = await _in_media_thread(settings_kind, data)
        if kind is None:
            rest.append(seen[-1])
        else:
            kinds.append(kind)
    if not rest:
        raise SettingsFiles(tuple(kinds))
    return tuple(rest), tuple(kinds)


def _holding(attachment: Attachment, data: bytes) -> Attachment:
    """`attachment` whose fetch gives the bytes downloaded already."""

    async def fetch(limit: int) -> bytes:
        return data[: limit + 1]

    return replace(attachment, fetch=fetch)


# Images decoded and PDFs read at once, in all the bot's turns: each may take a few hundred
# MB (a PDF, a process of its own) and seconds of CPU. The rest wait in this pool's queue,
# not in threads of the loop's own pool, which DNS lookups and the store's files need.
_MEDIA_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="media")


async def _in_media_thread(work: Callable[..., T], *args: Any) -> T:
    """`work` in a media thread, in this task's context as asyncio.to_thread runs it (the
    console's names are shown unescaped: bot.types.text.MARKDOWN_READ)."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_MEDIA_THREADS, functools.partial(context.run, work, *args))


async def _download(
    downloads: Downloads, attachment: Attachment, shown: str, max_bytes: int
) -> bytes:
    try:
        async with downloads.one():
            return await _fetch(attachment, shown, max_bytes)
    except TimeoutError:  # the platform's own timeout, or this message's
        log.info("downloading %s took too long", shown)
        raise Refused(too_slow(shown, "sent nothing")) from None


async def _fetch(attachment: Attachment, shown: str, max_bytes: int) -> bytes:
    limit = f"{max_bytes / 2**20:g} MB"
    if attachment.size > max_bytes:
        log.info("%s was not downloaded: %d bytes, over %s", shown, attachment.size, limit)
        raise Refused(f"{shown} is {attachment.size / 2**20:.1f} MB; I take files up to {limit}.")
    if attachment.fetch is None:
        raise Refused(f"I could not get {shown} from the platform; attach it again.")
    try:
        data = await attachment.fetch(max_bytes)
    except TimeoutError:
        raise
    except FetchFailed as err:  # a reason the front-end can give
        log.info("could not download %s: %s", shown, err)
        raise Refused(f"I could not download {shown}; attach it again.") from None
    except Exception as err:  # the platform's client raises its own types
        log.info("fetching %s failed: %s", shown, failure(err))
        raise Refused(f"I could not download {shown}; attach it again.") from None
    if attachment.size and len(data) > attachment.size:  # its sender's app said less
        log.info("%s was not read: larger than its message says (%d bytes)", shown, attachment.size)
        raise Refused(
            f"{shown} is larger than its message says ({attachment.size:,} bytes), so I did "
            "not read it. Attach it again; if this keeps happening, your app gives files "
            "the wrong size."
        )
    if len(data) > max_bytes:  # perhaps cut off: its whole size may not be known
        log.info("%s was not read: larger than %s, the most taken", shown, limit)
        raise Refused(f"{shown} is larger than {limit}, the most I take.")
    return data


# Files one message may carry (Discord's own most), and their size together in files of
# the most a file may be: each is read and held while the turn is prepared.
MAX_FILES = 10
MESSAGE_FILES_SHARE = 2
# Messages whose files are downloaded and prepared at once, in all conversations (the
# rest wait their turn): each may hold MESSAGE_FILES_SHARE files of the most a file may
# be, and more as their text is decoded. Ten channels at once had held 400 MB and more.
MESSAGES_READ_AT_ONCE = 4


class ReadingSlots:
    """MESSAGES_READ_AT_ONCE messages' files read at once, at most one of each sender's.

    One sender trickling files in four rooms held every slot for the 2 minutes a message's
    downloads may take, and everyone else's files waited; now their other messages wait
    for their own, and the other slots stay for the others."""

    def __init__(self, slots: int = MESSAGES_READ_AT_ONCE) -> None:
        self._slots = slots
        self._reading: set[Hashable] = set()  # the senders whose files are being read
        self._waiting: list[asyncio.Future[None]] = []

    @contextlib.asynccontextmanager
    async def reading(self, sender: Hashable) -> AsyncIterator[None]:
        """Hold a slot for `sender`'s message while its files are read."""
        while len(self._reading) >= self._slots or sender in self._reading:
            woken = asyncio.get_running_loop().create_future()
            self._waiting.append(woken)
            try:
                await woken
            finally:
                self._waiting.remove(woken)
        self._reading.add(sender)
        try:
            yield
        finally:
            self._reading.discard(sender)
            # Every waiter looks again, in the order they came (one whose sender is still
            # reading waits on; one cancelled meanwhile takes no one's turn).
            for woken in self._waiting:
                if not woken.done():
                    woken.set_result(None)


def count_refusal(
    attachments: Sequence[Attachment],
    max_images: int,
    max_bytes: int | None = None,
    replied: int = 0,
) -> str | None:
    """Why one message cannot carry these files together (too many images, too many
    files, or too large together, by the sizes the platform declares), or one of them
    at all (audio or video, by its declared type), or None. The last `replied` are the
    files of the message it replies to, sent with it: the refusal says whose they are."""
    own = len(attachments) - replied
    for i, attachment in enumerate(attachments):
        unread = unread_refusal(attachment.filename, attachment.content_type)
        if unread is not None:
            return _in_replied(str(unread)) if i >= own else str(unread)
    declared = [named_image(a.filename, a.content_type) for a in attachments]
    if sum(declared) > max_images:
        return _too_many(sum(declared[:own]), sum(declared[own:]), max_images)
    if len(attachments) > MAX_FILES:
        return _counted(own, replied, "files", MAX_FILES)
    together = sum(max(0, a.size) for a in attachments)
    if (
        max_bytes is not None
        and len(attachments) > 1
        and together > MESSAGE_FILES_SHARE * max_bytes
    ):
        return _too_large_together(together, max_bytes, own, replied)
    return None


def _in_replied(refusal: str) -> str:
    """A refusal of a file of the message a question replies to, which its asker did not
    attach: said to be that message's."""
    return f"In the message you replied to: {refusal}"


def _too_large_together(size: int, max_bytes: int, own: int = 1, replied: int = 0) -> str:
    """Files too large for one message: the asker's own, those of the message they
    replied to (sent with it, which they cannot send apart), or both."""
    most = round(MESSAGE_FILES_SHARE * max_bytes / 2**20, 1)
    limit = f"come to {size / 2**20:.1f} MB together; I take up to {most:g} MB in one message."
    if not replied:
        return f"Your files {limit} Send them in separate messages."
    if not own:
        return (
            f"The files of the message you replied to {limit} Ask without replying to it, "
            "and attach the ones you mean."
        )
    return (
        f"Your files and those of the message you replied to {limit} Send fewer, or ask "
        "without replying to it."
    )


def _too_many(own: int, replied: int, most: int) -> str:
    if most <= 0:
        if not own:
            return (
                "Images are not taken here, and the message you replied to has some; ask "
                "without replying to it."
            )
        return "Images are not taken here; send your message without them."
    return _counted(own, replied, "images", most)


def _counted(own: int, replied: int, what: str, most: int) -> str:
    """Too many images or files for one message: the asker's own, those of the message
    they replied to (sent with it), or both."""
    limit = f"I take at most {most} per message"
    if not replied:
        return f"You attached {own} {what}; {limit}. Send fewer and ask again."
    if not own:
        return (
            f"The message you replied to has {replied} {what}; {limit}. Ask without replying "
            f"to it, and attach the ones you mean."
        )
    one = what.removesuffix("s")
    return (
        f"You attached {own} {one if own == 1 else what} and the message you replied to "
        f"has {replied}: {own + replied} together; {limit}. Send fewer, or ask without "
        "replying to it."
    )


def image_placeholder(name: str) -> str:
    """How an image not sent (older turn, a model that cannot see) appears in the text."""
    return f"[image: {shorten(name, 80)}]"
