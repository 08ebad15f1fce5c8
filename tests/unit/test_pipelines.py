"""The item pipelines on a real crawler's settings, signals and stats, into real databases.

The batch store's tests run on a SQLite file and on a PostgreSQL database
(``both_databases``).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import pytest_twisted
from scrapy import Spider
from scrapy.exceptions import DropItem
from scrapy.utils.asyncio import sleep
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.test import get_crawler
from sqlalchemy import event, text

from matter_crawler import settings as project_settings
from matter_crawler.items import ListingSighting
from matter_crawler.pipelines.store import BatchStorePipeline
from matter_crawler.pipelines.validation import ValidationPipeline
from matter_crawler.signals import request_dead_lettered
from matter_crawler.storage import Database

from .test_storage import product

pytestmark = pytest.mark.both_databases


class LetterCatcher:
    """Receives the dead letters a component sends (signal handlers are held weakly)."""

    def __init__(self, crawler) -> None:
        self.letters: list[dict] = []
        crawler.signals.connect(self.received, signal=request_dead_lettered)

    def received(self, **letter) -> None:
        self.letters.append(letter)


def validation(**settings) -> tuple[ValidationPipeline, object, LetterCatcher]:
    defaults = {
        name: getattr(project_settings, name)
        for name in ("VALIDATION_REQUIRED_FIELDS", "VALIDATION_CERTIFICATE_PATTERN")
    }
    crawler = get_crawler(Spider, {**defaults, **settings})
    return ValidationPipeline.from_crawler(crawler), crawler, LetterCatcher(crawler)


def test_a_valid_product_and_other_items_pass_untouched():
    pipeline, crawler, catcher = validation()
    item = product(1)
    assert pipeline.process_item(item) is item
    sighting = ListingSighting(item.url, "Acme", "Plug", None, 1)
    assert pipeline.process_item(sighting) is sighting
    assert crawler.stats.get_value("validation/invalid") is None
    assert catcher.letters == []


@pytest.mark.parametrize(
    ("changes", "reason", "stat"),
    [
        ({"manufacturer": None}, "manufacturer is missing", "manufacturer"),
        ({"certificate_id": ""}, "certificate_id is missing", "certificate_id"),
        (
            {"certificate_id": "CSA-<script>"},
            "certificate_id 'CSA-<script>' does not look like a CSA certificate id",
            "certificate_id",
        ),
        (
            {"url": "https://csa-iot.org/elsewhere/"},
            "url 'https://csa-iot.org/elsewhere/' is not a product page URL",
            "url",
        ),
        (
            {"problems": ["vid: '0xZZ' is not a hexadecimal id"]},
            "vid: '0xZZ' is not a hexadecimal id",
            "vid",
        ),
    ],
)
def test_an_invalid_product_is_counted_dead_lettered_and_dropped(changes, reason, stat):
    pipeline, crawler, catcher = validation()
    item = replace(product(1), **changes)
    with pytest.raises(DropItem, match="invalid product"):
        pipeline.process_item(item)
    assert crawler.stats.get_value("validation/invalid") == 1
    assert crawler.stats.get_value(f"validation/invalid/{stat}") == 1
    (letter,) = catcher.letters
    assert letter["failure_class"] == "invalid"
    assert letter["url"] == item.url
    assert reason in letter["reason"]


def test_validation_settings():
    pipeline, _, _ = validation(
        VALIDATION_REQUIRED_FIELDS=["url", "model", "vid"], VALIDATION_CERTIFICATE_PATTERN=""
    )
    assert pipeline.process_item(replace(product(1), manufacturer=None, certificate_id="x"))
    with pytest.raises(DropItem, match="vid is missing"):
        pipeline.process_item(replace(product(1), vid=None))


# -- the batch store -----------------------------------------------------------------------


class Store:
    """A BatchStorePipeline on a real crawler and database, with its commits counted."""

    def __init__(self, database_url: str, **settings) -> None:
        self.crawler = get_crawler(
            Spider,
            {
                "DATABASE_URL": database_url,
                "STORE_BATCH_SIZE": project_settings.STORE_BATCH_SIZE,
                "STORE_FLUSH_INTERVAL": project_settings.STORE_FLUSH_INTERVAL,
                **settings,
            },
        )
        self.pipeline = BatchStorePipeline.from_crawler(self.crawler)
        self.database = Database.from_crawler(self.crawler)
        self.commits = 0
        event.listen(self.database.engine, "commit", self._committed)

    def _committed(self, _conn) -> None:
        self.commits += 1

    def stored(self) -> int:
        with self.database.engine.connect() as conn:
            return conn.execute(text("select count(*) from products")).scalar()

    def stat(self, name: str) -> int:
        return self.crawler.stats.get_value(name, 0)


@pytest_twisted.ensureDeferred
async def test_batches_are_written_when_full_and_the_rest_at_close(database_url):
    # as Scrapy runs pipeline coroutines: an asyncio task
    await deferred_from_coro(_batches_are_written_when_full_and_the_rest_at_close(database_url))


async def _batches_are_written_when_full_and_the_rest_at_close(database_url):
    store = Store(database_url, STORE_BATCH_SIZE=3, STORE_FLUSH_INTERVAL=0)
    store.pipeline.open_spider()
    other = {"url": "x"}  # not ours: passed on, not buffered
    assert await store.pipeline.process_item(other) is other
    for n in range(7):
        await store.pipeline.process_item(product(n))
    # the item that filled the second batch waited for the first one only
    assert store.stat("store/batches") == 1
    assert store.stored() == 3
    await store.pipeline.close_spider()
    assert store.stat("store/batches") == 3  # 3 + 3 + the 1 left at close
    assert store.stat("store/products_new") == 7
    assert store.stored() == 7
    assert store.commits == 3  # one transaction per batch
    store.database.close()


@pytest_twisted.ensureDeferred
async def test_a_partial_batch_is_written_after_the_flush_interval(database_url):
    # as Scrapy runs pipeline coroutines: an asyncio task
    await deferred_from_coro(_a_partial_batch_is_written_after_the_flush_interval(database_url))


async def _a_partial_batch_is_written_after_the_flush_interval(database_url):
    store = Store(database_url, STORE_BATCH_SIZE=500, STORE_FLUSH_INTERVAL=0.2)
    store.pipeline.open_spider()
    await store.pipeline.process_item(product(1))
    store.pipeline.sighted([ListingSighting(product(1).url, None, None, None, 1)])
    for _ in range(50):  # up to 5 s on a busy machine; normally 0.2-0.4 s
        if store.stat("store/batches"):  # counted once the write is done
            break
        await sleep(0.1)
    assert store.stored() == 1
    assert store.stat("store/sightings") == 1
    await store.pipeline.close_spider()
    assert store.stat("store/batches") == 1
    store.database.close()


@pytest_twisted.ensureDeferred
async def test_a_batch_the_database_refuses_is_logged_and_counted(
    database_url, database_backend, caplog
):
    # as Scrapy runs pipeline coroutines: an asyncio task
    await deferred_from_coro(
        _a_batch_the_database_refuses_is_logged_and_counted(database_url, database_backend, caplog)
    )


async def _a_batch_the_database_refuses_is_logged_and_counted(
    database_url, database_backend, caplog
):
    store = Store(database_url, STORE_BATCH_SIZE=2, STORE_FLUSH_INTERVAL=0)
    store.pipeline.open_spider()
    with store.database.engine.begin() as conn:  # a real failure: the table is gone
        conn.execute(text("alter table products rename to products_elsewhere"))
    with caplog.at_level(logging.ERROR, logger="matter_crawler.pipelines.store"):
        for n in range(3):
            await store.pipeline.process_item(product(n))
        await store.pipeline.close_spider()
    # tried item by item, then (dead letters off on this bare crawler) counted lost
    assert store.stat("store/batches_lost") == 2
    assert store.stat("store/products_lost") == 3
    assert store.stat("store/batches") == 0
    assert "Lost 2 products of a batch" in caplog.text
    missing = {"sqlite": "no such table: products", "postgresql": 'relation "products" does not'}
    assert missing[database_backend] in caplog.text
    store.database.close()


@pytest_twisted.ensureDeferred
async def test_a_product_a_column_cannot_hold_is_dead_lettered_and_the_batch_stored(database_url):
    # as Scrapy runs pipeline coroutines: an asyncio task
    await deferred_from_coro(_a_product_a_column_cannot_hold_is_dead_lettered(database_url))


async def _a_product_a_column_cannot_hold_is_dead_lettered(database_url):
    store = Store(database_url, STORE_BATCH_SIZE=3, STORE_FLUSH_INTERVAL=0)
    catcher = LetterCatcher(store.crawler)
    store.pipeline.open_spider()
    too_long = product(2, vid="0x123456789")
    for item in (product(1), too_long, product(3)):
        await store.pipeline.process_item(item)
    await store.pipeline.close_spider()
    assert store.stored() == 2
    assert store.stat("store/products_new") == 2
    assert store.stat("store/products_rejected") == 1
    assert store.stat("store/batches_lost") == 0
    (letter,) = catcher.letters
    assert (letter["url"], letter["failure_class"]) == (too_long.url, "invalid")
    assert letter["reason"] == "vid is 11 characters long, longer than the 8 products.vid holds"
    store.database.close()
