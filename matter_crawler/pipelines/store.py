"""Store products and DCL records in the database in batches, and lose none of them.

Records (the items: the catalogue's products, the ledger's
:class:`~matter_crawler.dcl.records.DclRecord`) and sightings (cards a listing page
showed, which the spider sends with the ``listing_sighted`` signal: they are not
items) are buffered and written in one transaction per batch: new products inserted,
known ones updated with a ``product_changes`` row per changed field, sightings
refreshing ``last_seen_at``; DCL records likewise into their kind's table, with a
``dcl_changes`` row per changed column
(:func:`~matter_crawler.dcl.storage.upsert_dcl_records`). A batch is written when it
reaches ``STORE_BATCH_SIZE`` records and sightings, when
``STORE_FLUSH_INTERVAL`` seconds pass, and when the spider closes. Writes run on
the database's own thread (:class:`~matter_crawler.storage.Database`,
the functions of :mod:`matter_crawler.pipelines.writes`), so the
reactor keeps downloading meanwhile, and a batch is written while the next one
fills; the item that fills a batch waits until the one before it is written,
which holds the crawl back if the database falls behind instead of letting
buffers grow. A product with a value its column cannot hold (longer than a
``VARCHAR(n)``, a NUL character: PostgreSQL refuses them, so SQLite is not given
them either) is left out of its batch, counted in ``store/products_rejected`` and
dead-lettered as ``invalid`` with the reason; a DCL record likewise, counted in
``store/dcl_records_rejected``, its letter under its ``url`` at stage ``dcl``.

A batch the database refuses is not thrown away:

1. A refusal that may pass ("database is locked" after ``DATABASE_BUSY_TIMEOUT``,
   disk full, a lost connection: SQLAlchemy's ``OperationalError``) is retried
   up to ``STORE_RETRY_ATTEMPTS`` times in all, ``STORE_RETRY_BACKOFF`` seconds
   after the first refusal, twice as long after each next one. The wait is on
   the reactor (the crawl goes on); the write is on the database thread.
2. Then, or at once for a refusal that will not pass (a constraint, a value
   too long for its column), the batch is written item by item, each record
   in its own transaction, to isolate the records the database refuses; the
   sightings follow in one transaction.
3. A record still refused becomes a dead letter (failure class ``storage``,
   the database's reason; stage ``detail`` for a product, ``dcl`` for a DCL
   record, one letter per URL), written by this pipeline so that it knows the
   letter is stored; the rest of the batch is stored.
4. What can be neither written nor dead-lettered (the letters refused too,
   dead letters disabled, sightings refused) is lost: counted in
   ``store/batches_lost`` (and ``store/products_lost``, ``store/dcl_records_lost``,
   ``store/sightings_lost``) and logged as an error with its URLs. Such a run never
   records ``done`` (:mod:`matter_crawler.extensions.run_record`) and delists nothing.

After each committed batch, ``batch_stored`` names the URLs of the records it
stored (a URL none of whose records in the batch was refused or rejected); the
dead-letter store resolves their letters from it (never before the commit).

At close, after the last batch, the products a full run proved gone (the
spider's ``delisting()``: each one's page answered 404 or 410, see
:mod:`matter_crawler.planner`) are marked delisted, in one transaction; the spider
proves none when a batch was lost.

Stats: ``store/batches``, ``store/batch_seconds_total``, ``store/products_new``,
``store/products_changed``, ``store/products_unchanged``, ``store/sightings``,
``store/products_delisted``, ``store/batch_retries``, ``store/batches_isolated``,
``store/products_failed`` (dead-lettered), ``store/batches_lost``,
``store/products_lost``, ``store/sightings_lost``, ``store/products_rejected``; for
DCL records (set once a batch holds some): ``store/dcl_records_new``,
``store/dcl_records_changed``, ``store/dcl_records_unchanged``,
``store/dcl_records_rejected``, ``store/dcl_records_failed`` (dead-lettered),
``store/dcl_records_lost``.
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
from ..dcl.records import DclRecord
from ..dcl.storage import record_key
from ..items import ListingSighting, ProductItem
from ..signals import batch_stored, listing_sighted, send_dead_letter, send_invalid_product
from ..storage import Database
from ..storage.database import database_reason, may_pass
from ..storage.dead_letters import Letter, add_letters
from .writes import (
    BatchResult,
    IsolatedBatch,
    StoredRecord,
    delist_proven,
    write_batch,
    write_item_by_item,
)

__all__ = ["BatchStorePipeline", "delist_proven", "write_batch"]

logger = logging.getLogger(__name__)

#: The items this pipeline stores; any other item is passed on untouched.
STORED_ITEMS = (ProductItem, DclRecord)


def counted(records: Sequence[StoredRecord]) -> tuple[int, int]:
    """How many of ``records`` are products, and how many DCL records."""
    dcl = sum(isinstance(record, DclRecord) for record in records)
    return len(records) - dcl, dcl


def described(records: Sequence[StoredRecord]) -> str:
    """``3 products``, ``2 DCL records``, or ``3 products and 2 DCL records``, for a log."""
    products, dcl = counted(records)
    if not dcl:
        return f"{products} products"
    if not products:
        return f"{dcl} DCL records"
    return f"{products} products and {dcl} DCL records"


def refusal_letters(
    refused: Sequence[tuple[StoredRecord, str]], attempts: int, now: datetime
) -> list[Letter]:
    """The dead letters of the records the database refused: one per URL (the records
    of a status-list page share its URL), with the reason of each of its records."""
    reasons: dict[str, list[str]] = {}
    stages: dict[str, str] = {}
    for record, why in refused:
        if isinstance(record, DclRecord):
            key = record_key(record.key())
            reason = f"the database refused the {record.kind} record {key}: {why}"
            stages[record.url] = "dcl"
        else:
            reason = f"the database refused the product: {why}"
            stages[record.url] = "detail"
        reasons.setdefault(record.url, []).append(reason)
    return [
        Letter(
            url=url,
            stage=stages[url],
            failure_class="storage",
            last_error="; ".join(found),
            attempts=attempts,
            first_failed_at=now,
            last_failed_at=now,
        )
        for url, found in reasons.items()
    ]


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
        self.dead_letters = dead_letters  # whether refused records can be dead-lettered
        self._records: list[StoredRecord] = []  # products and DCL records
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
        if not isinstance(item, STORED_ITEMS):
            return item
        self._records.append(item)
        if self._full():
            await self.flush()
        return item

    def sighted(self, sightings: Sequence[ListingSighting], **_: Any) -> None:
        """``listing_sighted``: buffer the sightings with the records of the next batch.

        A signal handler cannot wait, so a full batch is flushed in the background;
        the records that follow wait for it as usual (see :meth:`flush`).
        """
        self._sightings.extend(sightings)
        if self._full() and not self._flush_pending:
            self._flush_pending = True
            self._flush_in_background()

    def _full(self) -> bool:
        return len(self._records) + len(self._sightings) >= self.batch_size

    def _flush_if_due(self) -> None:
        if monotonic() - self._last_flush >= self.flush_interval and (
            self._records or self._sightings
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
            records, self._records = self._records, []
            sightings, self._sightings = self._sightings, []
            self._last_flush = monotonic()
            if records or sightings:
                self._writing = asyncio.ensure_future(self._write(records, sightings))

    async def _wait_for_write(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def _write(self, records: list[StoredRecord], sightings: list[ListingSighting]) -> None:
        started = monotonic()
        stats = self.crawler.stats
        result, error, attempts = await self._write_whole(records, sightings)
        if error is None:
            stored = list(dict.fromkeys(record.url for record in records))
            if result.rejected or result.dcl.rejected:  # left out: their letters stay pending
                refused = {url for url, _ in (*result.rejected, *result.dcl.rejected)}
                stored = [url for url in stored if url not in refused]
        else:
            isolated = await self._write_isolated(records, sightings, error)
            if isolated is None:
                return  # the database thread itself failed: counted and logged as lost
            await self._dead_letter_refused(isolated, len(records), len(sightings), attempts + 1)
            result, stored = isolated.result, isolated.stored
            if isolated.sightings_refused is not None:
                sightings = []
            if not stored and not sightings:
                return  # nothing of the batch was written
        seconds = monotonic() - started
        self._report_rejected(result.rejected, "store/products_rejected")
        self._report_rejected(result.dcl.rejected, "store/dcl_records_rejected", stage="dcl")
        dcl = result.dcl
        stats.inc_value("store/batches")
        stats.inc_value("store/products_new", result.new)
        stats.inc_value("store/products_changed", result.changed)
        stats.inc_value("store/products_unchanged", result.unchanged)
        if dcl.new or dcl.changed or dcl.unchanged:
            stats.inc_value("store/dcl_records_new", dcl.new)
            stats.inc_value("store/dcl_records_changed", dcl.changed)
            stats.inc_value("store/dcl_records_unchanged", dcl.unchanged)
        stats.inc_value("store/sightings", len(sightings))
        stats.inc_value("store/batch_seconds_total", seconds)
        self.crawler.signals.send_catch_log(
            signal=batch_stored,
            products=result.new + result.changed + result.unchanged,
            dcl_records=dcl.new + dcl.changed + dcl.unchanged,
            sightings=len(sightings),
            new=result.new,
            changed=result.changed,
            seconds=seconds,
            urls=tuple(stored),
        )

    async def _write_whole(
        self, records: list[StoredRecord], sightings: list[ListingSighting]
    ) -> tuple[BatchResult, BaseException | None, int]:
        """Write the batch in one transaction, retrying refusals that may pass.

        Returns the result, the last refusal (None once written) and the attempts made.
        """
        delay = self.retry_backoff
        attempt = 1
        while True:
            try:
                result = await self.database.run(
                    write_batch, records, sightings, self.session.run_id, datetime.now(UTC)
                )
            except Exception as error:
                if not may_pass(error) or attempt >= self.retry_attempts:
                    return BatchResult(), error, attempt
                self.crawler.stats.inc_value("store/batch_retries")
                logger.warning(
                    "The database refused a batch of %s and %d sightings (%s); "
                    "trying again in %.1f s (attempt %d of %d)",
                    described(records),
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
        self, records: list[StoredRecord], sightings: list[ListingSighting], error: BaseException
    ) -> IsolatedBatch | None:
        self.crawler.stats.inc_value("store/batches_isolated")
        logger.warning(
            "The database refused a batch of %s and %d sightings (%s); writing it item by item",
            described(records),
            len(sightings),
            database_reason(error),
        )
        try:
            return await self.database.run(
                write_item_by_item, records, sightings, self.session.run_id, datetime.now(UTC)
            )
        except Exception as failure:
            self._lost(records, len(sightings), database_reason(failure))
            return None

    async def _dead_letter_refused(
        self, isolated: IsolatedBatch, records: int, sightings: int, attempts: int
    ) -> None:
        """Dead-letter the refused records (one letter per URL); count as lost what cannot be."""
        refused = isolated.refused
        if refused:
            logger.error(
                "The database refused %d of %d records of a batch: %s",
                len(refused),
                records,
                "; ".join(f"{record.url} ({reason})" for record, reason in refused),
            )
        lost: list[StoredRecord] = []
        why = "dead letters are disabled (DEAD_LETTERS_ENABLED)"
        if refused and self.dead_letters:
            letters = refusal_letters(refused, attempts, datetime.now(UTC))
            try:
                await self.database.run(add_letters, letters, self.session.run_id)
            except Exception as error:
                why = f"the dead letters were refused too: {database_reason(error)}"
                lost = [record for record, _ in refused]
            else:
                products, dcl = counted([record for record, _ in refused])
                self.crawler.stats.inc_value("store/products_failed", products)
                if dcl:
                    self.crawler.stats.inc_value("store/dcl_records_failed", dcl)
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
            lost = [record for record, _ in refused]
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
            self._count_lost(lost)
            logger.error(
                "Lost %s of a batch: the database refused them and %s: %s",
                described(lost),
                why,
                " ".join(record.url for record in lost),
            )

    def _count_lost(self, records: Sequence[StoredRecord]) -> None:
        products, dcl = counted(records)
        self.crawler.stats.inc_value("store/products_lost", products)
        if dcl:
            self.crawler.stats.inc_value("store/dcl_records_lost", dcl)

    def _lost(self, records: list[StoredRecord], sightings: int, reason: str) -> None:
        stats = self.crawler.stats
        stats.inc_value("store/batches_lost")
        self._count_lost(records)
        stats.inc_value("store/sightings_lost", sightings)
        logger.error(
            "Lost a batch of %s and %d sightings (%s): %s",
            described(records),
            sightings,
            reason,
            " ".join(record.url for record in records),
        )

    def _report_rejected(
        self, rejected: list[tuple[str, str]], stat: str, stage: str = "detail"
    ) -> None:
        """Records the storage layer would not store: dead-lettered with the reason
        (the reasons of one URL's records in one letter)."""
        if not rejected:
            return
        self.crawler.stats.inc_value(stat, len(rejected))
        reasons: dict[str, list[str]] = {}
        for url, reason in rejected:
            logger.warning("Not stored, a value does not fit its column: %s: %s", url, reason)
            reasons.setdefault(url, []).append(reason)
        for url, found in reasons.items():
            send_invalid_product(self.crawler, url, "; ".join(found), stage=stage)

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
