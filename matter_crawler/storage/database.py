"""One database per crawl: the SQLAlchemy engine and the thread that writes to it.

Every component of a crawl (pipelines, run record, dead letters, the spider's
planner) reaches the same :class:`Database` through
:meth:`Database.from_crawler`. All statements run on one worker thread so the
reactor never waits on disk and SQLite sees a single writer; the crawl awaits
the results (``await database.run(fn, ...)``).

Opening a database brings its schema to the code's revision first
(:func:`~matter_crawler.storage.schema.prepare_schema`): an empty one is created,
an older one upgraded, one written by a newer release refused untouched.

SQLite waits up to ``DATABASE_BUSY_TIMEOUT`` seconds for a lock another
connection holds before it refuses a statement ("database is locked"); the
batch store retries what is refused (:mod:`matter_crawler.pipelines.store`).
With ``DATABASE_LOCK=wait`` the crawl's statements wait until the crawl holds
the database's writer lock (:meth:`Database.guard`,
:mod:`matter_crawler.extensions.database_lock`); statements registered with
:meth:`Database.at_close` run last, when the engine stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from scrapy import signals
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ..redaction import mask_credentials
from .engine import create_database_engine
from .schema import SchemaChange, SchemaError, prepare_schema

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///data/matter.sqlite3"
#: Where a database URL with credentials comes from, when the DATABASE_URL setting is empty:
#: the environment, not the command line (scrapyd's job arguments and `ps` show that).
DATABASE_URL_VARIABLE = "MATTER_DATABASE_URL"

_per_crawler: weakref.WeakKeyDictionary[Crawler, Database] = weakref.WeakKeyDictionary()


def resolve_database_url(settings: Any, environ: Mapping[str, str] | None = None) -> str:
    """The database to use: the ``DATABASE_URL`` setting, else ``$MATTER_DATABASE_URL``,
    else ``sqlite:///data/matter.sqlite3``."""
    environ = os.environ if environ is None else environ
    return (
        settings.get("DATABASE_URL")
        or environ.get(DATABASE_URL_VARIABLE, "").strip()
        or DEFAULT_DATABASE_URL
    )


def may_pass(error: BaseException) -> bool:
    """Whether a refusal may pass if the write is tried again (a lock, a full disk...)."""
    return isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def database_reason(error: BaseException) -> str:
    """The database's own words (SQLAlchemy adds the statement and its parameters)."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class Database:
    """The engine plus a single writer thread, on a database at the code's schema revision.

    Raises :class:`~matter_crawler.storage.schema.SchemaError` for a database it must
    not write to (written by a newer release), having written nothing.
    """

    def __init__(self, url: str, *, busy_timeout: float | None = None) -> None:
        self.url = url
        self.engine = create_database_engine(url, busy_timeout=busy_timeout)
        try:
            #: what opening did to the schema (None: it was at the head revision already)
            self.schema_change: SchemaChange | None = prepare_schema(self.engine)
        except SchemaError as error:
            self.engine.dispose()
            logger.error("%s", error)  # one clear line before the crawl's traceback
            raise
        except BaseException:
            self.engine.dispose()
            raise
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matter-db")
        self._guard: Callable[[], Awaitable[None]] | None = None
        self._at_close: list[Callable[[Engine], Any]] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Database:
        """The crawl's shared database (created on first use, closed when the engine stops)."""
        database = _per_crawler.get(crawler)
        if database is None:
            settings = crawler.settings
            # unset (a bare test crawler): the driver's own default
            timeout = settings.get("DATABASE_BUSY_TIMEOUT")
            database = cls(
                resolve_database_url(settings),
                busy_timeout=float(timeout) if timeout is not None else None,
            )
            _per_crawler[crawler] = database
            crawler.signals.connect(database.close, signal=signals.engine_stopped)
            # (logged before the add-ons run, so before the log filter of redaction.py)
            logger.info("Database: %s", database.shown_url)
        return database

    @property
    def shown_url(self) -> str:
        """The URL as it may be logged (credentials hidden)."""
        return mask_credentials(self.url)

    def guard(self, ready: Callable[[], Awaitable[None]]) -> None:
        """Make :meth:`run` wait for ``ready()`` first (which may raise to refuse)."""
        self._guard = ready

    def at_close(self, function: Callable[[Engine], Any]) -> None:
        """Run ``function(engine)`` on the writer thread last, when the database closes."""
        self._at_close.append(function)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(engine, *args)`` on the writer thread and wait for its result."""
        if self._guard is not None:
            await self._guard()
        return await self.run_unguarded(function, *args)

    async def run_unguarded(self, function: Callable[..., T], *args: Any) -> T:
        """:meth:`run` without waiting for the guard: for the writer lock's own statements."""
        future = self._executor.submit(function, self.engine, *args)
        return await asyncio.wrap_future(future)

    def run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """Run on the writer thread and block: only for start-up and shutdown paths."""
        return self._executor.submit(function, self.engine, *args).result()

    def close(self) -> None:
        for function in self._at_close:
            try:
                self.run_sync(function)
            except Exception:
                logger.exception("Closing the database: %r failed", function)
        self._executor.shutdown(wait=True)
        self.engine.dispose()
