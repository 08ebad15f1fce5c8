"""Items/s of the project's store pipeline into a fresh database (one configuration).

Reads ground-truth records (``python -m sitesim --products N
--dump-truth FILE``), turns each into the ``ProductItem`` the spider would
yield for that page (absolute URLs, ``vid_int``/``pid_int``), and feeds them
to the real :class:`~matter_crawler.pipelines.store.BatchStorePipeline`, built
by ``from_crawler`` on a Scrapy crawler with the project's settings plus
``DATABASE_URL`` and ``STORE_BATCH_SIZE``: ``open_spider()``, ``await
process_item(item)`` for each item in turn as Scrapy's scraper does, then
``await close_spider()``, all on an asyncio event loop, with the statements on
the Database's own writer thread as in a crawl. A ``crawl_runs`` row is
started first, as the run recorder does, so rows carry a run id.

The garbage collector is tuned as in a crawl (``GarbageCollectorTuning`` with the
project's ``GC_GEN0_THRESHOLD`` and ``GC_FREEZE_AT_START``, its engine start called
just before the clock starts): the objects alive then, the harness's list of items
among them, which a crawl never holds, are frozen, and the young generation collects
every ``GC_GEN0_THRESHOLD`` allocations.

The clock runs from the first ``process_item`` to the end of ``close_spider``
(the last batch committed); building the items and creating the tables are
outside it. CPU is the whole process's (every thread) over the same span.
Afterwards the products table is compared with the records, field by field:
the figure only counts if every item was stored. Prints one JSON line::

    python bench/store_throughput.py TRUTH_JSONL DATABASE --batch-size 500 [--items N]

DATABASE is a SQLite file to create, or the URL of an empty database
(``postgresql+psycopg://user@host:port/name``, the password from libpq's
PGPASSFILE or PGPASSWORD).

With ``--profile FILE`` the writer thread runs under cProfile and its top
functions are printed to stderr (slower: not a figure to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import read_json_lines
from scrapy.utils.test import get_crawler
from sqlalchemy import create_engine

from matter_crawler import settings as project_settings
from matter_crawler.core.session import CrawlSession
from matter_crawler.extensions.gc_tuning import GarbageCollectorTuning
from matter_crawler.items import ProductItem
from matter_crawler.pipelines.store import BatchStorePipeline
from matter_crawler.storage import Database
from matter_crawler.storage.runs import start_run
from matter_crawler.verify import TRUTH_FIELDS, diff_records, stored_records

#: Items carry absolute URLs, as crawled; the truth and stored_records use paths.
BASE_URL = "https://csa-iot.org"


def product_item(record: dict[str, Any]) -> ProductItem:
    """The item the spider builds from this product's page (see parsing.normalize)."""
    values = {name: record[name] for name in TRUTH_FIELDS}
    values["url"] = BASE_URL + record["url"]
    if record["compliance_document_url"]:
        values["compliance_document_url"] = BASE_URL + record["compliance_document_url"]
    return ProductItem(
        **values,
        vid_int=int(record["vid"], 16),
        pid_int=int(record["pid"], 16),
    )


async def store(
    items: list[ProductItem],
    database_url: str,
    batch_size: int,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    # the pipeline's own settings; the rest of the project's would start components
    # (monitoring, rendering) that this measurement is not about
    crawler = get_crawler(
        settings_dict={
            "DATABASE_URL": database_url,
            "STORE_BATCH_SIZE": batch_size,
            "STORE_FLUSH_INTERVAL": project_settings.STORE_FLUSH_INTERVAL,
            "GC_GEN0_THRESHOLD": project_settings.GC_GEN0_THRESHOLD,
            "GC_FREEZE_AT_START": project_settings.GC_FREEZE_AT_START,
            "LOG_LEVEL": "WARNING",
        }
    )
    pipeline = BatchStorePipeline.from_crawler(crawler)
    database = Database.from_crawler(crawler)
    session = CrawlSession.from_crawler(crawler)
    session.run_id = await database.run(
        lambda engine: start_run(
            engine,
            spider="store_throughput",
            job_id=None,
            mode="full",
            settings={"STORE_BATCH_SIZE": batch_size},
            now=datetime.now(UTC),
        )
    )
    if profile is not None:
        # cProfile follows one thread: the writer's, where the statements run
        await database.run(lambda _engine: profile.enable())
    pipeline.open_spider()
    collector = GarbageCollectorTuning.from_crawler(crawler)
    collector.engine_started()
    started, cpu_started = time.perf_counter(), time.process_time()
    for item in items:
        await pipeline.process_item(item)
    await pipeline.close_spider()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    collector.engine_stopped()
    if profile is not None:
        await database.run(lambda _engine: profile.disable())
    database.close()
    return {
        "items": len(items),
        "batch_size": batch_size,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "items_per_second": len(items) / seconds,
        "batches": crawler.stats.get_value("store/batches", 0),
        "backend": crawler.settings["DATABASE_URL"].split(":", 1)[0].split("+", 1)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("truth", type=Path, help="ground truth, JSON lines")
    parser.add_argument(
        "database", help="SQLite file to create (must not exist), or an empty database's URL"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=project_settings.STORE_BATCH_SIZE,
        help="STORE_BATCH_SIZE (default: the project's)",
    )
    parser.add_argument("--items", type=int, default=0, help="only the first N records")
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the database writer thread into this file and print its top functions "
        "(cProfile slows it down: items/s are then not comparable)",
    )
    options = parser.parse_args()
    database_url = options.database
    if "://" not in database_url:
        if Path(database_url).exists():
            parser.error(f"{database_url} exists: the benchmark writes into a fresh file")
        database_url = f"sqlite:///{database_url}"
    records = read_json_lines(options.truth)
    if options.items:
        records = records[: options.items]
    items = [product_item(record) for record in records]
    profile = cProfile.Profile() if options.profile else None
    result = asyncio.run(store(items, database_url, options.batch_size, profile))
    if profile is not None:
        profile.dump_stats(options.profile)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    engine = create_engine(database_url)
    differences = diff_records(records, stored_records(engine), limit=0)
    engine.dispose()
    result["differences"] = len(differences)
    result["first_differences"] = differences[:5]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
