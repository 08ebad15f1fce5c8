"""Store products in the database in batches.

Items are buffered and written in one transaction per batch: new products
inserted, known ones updated with a ``product_changes`` row per changed field,
sightings (cards seen without fetching their page) refreshing ``last_seen_at``.
A batch is written when it reaches ``STORE_BATCH_SIZE`` items, when
``STORE_FLUSH_INTERVAL`` seconds pass, and when the spider closes. Writes run on
the database's own thread (:class:`~matter_crawler.storage.Database`), so the
reactor keeps downloading meanwhile, and a batch is written while the next one
fills; the item that fills a batch waits until the one before it is written,
which holds the crawl back if the database falls behind instead of letting
buffers grow. A batch the database refuses (disk full...) is logged as an
error with what it held and counted in ``store/batches_failed`` and
``store/products_failed``.

At close, after the last batch, the products a full run proved gone (the
spider's ``delisting()``: each one's page answered 404 or 410, see
:mod:`matter_crawler.planner`) are marked delisted, in one transaction.

Stats: ``store/batches``, ``store/batch_seconds_total``, ``store/products_new``,
``store/products_changed``, ``store/products_unchanged``, ``store/sightings``,
``store/products_delisted``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Self

from scrapy.crawler import Crawler
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import deferred_from_coro
from sqlalchemy import Engine

from ..items import ListingSighting, ProductItem
from ..session import CrawlSession
from ..signals import batch_stored
from ..storage import Database
from ..storage.products import UpsertResult, mark_delisted, record_sightings, upsert_products

logger = logging.getLogger(__name__)


def write_batch(
    engine: Engine,
    products: Sequence[ProductItem],
    sightings: Sequence[ListingSighting],
    run_id: int | None,
    now: datetime,
) -> UpsertResult:
    """One transaction: upsert the products, then record the sightings."""
    with engine.begin() as conn:
        result = upsert_products(conn, products, run_id, now)
        record_sightings(conn, sightings, run_id, now)
    return result


def delist_proven(engine: Engine, urls: Sequence[str], run_id: int, now: datetime) -> int:
    """Mark delisted the products a run proved gone (one transaction)."""
    with engine.begin() as conn:
        return mark_delisted(conn, urls, run_id, now)


class BatchStorePipeline:
    def __init__(
        self, crawler: Crawler, database: Database, batch_size: int, flush_interval: float
    ) -> None:
        self.crawler = crawler
        self.database = database
        self.session = CrawlSession.from_crawler(crawler)
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self._products: list[ProductItem] = []
        self._sightings: list[ListingSighting] = []
        self._lock = asyncio.Lock()  # batches are handed over one at a time, in order
        self._writing: asyncio.Future[None] | None = None  # the batch being written
        self._last_flush = monotonic()
        self._timer = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        return cls(
            crawler,
            Database.from_crawler(crawler),
            settings.getint("STORE_BATCH_SIZE", 1000),
            settings.getfloat("STORE_FLUSH_INTERVAL", 2.0),
        )

    def open_spider(self) -> None:
        if self.flush_interval > 0:
            self._timer = create_looping_call(self._flush_if_due)
            self._timer.start(self.flush_interval, now=False)

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, ProductItem):
            self._products.append(item)
        elif isinstance(item, ListingSighting):
            self._sightings.append(item)
        else:
            return item
        if len(self._products) + len(self._sightings) >= self.batch_size:
            await self.flush()
        return item

    def _flush_if_due(self) -> None:
        if monotonic() - self._last_flush >= self.flush_interval and (
            self._products or self._sightings
        ):
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
        try:
            result = await self.database.run(
                write_batch, products, sightings, self.session.run_id, datetime.now(UTC)
            )
        except Exception:
            # the database itself failed (disk full, locked for 30 s...): say what was lost
            stats.inc_value("store/batches_failed")
            stats.inc_value("store/products_failed", len(products))
            logger.exception(
                "Could not store a batch of %d products and %d sightings",
                len(products),
                len(sightings),
            )
            return
        seconds = monotonic() - started
        stats.inc_value("store/batches")
        stats.inc_value("store/products_new", result.new)
        stats.inc_value("store/products_changed", result.changed)
        stats.inc_value("store/products_unchanged", result.unchanged)
        stats.inc_value("store/sightings", len(sightings))
        stats.inc_value("store/batch_seconds_total", seconds)
        self.crawler.signals.send_catch_log(
            signal=batch_stored,
            products=len(products),
            sightings=len(sightings),
            new=result.new,
            changed=result.changed,
            seconds=seconds,
        )

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
