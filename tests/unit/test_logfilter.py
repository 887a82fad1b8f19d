"""No key reaches a log line: known secrets and key-shaped strings are redacted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.logfilter import REDACTED, RedactingFilter, configure_logging, redact
from bot.types import SecretValue


def test_known_secret_is_redacted_anywhere() -> None:
    SecretValue("tabby-0f9e8d7c6b5a")
    assert redact("auth with tabby-0f9e8d7c6b5a failed") == f"auth with {REDACTED} failed"


@pytest.mark.parametrize(
    "line",
    [
        "key sk-proj-abcdefghijklmnop1234 leaked",
        "key sk-ant-api03-abcdefgh leaked",
        "Authorization: Bearer abcdef123456789",
        "headers {'x-api-key': 'zyxwvut98765'}",
    ],
)
def test_key_shapes_are_redacted(line: str) -> None:
    out = redact(line)
    assert REDACTED in out
    for secret in ("abcdefghijklmnop1234", "api03-abcdefgh", "abcdef123456789", "zyxwvut98765"):
        assert secret not in out


def test_filter_cleans_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    secret = SecretValue("very-secret-value-42")
    logger = logging.getLogger("test.redact")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise RuntimeError(f"boom {secret.reveal()}")
    except RuntimeError:
        logger.exception("failed with %s", secret.reveal())
    text = caplog.text
    assert "very-secret-value-42" not in text
    assert REDACTED in text


def test_a_malformed_log_call_is_logged_not_raised_into_its_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fuzz probe: a `%s` without its value (a library's slip) made the filter raise
    TypeError into the code that logged; logging never stops the bot."""
    caplog.handler.addFilter(RedactingFilter())
    logging.getLogger("test.redact").warning("sent %s to %s", "sk-proj-abcdefghijklmnop1234")
    assert "sent %s to %s" in caplog.text and "abcdefghijklmnop1234" not in caplog.text


def test_a_log_call_whose_values_cannot_be_shown_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review: the fallback for a malformed call showed the values' repr, which can fail
    too (an object whose str and repr raise): raised into the code that logged."""

    class Unshowable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    caplog.handler.addFilter(RedactingFilter())
    logging.getLogger("test.redact").warning("got %s", Unshowable())
    assert "got %s (its values could not be shown)" in caplog.text


def test_secret_value_never_shows_itself() -> None:
    s = SecretValue("sk-shown-nowhere-123")
    assert "sk-shown" not in repr(s) + str(s) + f"{s}" + repr([s]) + repr({"k": s})
    assert s.last4 == "-123"
    assert SecretValue("Pw9!Short").last4 == ""  # 4 of 9 characters would be too many
    assert SecretValue("fifteen-chars-1").last4 == ""
    assert SecretValue("sixteen-chars-12").last4 == "s-12"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


def test_matrix_nio_and_pypdf_keep_quiet_unless_debug_asks_for_all(tmp_path: Path) -> None:
    """nio logs every synced event at INFO: most of a Matrix bot's log, saying nothing;
    pypdf warns of each flaw of a member's PDF that it reads past."""
    root = logging.getLogger()
    quiet = ("nio", "pypdf")
    saved = (root.handlers[:], root.level, [logging.getLogger(n).level for n in quiet])
    try:
        configure_logging("INFO", log_file=tmp_path / "bot.log", to_stderr=False)
        assert not logging.getLogger("nio.rooms").isEnabledFor(logging.INFO)
        assert logging.getLogger("nio.rooms").isEnabledFor(logging.WARNING)
        assert not logging.getLogger("pypdf._reader").isEnabledFor(logging.WARNING)
        assert logging.getLogger("bot.matrix").isEnabledFor(logging.INFO)
        for name in quiet:
            logging.getLogger(name).setLevel(logging.NOTSET)
        configure_logging("DEBUG", log_file=tmp_path / "bot.log", to_stderr=False)
        assert logging.getLogger("nio.rooms").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("pypdf._reader").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in zip(quiet, saved[2], strict=True):
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def debug_log(tmp_path: Path, library: str) -> Iterator[Callable[[], str]]:
    """The bot's logging set up at DEBUG into a file; yields what reads it back (after a
    line of the bot's own, so an empty file cannot pass). Restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger(library).level)
    log_file = tmp_path / "bot.log"

    def written() -> str:
        logging.getLogger("bot.test").debug("the log is written")
        for handler in root.handlers:
            handler.flush()
        text = log_file.read_text()
        assert "the log is written" in text
        return text

    try:
        configure_logging("DEBUG", log_file=log_file, to_stderr=False)
        yield written
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger(library).setLevel(saved[2])


async def test_debug_never_logs_sqlite_statements_with_their_parameters(tmp_path: Path) -> None:
    """aiosqlite's DEBUG logged every statement with its parameters: every chat message
    went to the log at LOG_LEVEL=DEBUG (the README names what is never logged)."""
    from sqlalchemy import text

    from bot.store.db import create_engine

    with debug_log(tmp_path, "aiosqlite") as written:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
        async with engine.connect() as conn:
            await conn.execute(text("SELECT :said"), {"said": "my-private-chat-line"})
        await engine.dispose()
        assert "my-private-chat-line" not in written()


def test_debug_never_logs_the_e2ee_stores_statements(tmp_path: Path) -> None:
    """matrix-nio's E2EE store runs on peewee, whose DEBUG logs each statement with its
    parameters: the pickled Olm account and Megolm room keys."""
    import peewee

    with debug_log(tmp_path, "peewee") as written:
        db = peewee.SqliteDatabase(str(tmp_path / "crypto.db"))
        db.execute_sql("SELECT ?", ("pickled-megolm-session",))
        db.close()
        assert "pickled-megolm-session" not in written()


def test_a_log_file_moved_away_by_logrotate_is_written_anew(tmp_path: Path) -> None:
    """logrotate moves the log file and expects the bot to write a new one: the bot went
    on writing into the moved file (chatbot.log.1), and chatbot.log stayed missing."""
    log_file = tmp_path / "bot.log"
    with debug_log(tmp_path, "bot") as written:
        logging.getLogger("bot.test").info("before the move")
        log_file.rename(tmp_path / "bot.log.1")  # what logrotate does by default
        logging.getLogger("bot.test").info("after the move")
        text = written()
        assert "after the move" in text and "before the move" not in text
        assert "after the move" not in (tmp_path / "bot.log.1").read_text()
        log_file.unlink()  # deleted outright: a new file as well
        assert "the log is written" in written()
