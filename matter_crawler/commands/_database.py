"""What the database commands share: opening the crawl's database, and failing clearly.

The commands read the database a crawl wrote (``DATABASE_URL``); they never
create one. A missing SQLite file, a database without our tables, an
unreachable server or a missing driver each end the command with one line on
stderr (``scrapy export: error: ...``) and exit status 1, never a traceback
and never an empty database file left behind. Like a crawl, they bring an older
database's schema to the code's revision first, saying so on stderr, and refuse
one written by a newer release without writing to it
(:mod:`matter_crawler.storage.schema`).

:class:`DatabaseCommand` is a mixin, not a :class:`~scrapy.commands.ScrapyCommand`
subclass, so that Scrapy does not list this module as a command of its own.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from time import monotonic
from typing import Any
from urllib.parse import quote

from scrapy.settings import BaseSettings
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..redaction import mask_credentials
from ..storage import create_database_engine, resolve_database_url
from ..storage.schema import SchemaError, SchemaState, display_url, prepare_schema, read_state

FIRST_CRAWL_HINT = (
    "run `scrapy crawl matter_products` first, or set DATABASE_URL (or MATTER_DATABASE_URL)"
)
#: Longest text or blob a read-only query may build (SQLite's own limit is 1 GB): no
#: stored value comes near it, and zeroblob(1e9) in a --where cannot take the memory.
READ_ONLY_MAX_VALUE_BYTES = 64 * 1024 * 1024
#: SQLite virtual-machine steps between two looks at the query clock.
PROGRESS_STEPS = 10_000
#: Backends the read-only, time-limited opening knows.
GUARDED_BACKENDS = ("sqlite", "postgresql")


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def database_url(settings: BaseSettings) -> str:
    """``DATABASE_URL``, else ``$MATTER_DATABASE_URL``, else the default SQLite file."""
    return resolve_database_url(settings)


def shown_url(url: str) -> str:
    """The URL as we may print it: the password hidden, a SQLite URL as its file path."""
    return display_url(url)


def database_file(url: str) -> Path | None:
    """The file of a SQLite database URL (None for other databases and in-memory SQLite)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


class QueryClock:
    """The time a read-only query has to produce its next rows (``limit`` 0: no limit).

    Restarted before each statement and, by the exporter, after each batch of
    rows; SQLite's progress handler asks :meth:`expired` every few thousand
    steps and interrupts the query once it says yes.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.deadline: float | None = None
        self.fired = False

    def restart(self) -> None:
        self.deadline = monotonic() + self.limit if self.limit > 0 else None

    def expired(self) -> int:
        if self.deadline is not None and monotonic() > self.deadline:
            self.fired = True
            return 1
        return 0


def read_only_engine(url: str, clock: QueryClock, busy_timeout: float | None = None) -> Engine:
    """An engine that cannot write and whose queries stop after ``clock.limit`` seconds.

    SQLite: opened with ``mode=ro``, ``PRAGMA query_only``, a cap on the size of
    any value a query builds, and a progress handler that interrupts a query
    past its time. PostgreSQL: read-only transactions and ``statement_timeout``
    (each fetch of a server-side cursor is a statement). Other databases are
    opened as usual; :func:`guarded` says so.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        milliseconds = round(clock.limit * 1000)
        options = f"-c default_transaction_read_only=on -c statement_timeout={milliseconds}"
        return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    if backend != "sqlite" or database_file(url) is None:
        return create_database_engine(url, busy_timeout=busy_timeout)
    path = database_file(url)
    assert path is not None
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(
            uri,
            uri=True,
            timeout=30 if busy_timeout is None else busy_timeout,
            check_same_thread=False,
        ),
    )

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, READ_ONLY_MAX_VALUE_BYTES)
        dbapi_connection.set_progress_handler(clock.expired, PROGRESS_STEPS)

    @event.listens_for(engine, "before_cursor_execute")
    def _start_clock(*_: Any) -> None:
        clock.restart()

    return engine


def guarded(url: str) -> bool:
    """Whether :func:`read_only_engine` makes this database read-only and time-limited."""
    try:
        return make_url(url).get_backend_name() in GUARDED_BACKENDS and (
            make_url(url).get_backend_name() != "sqlite" or database_file(url) is not None
        )
    except ArgumentError:
        return False


def query_timed_out(error: BaseException, clock: QueryClock) -> bool:
    """Whether a database error is the query clock's doing (SQLite) or statement_timeout's."""
    message = str(getattr(error, "orig", error)).lower()
    return (clock.fired and "interrupted" in message) or "statement timeout" in message


def open_read_only_database(
    url: str,
    clock: QueryClock,
    tables: Iterable[str] = ("products",),
    report: Callable[[str], None] | None = None,
) -> Engine:
    """:func:`open_database`, read-only and time-limited (:func:`read_only_engine`).

    An older schema is upgraded first, through an ordinary engine (as every command
    does); only then is the database opened read-only.
    """
    open_database(url, tables, report=report).dispose()
    return open_database(
        url,
        tables,
        upgrade=False,
        engine_factory=lambda name, **options: read_only_engine(name, clock, **options),
    )


def open_database(
    url: str,
    tables: Iterable[str] = ("products",),
    *,
    upgrade: bool = True,
    report: Callable[[str], None] | None = None,
    engine_factory: Callable[..., Engine] = create_database_engine,
    busy_timeout: float | None = None,
) -> Engine:
    """An engine on an existing crawl database holding ``tables``; CommandError otherwise.

    A SQLite file is checked before connecting, because connecting to a
    missing file creates it. With ``upgrade``, an older schema is upgraded to the
    code's revision and ``report`` told what was done.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        shown = mask_credentials(url)
        raise CommandError(f"DATABASE_URL {shown!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise CommandError(
                f"DATABASE_URL {mask_credentials(url)!r} is an in-memory SQLite database: "
                "it holds no crawl"
            )
        path = Path(parsed.database).expanduser()
        if not path.is_file():
            raise CommandError(f"no database at {parsed.database}: {FIRST_CRAWL_HINT}")
    try:
        engine = engine_factory(url, busy_timeout=busy_timeout)
    except (NoSuchModuleError, ImportError) as error:
        raise CommandError(f"cannot open {shown_url(url)}: {error}") from None
    try:
        state = schema_state(engine)
        if state.status in ("newer", "foreign"):
            raise CommandError(state.refusal(shown_url(url)))
        missing = [name for name in tables if name not in state.tables]
        if missing:
            raise CommandError(
                f"{shown_url(url)} is not a matter-crawler database (no {', '.join(missing)} "
                f"table): {FIRST_CRAWL_HINT}"
            )
        if upgrade and state.status != "empty":
            change = prepare_schema(engine, create=False)
            if change is not None and report is not None:
                report(change.describe())
    except SchemaError as error:  # another process changed it since it was read
        engine.dispose()
        raise CommandError(str(error)) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def schema_state(engine: Engine) -> SchemaState:
    """Where the database's schema stands; CommandError if it cannot be read."""
    try:
        with engine.connect() as conn:
            return read_state(conn)
    except SQLAlchemyError as error:
        raise CommandError(
            f"cannot read {shown_url(engine.url.render_as_string(False))}: {first_line(error)}"
        ) from None


def first_line(error: BaseException) -> str:
    """SQLAlchemy's messages run to several lines (statement, background link)."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


class DatabaseCommand:
    """Mixin for commands that read the crawl database.

    Subclasses implement :meth:`execute` instead of ``run``; a
    :class:`CommandError` (or a database error) raised from it becomes one line
    on stderr and exit status 1.
    """

    requires_project = True
    #: Reading needs no Scrapy engine: no reactor, no crawl log lines on stderr.
    requires_crawler_process = False

    settings: BaseSettings | None
    exitcode: int
    command_name = ""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)  # type: ignore[misc]
        # argparse's own errors then read "scrapy export: error: ...", like ours
        parser.prog = f"scrapy {self.command_name}"

    def open_database(
        self, tables: Iterable[str] = ("products",), *, upgrade: bool = True
    ) -> Engine:
        assert self.settings is not None
        timeout = self.settings.get("DATABASE_BUSY_TIMEOUT")
        busy_timeout = float(timeout) if timeout is not None else None
        return open_database(
            database_url(self.settings),
            tables,
            upgrade=upgrade,
            report=self.note,
            busy_timeout=busy_timeout,
        )

    def note(self, message: str) -> None:
        """A line on stderr that is not an error (stdout may be the command's output)."""
        print(f"scrapy {self.command_name}: {message}", file=sys.stderr)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        try:
            self.execute(args, opts)
        except CommandError as error:
            self.fail(str(error))
        except SQLAlchemyError as error:
            self.fail(f"database error: {first_line(error)}")
        except BrokenPipeError:
            # `scrapy runs | head`: the reader left. Point stdout at /dev/null so
            # the interpreter's final flush does not fail a second time.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError as error:  # a file we write: permissions, a full disk
            self.fail(str(error))

    def fail(self, message: str) -> None:
        print(f"scrapy {self.command_name}: error: {message}", file=sys.stderr)
        self.exitcode = 1

    def execute(self, args: list[str], opts: argparse.Namespace) -> Any:
        raise NotImplementedError
