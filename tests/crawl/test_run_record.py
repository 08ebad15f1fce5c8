"""The crawl_runs record: the stage a run reached, and product counts from the database."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from scrapy.utils.test import get_crawler
from sqlalchemy import update

from matter_crawler import settings as project_settings
from matter_crawler.extensions.run_record import stage_reached
from matter_crawler.items import ListingSighting, ProductItem
from matter_crawler.pipelines.store import delist_proven, write_batch
from matter_crawler.planner import CrawlPlan
from matter_crawler.spiders.matter_products import MatterProductsSpider
from matter_crawler.storage import Database
from matter_crawler.storage.models import Product
from matter_crawler.storage.runs import finish_run, recent_runs, start_run

from ..helpers import crawl_runs, database_differences, query, run_crawl
from ..unit.test_storage import product

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def sighting(item: ProductItem) -> ListingSighting:
    return ListingSighting(
        url=item.url,
        manufacturer=item.manufacturer,
        model=item.model,
        certificate_id=item.certificate_id,
        page=1,
    )


def new_run(engine, now: datetime) -> int:
    return start_run(
        engine, spider="matter_products", job_id=None, mode="full", settings={}, now=now
    )


@pytest.mark.both_databases
def test_product_counts_come_from_the_database(database_url):
    database = Database(database_url)
    engine = database.engine
    try:
        first = new_run(engine, T0)
        write_batch(engine, [product(n) for n in (1, 2, 3, 4, 6)], [], first, T0)
        with engine.begin() as conn:  # an earlier delisting: not the next run's doing
            conn.execute(
                update(Product.__table__)
                .where(Product.__table__.c.url == product(6).url)
                .values(delisted_at=T0 + timedelta(minutes=1))
            )

        later = T0 + timedelta(hours=1)
        second = new_run(engine, later)
        # in two batches, as two processes of one resumed run would write them
        write_batch(engine, [product(5)], [sighting(product(2))], second, later)
        changed = product(1, model="Plug One", firmware_version="2.0")
        write_batch(engine, [changed], [], second, later + timedelta(minutes=5))
        # 3 and 4 proven gone; 2, seen by the run, is never delisted
        proven = [product(n).url for n in (2, 3, 4)]
        assert delist_proven(engine, proven, second, later + timedelta(minutes=9)) == 2

        # the values passed in say otherwise: the database wins
        stale = {"status": "finished", "products_new": 0, "products_changed": 0}
        finish_run(engine, second, stale, count_products=True)
        run = next(run for run in recent_runs(engine) if run["id"] == second)
        counts = {name: run[name] for name in run if name.startswith("products_")}
        assert counts == {
            "products_listed": 0,
            "products_fetched": 2,  # 5 and 1
            "products_new": 1,  # 5
            "products_changed": 1,  # 1, in two fields
            "products_delisted": 2,  # 3 and 4, not 6
        }
    finally:
        database.close()


@pytest.fixture
def spider(tmp_path):
    crawler = get_crawler(
        MatterProductsSpider,
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
            "CSA_BASE_URL": project_settings.CSA_BASE_URL,
            "CSA_LISTING_QUERY": project_settings.CSA_LISTING_QUERY,
        },
    )
    return MatterProductsSpider.from_crawler(crawler)


def finished_listing(**changes) -> CrawlPlan:
    plan = CrawlPlan(
        mode="full",
        site_last_page=3,
        end_confirmed=True,
        pages_scheduled={1, 2, 3},
        pages_done={1, 2, 3},
    )
    return replace(plan, **changes)


@pytest.mark.parametrize(
    ("plan", "reason", "stage"),
    [
        (None, "finished", "planning"),
        (CrawlPlan(mode="full"), "shutdown", "planning"),
        (finished_listing(pages_done={1}), "shutdown", "list"),
        (finished_listing(), "shutdown", "detail"),
        (finished_listing(), "finished", "done"),
        # out of work, but page 2 failed for good: the listing was never seen whole
        (finished_listing(pages_done={1, 3}, pages_failed={2}), "finished", "list"),
        (finished_listing(pages_done={1, 3}, pages_failed={2}), "shutdown", "detail"),
        # the pagination promised a page that never came and never failed
        (finished_listing(pages_done={1, 2}), "finished", "list"),
        (CrawlPlan(mode="replay", limited=True), "finished", "done"),
        (CrawlPlan(mode="replay", limited=True, pages_failed={4}), "finished", "list"),
    ],
)
def test_stage_reached(spider, plan, reason, stage):
    spider.plan = plan
    assert stage_reached(spider, reason) == stage


def listing_page(path: str) -> int:
    found = re.search(r"/page/(\d+)/", path)
    return int(found.group(1)) if found else 1


def test_a_finished_run_whose_listing_page_failed_is_not_done(simulated_site, database_url):
    # seeded faults: with seed 8, of the 10 listing pages only page 8 gets a 503
    site = simulated_site(products=120, seed=8, error_rate=0.2, only="list", error_statuses=[503])
    settings = {"RETRY_POLICIES": {"server": {"attempts": 1}}}  # a 503 is dead-lettered at once
    run_crawl(site.base_url, database_url, settings=settings).check()
    statuses = {
        listing_page(e["path"]): e["status"] for e in site.requests_log() if e["kind"] == "list"
    }
    assert statuses == {**dict.fromkeys(range(1, 11), 200), 8: 503, 11: 404}

    (run,) = crawl_runs(database_url)
    assert (run["status"], run["stage"], run["dead_letters"]) == ("finished", "list", 1)
    # page 8's twelve products were never seen
    assert query(database_url, "select count(*) from products") == [(120 - 12,)]

    # fetching the failed pages again completes the catalogue, and that run is done
    site.set_faults(error_rate=0)
    args = {"replay_dead_letters": 1}
    run_crawl(site.base_url, database_url, settings=settings, args=args).check()
    assert database_differences(database_url, site.truth()) == []
    replay = crawl_runs(database_url)[-1]
    assert (replay["status"], replay["stage"], replay["dead_letters_resolved"]) == (
        "finished",
        "done",
        1,
    )
