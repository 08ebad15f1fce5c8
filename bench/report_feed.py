"""Wall time of ``scrapy feed`` and ``scrapy report`` on a 100,000-product database.

The database is synthetic, built with SQL inserts through the project's own schema
(not a crawl: a crawl of 100,000 products is bench/scale_section.py's subject, and
the commands only read): products spread over 2022-10 to 2026-11 across 2,000
manufacturers, the catalogue's device types, transports and specification versions,
first seen over the last 90 days (so the feed's 30-day window holds about a third of
them), 5,000 changed fields, 1,000 delisted products, 200 crawl runs and 20 stored
cross-checks. Each command runs as a user runs it (``python -m scrapy ...``, a child
process measured by bench/common.py: wall time, CPU, peak memory), ``--repeat`` times;
the median is printed, as a Markdown table for docs/benchmarks.md::

    python bench/report_feed.py [--products 100000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from common import ROOT, load_average, machine, markdown_table, median, run_measured
from sqlalchemy import insert

from matter_crawler.storage import Database
from matter_crawler.storage.models import CrawlRun, CrosscheckRun, Product, ProductChange

DEVICE_TYPES = (
    "Light Bulb", "Smart Plug", "Sensor", "Appliance", "Window Covering", "Door Lock",
    "Matter Device", "Bridge", "Switch", "Thermostat", "Energy Management",
    "Water Management", "Robotic Vacuum Cleaner", "Speaker", "Smoke & CO Alarm",
    "Thread Border Router", "Air Conditioner", "Climate", "Fan", "Air Purifier",
)  # fmt: skip
TRANSPORTS = (
    ["Thread", "Bluetooth"], ["Wi-Fi", "Bluetooth"], ["Wi-Fi"], ["Thread"], ["Ethernet"],
    ["Wi-Fi", "Ethernet"], ["Ethernet", "Thread"], [],
)  # fmt: skip
SPECS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
BATCH = 5000


def build(url: str, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    first_day, days = date(2022, 10, 4), (date(2026, 11, 20) - date(2022, 10, 4)).days
    vendors = [
        f"Vendor {index:04d} {rng.choice(['GmbH', 'Inc.', 'Ltd', 'S.A.'])}" for index in range(2000)
    ]
    database = Database(url)  # creates the schema at the code's revision
    engine = database.engine
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(CrawlRun.__table__),
                [
                    {
                        "spider": "matter_products",
                        "mode": "incremental" if index else "full",
                        "status": "finished",
                        "stage": "done",
                        "started_at": now - timedelta(days=200 - index),
                        "finished_at": now - timedelta(days=200 - index, seconds=-600),
                        "duration_seconds": 600.0,
                        "pages_crawled": 40,
                        "products_new": count // 200,
                        "products_changed": 25,
                        "products_delisted": 5,
                        "dead_letters": index % 3,
                        "requests": 900,
                    }
                    for index in range(200)
                ],
            )
            conn.execute(
                insert(CrosscheckRun.__table__),
                [
                    {
                        "checked_at": now - timedelta(days=20 - index),
                        "products": count,
                        "consistent": count - 120,
                        "findings": 120,
                        "counts": {
                            "counts": {"missing_on_dcl": 40, "field_mismatch": 80},
                            "field_counts": {"certification_date": 50, "transport": 30},
                        },
                    }
                    for index in range(20)
                ],
            )
        rows = []
        for index in range(count):
            seen = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
            vid, pid = rng.randrange(1, 0xFFF0), rng.randrange(1, 0xFFFF)
            rows.append(
                {
                    "url": f"https://csa-iot.org/csa_product/product-{index}/",
                    "manufacturer": rng.choice(vendors),
                    "model": f"Model {index}",
                    "device_type": rng.choice(DEVICE_TYPES),
                    "certificate_id": (
                        f"CSA{index:05X}MAT{rng.randrange(10**5):05d}-{index % 25:02d}"
                    ),
                    "certification_date": first_day + timedelta(days=rng.randrange(days)),
                    "vid": f"0x{vid:04X}",
                    "vid_int": vid,
                    "pid": f"0x{pid:04X}",
                    "pid_int": pid,
                    "specification_version": rng.choice(SPECS),
                    "transport_interface": rng.choice(TRANSPORTS),
                    "application_categories": [],
                    "extra_fields": {},
                    "first_seen_at": seen,
                    "last_seen_at": now,
                    "last_fetched_at": now,
                    "first_seen_run_id": 1,
                    "last_seen_run_id": 200,
                    "last_fetched_run_id": 200,
                    "delisted_at": now - timedelta(days=rng.uniform(0, 60))
                    if index % 100 == 0
                    else None,
                }
            )
            if len(rows) == BATCH:
                with engine.begin() as conn:
                    conn.execute(insert(Product.__table__), rows)
                rows = []
        if rows:
            with engine.begin() as conn:
                conn.execute(insert(Product.__table__), rows)
        with engine.begin() as conn:
            conn.execute(
                insert(ProductChange.__table__),
                [
                    {
                        "product_url": f"https://csa-iot.org/csa_product/product-{rng.randrange(count)}/",
                        "field": rng.choice(["software_version", "description", "model"]),
                        "old_value": '"1.0"',
                        "new_value": '"1.1"',
                        "run_id": 200,
                        "changed_at": now - timedelta(days=rng.uniform(0, 60)),
                    }
                    for _ in range(5000)
                ],
            )
    finally:
        database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the database in this directory")
    options = parser.parse_args()
    directory = options.keep or Path(tempfile.mkdtemp(prefix="report-feed-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bench.sqlite3"
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    print(f"Building {options.products:,} products in {path} ...", file=sys.stderr)
    build(url, options.products)
    commands = {
        # the same database opened and one row read: the start-up every command pays
        "scrapy runs -n 1 (start-up baseline)": ["runs", "-n", "1"],
        "scrapy feed -o matter.atom": ["feed", "--force", "-o", str(directory / "matter.atom")],
        "scrapy feed -o matter.atom --include changed,delisted": [
            "feed", "--force", "-o", str(directory / "all.atom"), "--include", "changed,delisted",
        ],
        "scrapy report -o report.html": ["report", "--force", "-o", str(directory / "report.html")],
    }  # fmt: skip
    rows = []
    for name, arguments in commands.items():
        runs = []
        for _ in range(options.repeat):
            measured = run_measured(
                [
                    sys.executable,
                    "-m",
                    "scrapy",
                    *arguments,
                    "-s",
                    f"DATABASE_URL={url}",
                ],
                cwd=ROOT,
            )
            if measured.returncode != 0:
                raise SystemExit(f"{name} failed:\n{measured.output}")
            runs.append(measured)
        rows.append(
            [
                f"`{name}`",
                median([m.wall for m in runs]),
                median([m.cpu for m in runs]),
                median([m.peak_mib for m in runs]),
            ]
        )
    size = (directory / "report.html").stat().st_size / 1024
    print(machine())
    print(load_average())
    print(f"{options.products:,} products, median of {options.repeat} runs; report {size:,.0f} KiB")
    print(markdown_table(["command", "wall s", "CPU s", "peak MiB"], rows))


if __name__ == "__main__":
    main()
