"""The dataset never goes silently wrong (issue 14, items 2-5): nothing lost between page and row.

- Dead letters resolve themselves: any run that stores a product (or parses a
  listing page) resolves its letter, only once the batch is committed, keyed by
  the URL the spider asked for (a redirect does not make a second row).
- No batch thrown away: a batch the database refuses (a lock held longer than
  the busy timeout, a full disk, a bad row) is retried, then written item by
  item; a product still refused is a dead letter; what cannot be dead-lettered
  either is counted lost, and such a run is not ``done`` and delists nothing.
- No page lost to an exception: a page whose callback or errback raised is a
  dead letter, and the listing walk goes on.
- One writer per database, one process per JOBDIR.

Every fault is real: a real crawl (``scrapy crawl`` in a child process) of the
simulated site into a real SQLite file, a lock taken by another connection, a
full database (``PRAGMA max_page_count``), a row refused by a trigger, a
callback that raises. The tests marked ``both_databases`` (the one-writer lock,
a letter resolved by a later run) run on a real PostgreSQL database as well;
there the writer lock is the server's advisory lock, which a killed crawl's
session gives back at once. The spiders below are the project's spider with one
behaviour changed, loaded by the child through ``-s SPIDER_MODULES=`` (Scrapy
finds only spiders defined in this module, not the ones it imports).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from scrapy import Spider
from scrapy.http import Request, Response
from scrapy.utils.asyncio import sleep
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.test import get_crawler
from sqlalchemy import create_engine, event, text
from twisted.python.failure import Failure

from matter_crawler import settings as project_settings
from matter_crawler.core.liveness import ProcessIdentity, is_running
from matter_crawler.core.session import RUNNING_MARKER, CrawlSession, JobdirInUse
from matter_crawler.items import ListingSighting, ProductItem
from matter_crawler.parsing import ListingCard
from matter_crawler.pipelines.store import BatchStorePipeline
from matter_crawler.spiders.matter_products import MatterProductsSpider
from matter_crawler.storage import Database
from matter_crawler.storage.lock import WRITER_LOCK_KEY

from ..helpers import (
    PROJECT_ROOT,
    CrawlResult,
    crawl_command,
    crawl_runs,
    database_differences,
    query,
    run_crawl_command,
    sqlite_url,
    stop_process,
    wait_for,
)

THIS_MODULE = __name__  # "tests.test_integrity_storage": the child imports it for its spiders
# quick retries and no breaker: these tests are about what happens after a request fails
QUICK = {
    "RETRY_POLICIES": {
        "server": {"attempts": 2, "base": 0.05, "cap": 0.1},
        "transient": {"attempts": 2, "base": 0.05, "cap": 0.1},
        "content": {"attempts": 1},
    },
    "CIRCUIT_BREAKER_ENABLED": False,
    "RENDERING_ENABLED": False,  # a JavaScript-only page is a dead letter at once
    "STORE_RETRY_BACKOFF": 0.1,
}
TRIGGER_MESSAGE = "test trigger: this row is refused"


# -- spiders with one behaviour changed ------------------------------------------------------


def _names(value: Any) -> set[str]:
    return {part for part in str(value or "").split(",") if part}


class SlashlessCardsSpider(MatterProductsSpider):
    """Asks for each product page without its trailing slash, which the site redirects.

    The spider makes card links canonical (with the slash), so a redirect before a
    failure needs a request for another form: the site answers ``/csa_product/<slug>``
    with a 301 to ``/csa_product/<slug>/``, and the product's key is the URL asked for,
    the slashless one.
    """

    name = "integrity_slashless"

    def detail_request(self, card: ListingCard, page: int) -> Request:
        request = super().detail_request(card, page)
        return request.replace(url=request.url.rstrip("/"))


class RaisingSpider(MatterProductsSpider):
    """Pages whose callback or errback raises.

    ``-a raise_pages=2,3``: listing pages whose callback raises (a bug);
    ``-a raise_products=slug,...``: product pages whose ``async def`` callback raises;
    ``-a raise_in_listing_errback=1``: the listing errback raises before it does anything.
    Real listing pages with two inputs the issue names put in, as a site could serve
    them: ``-a bad_link_page=N``: the page's first card links ``http://[x/...`` (a
    malformed IPv6 host); ``-a bad_digits_page=N``: the page's current page number is
    ``³``, a digit to ``str.isdigit()`` that ``int()`` cannot read.
    """

    name = "integrity_raising"

    def __init__(
        self,
        raise_pages: Any = None,
        raise_products: Any = None,
        raise_in_listing_errback: Any = None,
        bad_link_page: Any = None,
        bad_digits_page: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.raise_pages = {int(page) for page in _names(raise_pages)}
        self.raise_products = _names(raise_products)
        self.raise_in_listing_errback = bool(raise_in_listing_errback)
        self.bad_link_page = int(bad_link_page or 0)
        self.bad_digits_page = int(bad_digits_page or 0)

    def parse_listing(self, response: Response) -> Iterator[Any]:
        page = response.meta["page"]
        if response.status == 200 and page in self.raise_pages:
            raise RuntimeError(f"test: listing page {page} cannot be read")
        body = response.body
        if response.status == 200 and page == self.bad_link_page:
            body = re.sub(
                rb'href="https?://[^/"]+(/csa_product/)', rb'href="http://[x\1', body, count=1
            )
        if response.status == 200 and page == self.bad_digits_page:
            body = body.replace(
                b'class="page-numbers current">%d<' % page,
                'class="page-numbers current">\u00b3<'.encode(),
            )
        yield from super().parse_listing(response.replace(body=body))

    async def parse_detail(self, response: Response) -> AsyncIterator[ProductItem]:
        slug = urlsplit(response.url).path.strip("/").rsplit("/", 1)[-1]
        if slug in self.raise_products:
            raise ValueError(f"test: product page {slug} cannot be read")
        for item in super().parse_detail(response):
            yield item

    def listing_failed(self, failure: Failure) -> Iterator[Any]:
        if self.raise_in_listing_errback:
            raise RuntimeError("test: the listing errback failed")
        yield from super().listing_failed(failure)


# -- running them ----------------------------------------------------------------------------


def _command(
    spider: str | None,
    base_url: str,
    database_url: str,
    settings: Mapping[str, Any] | None,
    args: Mapping[str, Any] | None,
) -> list[str]:
    merged = {**QUICK, **(settings or {})}
    if spider is not None:
        merged["SPIDER_MODULES"] = THIS_MODULE
    command = crawl_command(base_url, database_url, settings=merged, args=args)
    if spider is not None:
        command[command.index("matter_products")] = spider
    return command


def crawl(
    base_url: str,
    database_url: str,
    *,
    spider: str | None = None,
    settings: Mapping[str, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    timeout: float = 300,
) -> CrawlResult:
    """A crawl to its end (``spider``: one of this module's; None: matter_products)."""
    command = _command(spider, base_url, database_url, settings, args)
    return run_crawl_command(command, database_url, timeout)


def start(
    base_url: str,
    database_url: str,
    log_path: Path,
    *,
    settings: Mapping[str, Any] | None = None,
    args: Mapping[str, Any] | None = None,
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            _command(None, base_url, database_url, settings, args),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def letters(database_url: str, *, pending: bool = True) -> dict[str, tuple]:
    """Dead letters by URL path: (stage, failure class, last error, resolved run)."""
    where = " where resolved_at is null" if pending else ""
    rows = query(
        database_url,
        f"select url, stage, failure_class, last_error, resolved_run_id from dead_letters{where}",
    )
    return {path(url): tuple(rest) for url, *rest in rows}


def path(url: str) -> str:
    """A URL's path, and its fragment when it has one (a card named by its position)."""
    parts = urlsplit(url)
    return f"{parts.path}#{parts.fragment}" if parts.fragment else parts.path


def stored_paths(database_url: str) -> set[str]:
    return {path(url) for (url,) in query(database_url, "select url from products")}


def unaccounted_product_pages(site, database_url: str) -> list[str]:
    """Product pages the site served that ended neither stored nor dead-lettered."""
    served = {
        e["path"] for e in site.requests_log() if e["kind"] == "detail" and e["status"] == 200
    }
    known = stored_paths(database_url) | set(letters(database_url, pending=False))
    return sorted(served - known)


def _count(database_url: str, table: str) -> int:
    """Rows in a table; 0 while the crawl has not created it yet."""
    try:
        return query(database_url, f"select count(*) from {table}")[0][0]
    except Exception:
        return 0


def add_trigger(database_url: str, sql_when: str, *, on: str = "INSERT") -> None:
    """A trigger that refuses the rows ``sql_when`` selects (the schema created first).

    On SQLite ``RAISE(ABORT)``; on PostgreSQL a function raising a check violation,
    PostgreSQL's class for a row a constraint refuses.
    """
    Database(database_url).close()
    if not database_url.startswith("sqlite"):
        execute(
            database_url,
            "CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{TRIGGER_MESSAGE}' USING ERRCODE = 'check_violation'; END $$",
            f"CREATE TRIGGER refuse_row BEFORE {on} ON products FOR EACH ROW "
            f"WHEN ({sql_when}) EXECUTE FUNCTION refuse_row()",
        )
        return
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            f"CREATE TRIGGER refuse_row BEFORE {on} ON products WHEN {sql_when} "
            f"BEGIN SELECT RAISE(ABORT, '{TRIGGER_MESSAGE}'); END"
        )


def execute(database_url: str, *statements: str) -> None:
    """Run SQL statements in one transaction."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            for statement in statements:  # as written: no parameters, a % is a %
                conn.execution_options(no_parameters=True).exec_driver_sql(statement)
    finally:
        engine.dispose()


# -- item 2: dead letters resolve themselves -----------------------------------------------------


@pytest.mark.both_databases
def test_a_later_run_resolves_a_letter_once_its_product_is_committed(simulated_site, database_url):
    site = simulated_site(products=24, seed=42)
    truth = site.truth()
    refused = truth[5]["url"]
    # run 1: every product page fails for good
    site.set_faults(error_rate=1.0, only="detail")
    crawl(site.base_url, database_url).check()
    assert set(letters(database_url)) == {record["url"] for record in truth}
    # run 2, an ordinary run (not a replay); the database refuses one product of its batch
    site.set_faults(error_rate=0)
    add_trigger(database_url, f"NEW.url LIKE '%{refused}'")
    result = crawl(site.base_url, database_url)
    assert result.returncode == 0, result.output[-3000:]
    # the batch was written item by item: every other product is stored, field by field
    assert database_differences(database_url, [r for r in truth if r["url"] != refused]) == []
    # their letters are resolved by this run; the refused one's is pending, with the reason
    ((url, (stage, failure_class, error, resolved)),) = letters(database_url).items()
    assert (url, stage, failure_class, resolved) == (refused, "detail", "storage", None)
    assert TRIGGER_MESSAGE in error
    run = crawl_runs(database_url)[-1]
    resolved_by = Counter(by for *_, by in letters(database_url, pending=False).values())
    assert resolved_by == {run["id"]: len(truth) - 1, None: 1}
    assert (run["dead_letters_resolved"], run["dead_letters"]) == (len(truth) - 1, 1)
    assert run["stats"]["store/batches_isolated"] >= 1
    assert run["stats"].get("store/batches_lost", 0) == 0
    assert (run["status"], run["stage"]) == ("finished", "done")


def test_a_redirected_page_is_lettered_under_the_url_asked_for(simulated_site, database_url):
    # every product page is a JavaScript-only shell: without a browser, a dead letter at once
    site = simulated_site(products=24, seed=43, js_only_rate=1.0, only="detail")
    truth = site.truth()
    asked = {record["url"].rstrip("/") for record in truth}  # what the cards link
    crawl(site.base_url, database_url, spider="integrity_slashless").check()
    # each was redirected (301 to /csa_product/<slug>/) before it failed: keyed as asked
    assert set(letters(database_url)) == asked
    site.set_faults(js_only_rate=0)
    crawl(
        site.base_url,
        database_url,
        spider="integrity_slashless",
        args={"replay_dead_letters": 1},
    ).check()
    # one row per product, under its canonical URL: a later run finds it known
    assert stored_paths(database_url) == {record["url"] for record in truth}
    assert letters(database_url) == {}


# -- item 3: no batch thrown away ------------------------------------------------------------


def test_a_batch_refused_while_another_connection_holds_the_lock_is_written_later(
    simulated_site, tmp_path
):
    database_file = tmp_path / "matter.sqlite3"
    database_url = sqlite_url(database_file)
    site = simulated_site(products=240, seed=44, latency_ms=40)
    settings = {
        "DATABASE_BUSY_TIMEOUT": 0.2,  # SQLite waits 0.2 s for a lock, then refuses
        "STORE_RETRY_ATTEMPTS": 10,  # 0.1 + 0.2 + 0.4 ... : about 50 s in all
        "STORE_BATCH_SIZE": 20,
        "STORE_FLUSH_INTERVAL": 0.3,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 4,
        "ADAPTIVE_CONCURRENCY_ENABLED": False,
    }
    log_path = tmp_path / "crawl.log"
    process = start(site.base_url, database_url, log_path, settings=settings)
    try:
        wait_for(lambda: _count(database_url, "products"), timeout=120, message="a first batch")
        # another connection takes the write lock for ten busy timeouts
        holder = sqlite3.connect(database_file, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(2.0)
        assert process.poll() is None, "the crawl ended while the lock was held"
        holder.execute("ROLLBACK")
        holder.close()
        process.wait(timeout=240)
    finally:
        stop_process(process)
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    assert "database is locked" in output
    assert database_differences(database_url, site.truth()) == []
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["stage"]) == ("finished", "done")
    assert run["stats"]["store/batch_retries"] >= 1
    assert run["stats"].get("store/batches_lost", 0) == 0
    assert letters(database_url) == {}


def test_a_run_that_loses_a_batch_is_not_done_and_delists_nothing(simulated_site, database_url):
    site = simulated_site(products=60, seed=46)
    crawl(site.base_url, database_url).check()
    removed = {path(url) for url in site.mutate(remove=3)["removed"]}
    # a second full run: the stored products' cards are sightings; the database refuses one
    # sighting, so the batch's sightings can be neither written nor dead-lettered
    seen = site.truth()[30]["url"]
    add_trigger(database_url, f"NEW.url LIKE '%{seen}'", on="UPDATE OF last_seen_at")
    result = crawl(site.base_url, database_url, args={"mode": "full"})
    assert result.returncode == 0, result.output[-3000:]
    assert re.search(r"ERROR: Lost \d+ sightings of a batch", result.output)
    run = crawl_runs(database_url)[-1]
    assert run["stats"]["store/batches_lost"] >= 1
    assert (run["status"], run["finish_reason"]) == ("failed", "finished")
    assert run["stage"] != "done"
    # the lost sightings would have made stored products look unseen: nothing is delisted,
    # not even the products that did leave the catalogue (a later complete run does that)
    assert query(database_url, "select count(*) from products where delisted_at is not null") == [
        (0,)
    ]
    assert run["products_delisted"] == 0
    assert removed, "products did leave the catalogue"


class Store:
    """A BatchStorePipeline on a real crawler and SQLite file whose size can be capped."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.crawler = get_crawler(
            Spider,
            {
                "DATABASE_URL": sqlite_url(tmp_path / "store.sqlite3"),
                "DATABASE_BUSY_TIMEOUT": 1.0,
                "STORE_BATCH_SIZE": project_settings.STORE_BATCH_SIZE,
                "STORE_FLUSH_INTERVAL": 0,
                "STORE_RETRY_ATTEMPTS": 6,
                "STORE_RETRY_BACKOFF": 0.1,
                "DEAD_LETTERS_ENABLED": True,
                **settings,
            },
        )
        self.pipeline = BatchStorePipeline.from_crawler(self.crawler)
        self.database = Database.from_crawler(self.crawler)
        self.max_pages: int | None = None
        # PRAGMA max_page_count holds per connection: set it on every checkout
        event.listen(self.database.engine, "checkout", self._cap)

    def _cap(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {self.max_pages or 1_000_000_000}")
        cursor.close()

    def fill_up(self) -> None:
        """No page more: the database is full (SQLITE_FULL on the next growth)."""
        with self.database.engine.connect() as conn:
            self.max_pages = conn.execute(text("PRAGMA page_count")).scalar()

    def stored(self) -> int:
        return query(self.database.url, "select count(*) from products")[0][0]

    def stat(self, name: str) -> int:
        return self.crawler.stats.get_value(name, 0)


def product(n: int, *, padding: int = 0) -> ProductItem:
    """A product whose row needs new pages (``padding``: its URL too, so its letter does)."""
    return ProductItem(
        url=f"https://csa-iot.org/csa_product/full-disk-{n}{'-' * padding}/",
        manufacturer="Acme",
        model=f"Plug {n} " + "x" * 5000,  # longer than a page: each row needs new pages
        certificate_id=f"CSA2{n:04d}MAT4{n:04d}-24",
    )


@pytest_twisted.ensureDeferred
async def test_a_batch_refused_by_a_full_disk_is_written_once_there_is_room(tmp_path):
    await deferred_from_coro(_full_disk_then_room(tmp_path))


async def _full_disk_then_room(tmp_path: Path) -> None:
    store = Store(tmp_path, STORE_BATCH_SIZE=40)
    store.pipeline.open_spider()
    store.fill_up()
    for n in range(39):
        await store.pipeline.process_item(product(n))
    store.pipeline.sighted([ListingSighting(product(0).url, None, None, None, 1)])
    # the sighting filled the batch: handed to the writer, refused, retried meanwhile
    for _ in range(50):
        if store.stat("store/batch_retries") >= 2:
            break
        await sleep(0.1)
    assert store.stat("store/batch_retries") >= 2
    assert store.stored() == 0
    store.max_pages = None  # room again (an operator freed disk space)
    await store.pipeline.close_spider()
    assert store.stored() == 39
    assert (store.stat("store/batches"), store.stat("store/batches_lost")) == (1, 0)
    assert store.stat("store/sightings") == 1
    store.database.close()


@pytest_twisted.ensureDeferred
async def test_a_batch_that_can_be_neither_written_nor_dead_lettered_is_counted_lost(
    tmp_path, caplog
):
    await deferred_from_coro(_full_disk_for_good(tmp_path, caplog))


async def _full_disk_for_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path, STORE_BATCH_SIZE=10, STORE_RETRY_ATTEMPTS=3)
    store.pipeline.open_spider()
    store.fill_up()
    # long URLs (that still fit their columns): ten letters need new pages too, and are refused
    products = [product(n, padding=450) for n in range(10)]
    with caplog.at_level(logging.WARNING, logger="matter_crawler.pipelines.store"):
        for item in products:
            await store.pipeline.process_item(item)
        await store.pipeline.close_spider()
    assert store.stored() == 0
    assert store.stat("store/batch_retries") == 2  # 3 attempts in all
    assert store.stat("store/batches_lost") == 1
    assert store.stat("store/products_lost") == 10
    assert store.stat("store/products_failed") == 0  # the letters were refused too
    lost = [r.message for r in caplog.records if r.levelno == logging.ERROR and "Lost" in r.message]
    assert len(lost) == 1
    assert "database or disk is full" in lost[0]
    assert all(item.url in lost[0] for item in products)
    assert query(store.database.url, "select count(*) from dead_letters") == [(0,)]
    store.database.close()


# -- item 4: no page lost to an exception ---------------------------------------------------------


def test_pages_whose_callback_raises_are_dead_lettered_and_the_listing_goes_on(
    simulated_site, database_url
):
    site = simulated_site(products=72, seed=47, variant_rate=0)
    truth = site.truth()
    pages = {n: [r["url"] for r in truth[(n - 1) * 12 : n * 12]] for n in range(1, 7)}
    raising = [pages[1][3], pages[6][4]]
    slugs = ",".join(url.strip("/").rsplit("/", 1)[-1] for url in raising)
    args = {"mode": "full", "raise_pages": 4, "raise_products": slugs}
    args |= {"bad_link_page": 2, "bad_digits_page": 3}  # real inputs a parser meets
    result = crawl(site.base_url, database_url, spider="integrity_raising", args=args)
    assert result.returncode == 0, result.output[-3000:]
    pending = letters(database_url)
    stored = stored_paths(database_url)
    listing = {n: path(site.listing_url(n)) for n in pages}
    # the listing page whose callback raised, and the product pages (an async callback)
    assert pending[listing[4]][:3] == (
        "list",
        "parse",
        "RuntimeError: test: listing page 4 cannot be read",
    )
    for url in raising:
        assert pending[url][:2] == ("detail", "parse")
        assert "ValueError: test: product page" in pending[url][2]
    # the real inputs a parser meets: the malformed link is a dead letter of its own, named
    # by its page and position; the page number that is not a number is ignored
    card = f"{listing[2]}#card-1"
    assert pending[card][:2] == ("list", "parse")
    assert "malformed link 'http://[x/csa_product/" in pending[card][2]
    assert "Invalid IPv6 URL" in pending[card][2]
    assert listing[2] not in pending
    assert listing[3] not in pending
    # every product is stored, or dead-lettered itself (by URL or card), or shown on a
    # dead-lettered page
    lettered_card = pages[2][0]
    for number, urls in pages.items():
        lost = [u for u in urls if u not in stored and u not in pending and u != lettered_card]
        assert listing[number] in pending or not lost, f"page {number}: {lost} lost"
    # the other pages were walked and stored: the listing went on
    assert {*pages[1], *pages[3], *pages[5], *pages[6]} - set(raising) <= stored
    assert unaccounted_product_pages(site, database_url) == []
    run = crawl_runs(database_url)[-1]
    # the listing has a hole: the run is not done and delists nothing
    assert (run["status"], run["stage"], run["products_delisted"]) == ("finished", "list", 0)
    assert run["stats"]["callback_errors/count"] == 3
    assert run["stats"]["matter/list/ignored_page_numbers"] >= 1
    assert run["stats"]["matter/list/bad_cards"] >= 1


def _shell_pages(site, pages: int) -> list[int]:
    shells = []
    for number in range(1, pages + 1):
        with urllib.request.urlopen(site.listing_url(number), timeout=10) as answer:
            if b"product-root-loader" in answer.read():
                shells.append(number)
    return shells


@pytest.mark.slow
def test_an_incremental_walk_goes_on_past_pages_whose_callback_or_errback_raised(
    simulated_site, database_url
):
    site = simulated_site(products=60, seed=55)
    crawl(site.base_url, database_url).check()
    site.mutate(add=48)  # listing pages 1 to 4 now show new products only
    truth = site.truth()
    # JavaScript-only listing pages: without a browser, dead letters at once (retry middleware)
    site.set_faults(js_only_rate=0.4, only="list")
    shells = _shell_pages(site, 5)
    assert shells == [1, 2], "seed 55 makes pages 1 and 2 shells, not pages 3 to 5"
    # pages 1 and 2: their errback raises; page 3: its callback raises
    args = {"raise_in_listing_errback": 1, "raise_pages": 3}
    result = crawl(site.base_url, database_url, spider="integrity_raising", args=args)
    assert result.returncode == 0, result.output[-3000:]
    assert set(letters(database_url)) == {path(site.listing_url(n)) for n in (1, 2, 3)}, letters(
        database_url
    )
    # the walk went past them: page 4's new products are stored
    assert {r["url"] for r in truth[36:48]} <= stored_paths(database_url)
    assert not {r["url"] for r in truth[:36]} & stored_paths(database_url)
    assert unaccounted_product_pages(site, database_url) == []
    stats = crawl_runs(database_url)[-1]["stats"]
    assert (stats["callback_errors/errback"], stats["callback_errors/list"]) == (2, 1)
    # the next run reads the pages, stores the rest, and resolves the pages' letters
    site.set_faults(js_only_rate=0)
    crawl(site.base_url, database_url).check()
    assert database_differences(database_url, truth) == []
    assert letters(database_url) == {}


# -- item 5: one writer per database, one process per JOBDIR ------------------------------------

SLOW = {"CONCURRENT_REQUESTS_PER_DOMAIN": 2, "ADAPTIVE_CONCURRENCY_ENABLED": False}


def _lock_row(database_url: str) -> dict[str, Any] | None:
    try:
        rows = query(database_url, "select pid, host, run_id, acquired_at from crawl_locks")
    except Exception:
        return None
    if not rows:
        return None
    pid, host, run_id, acquired_at = rows[0]
    # SQLite returns the stored text, PostgreSQL a datetime: both as "YYYY-MM-DD HH:MM:SS..."
    return {"pid": pid, "host": host, "run_id": run_id, "acquired_at": str(acquired_at)}


def _advisory_lock_sessions(database_url: str) -> list[int]:
    """PostgreSQL: the server processes of the sessions holding the crawls' writer lock.

    A bigint advisory key shows in ``pg_locks`` as its high and low 32 bits.
    """
    high, low = WRITER_LOCK_KEY >> 32, WRITER_LOCK_KEY & 0xFFFFFFFF
    return [
        pid
        for (pid,) in query(
            database_url,
            "select pid from pg_locks where locktype = 'advisory' and granted and objsubid = 1 "
            f"and database = (select oid from pg_database where datname = current_database()) "
            f"and classid = {high} and objid = {low}",
        )
    ]


def _crawling(site, process: subprocess.Popen[bytes]) -> None:
    """Wait until ``process`` fetches product pages."""

    def fetching() -> bool:
        assert process.poll() is None, "the crawl ended early"
        return site.stats()["by_kind"].get("detail", 0) >= 4

    wait_for(fetching, timeout=120, message="the crawl to fetch product pages")


def _holding(database_url: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Wait until ``process`` holds the database lock with its run id."""

    def held() -> dict[str, Any] | None:
        assert process.poll() is None, "the crawl ended early"
        row = _lock_row(database_url)
        return row if row and row["pid"] == process.pid and row["run_id"] else None

    return wait_for(held, timeout=120, message="the crawl to hold the database lock")


@pytest.mark.slow
@pytest.mark.both_databases
def test_a_second_crawl_on_the_same_database_is_refused_or_waits(
    simulated_site, database_url, database_backend, tmp_path
):
    # slow enough for more crawls to start while it runs (sped up once they have)
    site = simulated_site(products=240, seed=50, latency_ms=300)
    first = start(site.base_url, database_url, tmp_path / "first.log", settings=SLOW)
    waiting = None
    try:
        _crawling(site, first)
        # with DATABASE_LOCK=wait a crawl waits, says so, and runs once the first has finished
        waits = {**SLOW, "DATABASE_LOCK": "wait"}
        waiting = start(site.base_url, database_url, tmp_path / "waiting.log", settings=waits)
        # without, it is refused at start, told who is writing, and leaves its JOBDIR alone
        jobdir = tmp_path / "refused-job"
        refused = {**SLOW, "JOBDIR": str(jobdir)}
        second = crawl(site.base_url, database_url, settings=refused, timeout=120)
        assert second.returncode == 1, second.output[-3000:]
        row = _holding(database_url, first)
        message = next(
            line for line in second.output.splitlines() if "is in use by crawl run" in line
        )
        assert f"crawl run {row['run_id']}, pid {first.pid} on {row['host']}" in message
        assert f"started {row['acquired_at'][:19]} UTC" in message
        assert "DATABASE_LOCK=wait" in message
        if database_backend == "postgresql":  # the lock is the server's, held by one session
            assert len(_advisory_lock_sessions(database_url)) == 1
        assert not (jobdir / RUNNING_MARKER).exists()
        # a command that only reads takes no lock
        runs = subprocess.run(
            [sys.executable, "-m", "scrapy", "runs", "-s", f"DATABASE_URL={database_url}"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert runs.returncode == 0, runs.stderr
        assert "running" in runs.stdout
        wait_for(
            lambda: "Waiting for the database" in (tmp_path / "waiting.log").read_text(),
            timeout=120,
            message="the waiting crawl to say it waits",
        )
        assert first.poll() is None, "the first crawl ended before the others were refused"
        site.set_faults(latency_ms=5)
        assert first.wait(timeout=240) == 0
        assert waiting.wait(timeout=240) == 0
    finally:
        for process in (first, waiting):
            if process is not None:
                stop_process(process)
    waited = (tmp_path / "waiting.log").read_text()
    assert re.search(r"Took the database lock after waiting \d+\.\d s", waited)
    runs = crawl_runs(database_url)
    assert [(r["status"], r["stage"]) for r in runs] == [("finished", "done")] * 2
    assert runs[1]["started_at"] >= runs[0]["finished_at"]  # one after the other
    assert database_differences(database_url, site.truth()) == []
    assert _lock_row(database_url) is None  # given back
    if database_backend == "postgresql":
        assert _advisory_lock_sessions(database_url) == []


@pytest.mark.both_databases
def test_a_crawl_that_loses_its_lock_stops(
    simulated_site, database_url, database_backend, tmp_path
):
    site = simulated_site(products=240, seed=53, latency_ms=100)
    settings = {**SLOW, "DATABASE_LOCK_HEARTBEAT": 0.5}
    process = start(site.base_url, database_url, tmp_path / "crawl.log", settings=settings)
    try:
        _holding(database_url, process)
        if database_backend == "sqlite":
            # a crawl on another host took the lock over (the heartbeat looked stale to it)
            execute(
                database_url, "update crawl_locks set token = 'other', host = 'elsewhere.invalid'"
            )
        else:
            # the server ends the session holding the lock (a restart, an administrator):
            # the lock is gone with it, free for another crawl
            (session,) = _advisory_lock_sessions(database_url)
            query(database_url, f"select pg_terminate_backend({session})")
        assert process.wait(timeout=120) == 0
    finally:
        stop_process(process)
    assert "Lost the database's writer lock" in (tmp_path / "crawl.log").read_text()
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["finish_reason"]) == ("failed", "database_lock_lost")
    if database_backend == "sqlite":
        assert _lock_row(database_url)["host"] == "elsewhere.invalid"  # not released: not ours


@pytest.mark.slow
@pytest.mark.both_databases
def test_a_live_jobdir_is_refused_and_a_killed_crawls_jobdir_and_lock_are_taken_over(
    simulated_site, database_url, database_backend, make_database_url, tmp_path
):
    site = simulated_site(products=240, seed=52, latency_ms=100)
    jobdir = tmp_path / "job"
    other_db = make_database_url("other")
    settings = {**SLOW, "JOBDIR": str(jobdir)}
    first = start(site.base_url, database_url, tmp_path / "first.log", settings=settings)
    try:
        _crawling(site, first)
        marker = (jobdir / RUNNING_MARKER).read_text()
        assert str(first.pid) in marker
        # another process on the same JOBDIR (even with another database) does not start
        second = crawl(site.base_url, other_db, settings=settings, timeout=120)
        assert second.returncode == 1, second.output[-3000:]
        assert f"JOBDIR {jobdir} is in use" in second.output
        assert f"pid {first.pid} on" in second.output
        assert "did not stop cleanly" not in second.output  # it touched nothing
        assert (jobdir / RUNNING_MARKER).read_text() == marker
        assert first.poll() is None
        # a hard kill leaves the JOBDIR's marker and the database's lock behind
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        stop_process(first, signal.SIGKILL)
    assert crawl_runs(other_db) == []
    killed_lock = _lock_row(database_url)
    assert killed_lock is not None, "a crawl holds its database's lock"
    assert killed_lock["pid"] == first.pid
    if database_backend == "postgresql":
        # the server ended the killed crawl's session, and its lock with it, at once; so
        # even a crawl from another host, whose process cannot be asked, is no stale-lock
        # wait (DATABASE_LOCK_STALE_AFTER is for SQLite on a shared file system)
        wait_for(
            lambda: not _advisory_lock_sessions(database_url),
            timeout=5,
            message="the server to release the killed crawl's lock",
        )
        execute(database_url, "update crawl_locks set host = 'elsewhere.invalid'")
        killed_lock["host"] = "elsewhere.invalid"
    # the same command again: both are taken over, and the crawl goes on to the end
    site.reset_stats()
    again = start(site.base_url, database_url, tmp_path / "again.log", settings=settings)
    try:
        _crawling(site, again)
        log = (tmp_path / "again.log").read_text()
        assert "did not stop cleanly" in log
        assert (
            f"Took over the database lock of crawl run {killed_lock['run_id']}, "
            f"pid {first.pid} on {killed_lock['host']}" in log
        )
        if database_backend == "sqlite":
            assert "is no longer running" in log
        else:
            assert "its database session ended" in log
        assert _holding(database_url, again)["pid"] == again.pid
        site.set_faults(latency_ms=5)
        assert again.wait(timeout=240) == 0
    finally:
        stop_process(again)
    assert database_differences(database_url, site.truth()) == []
    assert _lock_row(database_url) is None
    assert not (jobdir / RUNNING_MARKER).exists()


def test_a_jobdir_marker_of_a_process_on_another_host_is_refused(tmp_path):
    marker = tmp_path / RUNNING_MARKER
    marker.write_text(json.dumps({"pid": 4242, "host": "elsewhere.invalid", "started": "boot:1"}))
    crawler = get_crawler(Spider, {"JOBDIR": str(tmp_path)})
    with pytest.raises(JobdirInUse, match="another host"):
        CrawlSession.from_crawler(crawler)
    assert json.loads(marker.read_text())["host"] == "elsewhere.invalid"  # left as it was


def test_a_marker_or_lock_whose_pid_was_reused_is_stale():
    me = ProcessIdentity.current()
    assert is_running(me) is True
    # the same pid, but another process (started at another time): not the crawl
    assert is_running(ProcessIdentity(me.pid, me.host, "another-boot:1")) is False
    assert is_running(ProcessIdentity(2**22 + 7, me.host, None)) is False  # no such process
    assert is_running(ProcessIdentity(me.pid, "elsewhere.invalid", me.started)) is None
    # an old marker (a bare pid): running, and a crawl only if its command line says so
    old = ProcessIdentity.from_text(str(os.getpid()))
    assert old == ProcessIdentity(me.pid, me.host, None)
    # this process's own command line: pytest's, or a pytest-xdist worker's (python -c ...)
    program = Path(sys.executable).name
    assert is_running(old, program=program) is True
    assert is_running(old, program="no-such-program-name") is False
