"""Store products in the database in batches, and lose none of them.

Products (the items) and sightings (cards a listing page showed, which the
spider sends with the ``listing_sighted`` signal: they are not items) are
buffered and written in one transaction per batch: new products inserted, known
ones updated with a ``product_changes`` row per changed field, sightings
refreshing ``last_seen_at``. A batch is written when it reaches
``STORE_BATCH_SIZE`` products and sightings, when
``STORE_FLUSH_INTERVAL`` seconds pass, and when the spider closes. Writes run on
the database's own thread (:class:`~matter_crawler.storage.Database`,
the functions of :mod:`matter_crawler.pipelines.writes`), so the
reactor keeps downloading meanwhile, and a batch is written while the next one
fills; the item that fills a batch waits until the one before it is written,
which holds the crawl back if the database falls behind instead of letting
buffers grow. A product with a value its column cannot hold (longer than a
``VARCHAR(n)``, a NUL character: PostgreSQL refuses them, so SQLite is not given
them either) is left out of its batch, counted in ``store/products_rejected`` and
dead-lettered as ``invalid`` with the reason.

A batch the database refuses is not thrown away:

1. A refusal that may pass ("database is locked" after ``DATABASE_BUSY_TIMEOUT``,
   disk full, a lost connection: SQLAlchemy's ``OperationalError``) is retried
   up to ``STORE_RETRY_ATTEMPTS`` times in all, ``STORE_RETRY_BACKOFF`` seconds
   after the first refusal, twice as long after each next one. The wait is on
   the reactor (the crawl goes on); the write is on the database thread.
2. Then, or at once for a refusal that will not pass (a constraint, a value
   too long for its column), the batch is written item by item, each product
   in its own transaction, to isolate the products the database refuses; the
   sightings follow in one transaction.
3. A product still refused becomes a dead letter (failure class ``storage``,
   the database's reason), written by this pipeline so that it knows the
   letter is stored; the rest of the batch is stored.
4. What can be neither written nor dead-lettered (the letters refused too,
   dead letters disabled, sightings refused) is lost: counted in
   ``store/batches_lost`` (and ``store/products_lost``, ``store/sightings_lost``)
   and logged as an error with its URLs. Such a run never records ``done``
   (:mod:`matter_crawler.extensions.run_record`) and delists nothing.

After each committed batch, ``batch_stored`` names the products it stored; the
dead-letter store resolves their letters from it (never before the commit).

At close, after the last batch, the products a full run proved gone (the
spider's ``delisting()``: each one's page answered 404 or 410, see
:mod:`matter_crawler.planner`) are marked delisted, in one transaction; the spider
proves none when a batch was lost.

Stats: ``store/batches``, ``store/batch_seconds_total``, ``store/products_new``,
``store/products_changed``, ``store/products_unchanged``, ``store/sightings``,
``store/products_delisted``, ``store/batch_retries``, ``store/batches_isolated``,
``store/products_failed`` (dead-lettered), ``store/batches_lost``,
``store/products_lost``, ``store/sightings_lost``, ``store/products_rejected``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Self

from scrapy.crawler import Crawler
from scrapy.utils.asyncio import create_looping_call, sleep
from scrapy.utils.defer import deferred_from_coro

from ..core.session import CrawlSession
from ..items import ListingSighting, ProductItem
from ..signals import batch_stored, listing_sighted, send_dead_letter, send_invalid_product
from ..storage import Database
from ..storage.database import database_reason, may_pass
from ..storage.dead_letters import Letter, add_letters
from ..storage.products import UpsertResult
from .writes import IsolatedBatch, delist_proven, write_batch, write_item_by_item

__all__ = ["BatchStorePipeline", "delist_proven", "write_batch"]

logger = logging.getLogger(__name__)


class BatchStorePipeline:
    def __init__(
        self,
        crawler: Crawler,
        database: Database,
        batch_size: int,
        flush_interval: float,
        *,
        retry_attempts: int,
        retry_backoff: float,
        dead_letters: bool,
    ) -> None:
        self.crawler = crawler
        self.database = database
        self.session = CrawlSession.from_crawler(crawler)
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self.retry_attempts = max(1, retry_attempts)  # attempts in all, the first included
        self.retry_backoff = retry_backoff
        self.dead_letters = dead_letters  # whether refused products can be dead-lettered
        self._products: list[ProductItem] = []
        self._sightings: list[ListingSighting] = []
        self._lock = asyncio.Lock()  # batches are handed over one at a time, in order
        self._writing: asyncio.Future[None] | None = None  # the batch being written
        self._last_flush = monotonic()
        self._timer = None
        self._flush_pending = False  # a flush the sightings asked for has not started yet

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        pipeline = cls(
            crawler,
            Database.from_crawler(crawler),
            settings.getint("STORE_BATCH_SIZE"),
            settings.getfloat("STORE_FLUSH_INTERVAL"),
            retry_attempts=settings.getint("STORE_RETRY_ATTEMPTS"),
            retry_backoff=settings.getfloat("STORE_RETRY_BACKOFF"),
            dead_letters=settings.getbool("DEAD_LETTERS_ENABLED"),
        )
        crawler.signals.connect(pipeline.sighted, signal=listing_sighted)
        return pipeline

    def open_spider(self) -> None:
        if self.flush_interval > 0:
            self._timer = create_looping_call(self._flush_if_due)
            self._timer.start(self.flush_interval, now=False)

    async def process_item(self, item: Any) -> Any:
        if not isinstance(item, ProductItem):
            return item
        self._products.append(item)
        if self._full():
            await self.flush()
        return item

    def sighted(self, sightings: Sequence[ListingSighting], **_: Any) -> None:
        """``listing_sighted``: buffer the sightings with the products of the next batch.

        A signal handler cannot wait, so a full batch is flushed in the background;
        the products that follow wait for it as usual (see :meth:`flush`).
        """
        self._sightings.extend(sightings)
        if self._full() and not self._flush_pending:
            self._flush_pending = True
            self._flush_in_background()

    def _full(self) -> bool:
        return len(self._products) + len(self._sightings) >= self.batch_size

    def _flush_if_due(self) -> None:
        if monotonic() - self._last_flush >= self.flush_interval and (
            self._products or self._sightings
        ):
            self._flush_in_background()

    def _flush_in_background(self) -> None:
        deferred_from_coro(self.flush()).addErrback(
            lambda failure: logger.error("Batch write failed: %s", failure.getTraceback())
        )

    async def flush(self) -> None:
        """Hand what is buffered to the writer thread, once the batch before it is written.

        The batch is written while the next one fills: at most one batch is
        being written and one buffered, so a database that falls behind holds
        back the item that fills the next batch instead of letting buffers grow.
        """
        async with self._lock:
            await self._wait_for_write()
            self._flush_pending = False
            products, self._products = self._products, []
            sightings, self._sightings = self._sightings, []
            self._last_flush = monotonic()
            if products or sightings:
                self._writing = asyncio.ensure_future(self._write(products, sightings))

    async def _wait_for_write(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def _write(self, products: list[ProductItem], sightings: list[ListingSighting]) -> None:
        started = monotonic()
        stats = self.crawler.stats
        result, error, attempts = await self._write_whole(products, sightings)
        if error is None:
            stored = list(dict.fromkeys(item.url for item in products))
            if result.rejected:  # left out of the batch: their letters stay pending
                refused = {url for url, _ in result.rejected}
                stored = [url for url in stored if url not in refused]
        else:
            isolated = await self._write_isolated(products, sightings, error)
            if isolated is None:
                return  # the database thread itself failed: counted and logged as lost
            await self._dead_letter_refused(isolated, len(products), len(sightings), attempts + 1)
            result, stored = isolated.result, isolated.stored
            if isolated.sightings_refused is not None:
                sightings = []
            if not stored and not sightings:
                return  # nothing of the batch was written
        seconds = monotonic() - started
        self._report_rejected(result.rejected)
        stats.inc_value("store/batches")
        stats.inc_value("store/products_new", result.new)
        stats.inc_value("store/products_changed", result.changed)
        stats.inc_value("store/products_unchanged", result.unchanged)
        stats.inc_value("store/sightings", len(sightings))
        stats.inc_value("store/batch_seconds_total", seconds)
        self.crawler.signals.send_catch_log(
            signal=batch_stored,
            products=len(stored),
            sightings=len(sightings),
            new=result.new,
            changed=result.changed,
            seconds=seconds,
            urls=tuple(stored),
        )

    async def _write_whole(
        self, products: list[ProductItem], sightings: list[ListingSighting]
    ) -> tuple[UpsertResult, BaseException | None, int]:
        """Write the batch in one transaction, retrying refusals that may pass.

        Returns the result, the last refusal (None once written) and the attempts made.
        """
        delay = self.retry_backoff
        attempt = 1
        while True:
            try:
                result = await self.database.run(
                    write_batch, products, sightings, self.session.run_id, datetime.now(UTC)
                )
            except Exception as error:
                if not may_pass(error) or attempt >= self.retry_attempts:
                    return UpsertResult(), error, attempt
                self.crawler.stats.inc_value("store/batch_retries")
                logger.warning(
                    "The database refused a batch of %d products and %d sightings (%s); "
                    "trying again in %.1f s (attempt %d of %d)",
                    len(products),
                    len(sightings),
                    database_reason(error),
                    delay,
                    attempt + 1,
                    self.retry_attempts,
                )
                await sleep(delay)
                delay *= 2
                attempt += 1
            else:
                return result, None, attempt

    async def _write_isolated(
        self, products: list[ProductItem], sightings: list[ListingSighting], error: BaseException
    ) -> IsolatedBatch | None:
        self.crawler.stats.inc_value("store/batches_isolated")
        logger.warning(
            "The database refused a batch of %d products and %d sightings (%s); "
            "writing it item by item",
            len(products),
            len(sightings),
            database_reason(error),
        )
        try:
            return await self.database.run(
                write_item_by_item, products, sightings, self.session.run_id, datetime.now(UTC)
            )
        except Exception as failure:
            self._lost(products, len(sightings), database_reason(failure))
            return None

    async def _dead_letter_refused(
        self, isolated: IsolatedBatch, products: int, sightings: int, attempts: int
    ) -> None:
        """Dead-letter the refused products; count as lost what cannot be."""
        refused = isolated.refused
        if refused:
            logger.error(
                "The database refused %d of %d products of a batch: %s",
                len(refused),
                products,
                "; ".join(f"{item.url} ({reason})" for item, reason in refused),
            )
        lost: list[ProductItem] = []
        why = "dead letters are disabled (DEAD_LETTERS_ENABLED)"
        if refused and self.dead_letters:
            now = datetime.now(UTC)
            letters = [
                Letter(
                    url=item.url,
                    stage="detail",
                    failure_class="storage",
                    last_error=f"the database refused the product: {reason}",
                    attempts=attempts,
                    first_failed_at=now,
                    last_failed_at=now,
                )
                for item, reason in refused
            ]
            try:
                await self.database.run(add_letters, letters, self.session.run_id)
            except Exception as error:
                why = f"the dead letters were refused too: {database_reason(error)}"
                lost = [item for item, _ in refused]
            else:
                self.crawler.stats.inc_value("store/products_failed", len(letters))
                for letter in letters:
                    send_dead_letter(
                        self.crawler,
                        request=None,
                        url=letter.url,
                        stage=letter.stage,
                        failure_class=letter.failure_class,
                        reason=letter.last_error,
                        attempts=letter.attempts,
                        first_failed_at=letter.first_failed_at,
                        recorded=True,
                    )
        elif refused:
            lost = [item for item, _ in refused]
        if isolated.sightings_refused is not None:
            self.crawler.stats.inc_value("store/sightings_lost", sightings)
            logger.error(
                "Lost %d sightings of a batch: the database refused them (%s)",
                sightings,
                isolated.sightings_refused,
            )
        if lost or isolated.sightings_refused is not None:
            self.crawler.stats.inc_value("store/batches_lost")
        if lost:
            self.crawler.stats.inc_value("store/products_lost", len(lost))
            logger.error(
                "Lost %d products of a batch: the database refused them and %s: %s",
                len(lost),
                why,
                " ".join(item.url for item in lost),
            )

    def _lost(self, products: list[ProductItem], sightings: int, reason: str) -> None:
        stats = self.crawler.stats
        stats.inc_value("store/batches_lost")
        stats.inc_value("store/products_lost", len(products))
        stats.inc_value("store/sightings_lost", sightings)
        logger.error(
            "Lost a batch of %d products and %d sightings (%s): %s",
            len(products),
            sightings,
            reason,
            " ".join(item.url for item in products),
        )

    def _report_rejected(self, rejected: list[tuple[str, str]]) -> None:
        """Products the storage layer would not store: dead-lettered with the reason."""
        for url, reason in rejected:
            self.crawler.stats.inc_value("store/products_rejected")
            logger.warning("Not stored, a value does not fit its column: %s: %s", url, reason)
            send_invalid_product(self.crawler, url, reason)

    async def close_spider(self) -> None:
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        await self.flush()
        async with self._lock:
            await self._wait_for_write()
        # after the last batch: the spider's delisting reads store/batches_lost
        spider = self.crawler.spider
        run_id = self.session.run_id
        delisting = getattr(spider, "delisting", None)
        urls = delisting() if run_id is not None and callable(delisting) else []
        if urls:
            assert run_id is not None
            delisted = await self.database.run(delist_proven, urls, run_id, datetime.now(UTC))
            self.crawler.stats.set_value("store/products_delisted", delisted)
            logger.info("Marked %d products proven gone as delisted", delisted)
