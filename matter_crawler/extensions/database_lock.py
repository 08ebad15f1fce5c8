"""One writer per database: the crawl takes its database's lock before it writes anything.

Two crawls writing one database at once would interleave their runs, their
delisting and their dead letters. So a crawl takes the database's writer lock
(:mod:`matter_crawler.storage.lock`: on SQLite a ``crawl_locks`` row naming the
holder, on PostgreSQL a session advisory lock beside that row) when it starts
and gives it back when its database closes, after its last write. With
``DATABASE_LOCK``:

- ``refuse`` (default): a crawl that finds the lock held by a running crawl
  does not start. The check runs when the crawler is built, before anything
  is written (the JOBDIR marker is left as it was found); the error names the
  running crawl (run id, pid, host, when it started, last heartbeat), is
  logged, and the crawl exits with status 1 (:class:`DatabaseInUse`).
- ``wait``: the crawl waits for the lock, asking again every second. It says
  so in the log (a WARNING naming the holder when it starts waiting, an INFO
  line every minute, an INFO line with the wait's length when it has the lock;
  stat ``database_lock/wait_seconds``); every database statement of the crawl
  waits meanwhile (:meth:`~matter_crawler.storage.Database.guard`). A crawl
  stopped while it waits (``crawler.crawling`` turned off) stops waiting.

A lock whose holder is gone (a killed crawl; see the storage module) is taken
over, with a WARNING naming it (stat ``database_lock/taken_over``). While it
runs, the crawl refreshes its heartbeat every ``DATABASE_LOCK_HEARTBEAT``
seconds (with its run id, once the run record has one); a heartbeat that finds
the lock taken over (or, on PostgreSQL, the lock's session ended) closes the
spider (reason ``database_lock_lost``).

Commands that only read the database (``export``, ``runs``, ``changes``,
``dead-letters`` without ``--replay``) take no lock.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from time import monotonic
from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.utils.asyncio import create_looping_call, sleep
from scrapy.utils.defer import deferred_from_coro
from sqlalchemy import Engine

from ..core.liveness import ProcessIdentity
from ..core.session import CrawlSession
from ..storage import Database
from ..storage.database import database_reason
from ..storage.lock import MODES, REFUSE, Acquired, LockHolder, Refused, backend_for

logger = logging.getLogger(__name__)

#: How often a waiting crawl asks again, and how often it says it is still waiting.
WAIT_POLL_SECONDS = 1.0
WAIT_LOG_SECONDS = 60.0


class DatabaseInUse(RuntimeError):
    """Another crawl holds the database's writer lock (DATABASE_LOCK=refuse)."""


class DatabaseLock:
    def __init__(
        self, crawler: Crawler, mode: str, heartbeat_interval: float, stale_after: float
    ) -> None:
        self.crawler = crawler
        self.mode = mode
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.database = Database.from_crawler(crawler)
        self.session = CrawlSession.from_crawler(crawler)
        self.backend = backend_for(self.database.engine)
        self.holder: LockHolder | None = None  # ours, once taken
        self._settled = asyncio.Event()  # the wait is over, lock taken or not
        self._heartbeat = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        mode = settings.get("DATABASE_LOCK")
        if mode not in MODES:
            raise ValueError(f"DATABASE_LOCK must be one of {', '.join(MODES)}, not {mode!r}")
        lock = cls(
            crawler,
            mode,
            settings.getfloat("DATABASE_LOCK_HEARTBEAT"),
            settings.getfloat("DATABASE_LOCK_STALE_AFTER"),
        )
        if mode == REFUSE:
            lock.take_or_refuse()
        else:
            lock.database.guard(lock.ready)
        lock.database.at_close(lock.release)
        crawler.signals.connect(lock.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(lock.engine_started, signal=signals.engine_started)
        crawler.signals.connect(lock.spider_closed, signal=signals.spider_closed)
        return lock

    def _candidate(self) -> LockHolder:
        return LockHolder.new(ProcessIdentity.current(), self.session.run_id, datetime.now(UTC))

    def take_or_refuse(self) -> None:
        """Take the lock now (start-up, before anything is written) or refuse to start."""
        me = self._candidate()
        outcome = self.database.run_sync(
            self.backend.try_acquire, me, self.stale_after, me.acquired_at
        )
        if isinstance(outcome, Refused):
            self.session.abandon_jobdir()
            message = (
                f"The database {self.database.shown_url} is in use by "
                f"{outcome.describe()}: not starting a second crawl on it "
                f"(-s DATABASE_LOCK=wait waits for it to finish)"
            )
            logger.error("%s", message)
            raise DatabaseInUse(message)
        self._took(outcome)

    def _took(self, outcome: Acquired) -> None:
        self.holder = outcome.holder
        self._settled.set()
        if outcome.took_over is not None:
            self.crawler.stats.set_value("database_lock/taken_over", 1)
            logger.warning(
                "Took over the database lock of %s: %s",
                outcome.took_over.describe(),
                outcome.why_stale,
            )
        logger.info("Holding the database's writer lock (%s)", outcome.holder.process.describe())

    async def ready(self) -> None:
        """Wait until the lock is taken; CloseSpider if the crawl stopped without it."""
        if self.holder is None:
            await self._settled.wait()
            if self.holder is None:
                raise CloseSpider("shutdown")

    async def spider_opened(self) -> None:
        if self.holder is not None:
            return
        try:
            await self._wait_for_lock()
        finally:
            self._settled.set()

    async def _wait_for_lock(self) -> None:
        started = monotonic()
        said: float | None = None
        while True:
            if not self.crawler.crawling:  # stopped (Ctrl-C) while waiting
                logger.info("Stopped while waiting for the database")
                raise CloseSpider("shutdown")
            me = self._candidate()
            try:
                outcome = await self.database.run_unguarded(
                    self.backend.try_acquire, me, self.stale_after, me.acquired_at
                )
            except Exception as error:  # the database busy with the other crawl's write
                outcome = None
                logger.debug("Asking for the database lock failed: %s", database_reason(error))
            if isinstance(outcome, Acquired):
                waited = monotonic() - started
                self.crawler.stats.set_value("database_lock/wait_seconds", round(waited, 3))
                if said is not None:
                    logger.info("Took the database lock after waiting %.1f s", waited)
                self._took(outcome)
                return
            if isinstance(outcome, Refused):
                if said is None:
                    logger.warning(
                        "Waiting for the database %s: it is in use by %s (DATABASE_LOCK=wait)",
                        self.database.shown_url,
                        outcome.describe(),
                    )
                    said = monotonic()
                elif monotonic() - said >= WAIT_LOG_SECONDS:
                    logger.info(
                        "Still waiting for the database (%.0f s): in use by %s",
                        monotonic() - started,
                        outcome.describe(),
                    )
                    said = monotonic()
            await sleep(WAIT_POLL_SECONDS)

    def engine_started(self) -> None:
        if self.holder is None:
            return
        self._beat_soon()  # now with the run id the run record has
        if self.heartbeat_interval > 0:
            self._heartbeat = create_looping_call(self._beat_soon)
            self._heartbeat.start(self.heartbeat_interval, now=False)

    def _beat_soon(self) -> None:
        deferred_from_coro(self._beat()).addErrback(
            lambda failure: logger.error("Database lock heartbeat: %s", failure.getTraceback())
        )

    async def _beat(self) -> None:
        holder = self.holder
        if holder is None:
            return
        try:
            lost = await self.database.run_unguarded(
                self.backend.heartbeat, holder, self.session.run_id, datetime.now(UTC)
            )
        except Exception as error:
            logger.warning("Could not refresh the database lock (%s)", database_reason(error))
            return
        if lost is None:
            return
        self.holder = None
        logger.error("Lost the database's writer lock (%s); stopping", lost)
        await self.crawler.engine.close_spider_async(reason="database_lock_lost")

    def spider_closed(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()

    def release(self, engine: Engine) -> None:
        """Give the lock back: the database's last statement (:meth:`Database.at_close`)."""
        try:
            if self.holder is not None:
                self.backend.release(engine, self.holder)
                self.holder = None
        finally:
            self.backend.close()
