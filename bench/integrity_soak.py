"""Soak test of the dataset's integrity: does the database end equal to the site, seed after seed?

For each seed, against a fresh simulated catalogue:

1. a full crawl into an empty database;
2. a second full crawl during which the catalogue changes at random moments (products
   added, removed and changed, each mutation triggered by the site when it serves a
   random listing page: ``POST /__sim__/mutate`` with ``after_list_page``), with 5% of
   page requests failing transiently (4% 5xx, 1% connection resets);
3. one incremental crawl, with the same transient errors.

Then the database is compared with the site's ground truth (``/__sim__/truth`` for the
listed products, ``/__sim__/removed`` for the removed ones), and the table shows per
seed:

- ``false delisted``: products the site lists that the database marks delisted;
- ``missed``: products the site lists that the database does not hold;
- ``wrong``: fields that differ from the site, except those below;
- ``stale``: fields of products whose page changed (a detail-only change, the card
  unchanged) after the crawl last fetched it: no crawl with ``refresh=changed`` sees
  these at once; ``REFRESH_MAX_AGE_DAYS`` reads every page again within its period;
- ``removed``: products removed while stored; ``delisted`` of them; ``pending``: those
  the second crawl saw listed before they left (the next full run confirms them);
  ``undelisted``: removed, not seen, and still not delisted (a miss of the delisting);
- ``confirm``: confirmation requests (product pages) of the second crawl, against the
  target ``limit`` = removed + 1% of the catalogue; ``located``: listing pages it read
  where several products it missed should be; ``still listed``: products it missed that
  the site still lists (the listing moved under the walk), found on those pages or by
  their own; ``re-walk``: listing pages read again from page 1 at its end.

Targets over all seeds: 0 false delistings, 0 missed, 0 wrong, 0 undelisted, and
confirmation requests at most removed + 1% in every seed. The exit status is 1 when a
target is missed.

The defaults (20 seeds, 960 products, 5 ms latency, the ``fast`` profile) cost about
25 CPU seconds a seed, three crawl processes one after the other: about 9 minutes on
an idle 2-core machine (21 minutes measured on a shared one, load average 4-8);
``--seeds 5`` for a quicker look.

    python bench/integrity_soak.py [--seeds 20] [--first-seed 1] [--products 960]
                                   [--latency-ms 5] [--mutations 6] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ROOT, load_average, machine, markdown_table, url_path
from sqlalchemy import create_engine, select

from matter_crawler.storage.models import CrawlRun, Product
from matter_crawler.verify import TRUTH_FIELDS, stored_records
from sitesim.process import SimulatedSite

sys.path.insert(0, str(ROOT))
from tests.helpers import run_crawl

TRANSIENT = {"error_rate": 0.04, "reset_rate": 0.01}


@dataclass
class SeedResult:
    seed: int
    false_delisted: int = 0
    missed: int = 0
    wrong: int = 0
    stale: int = 0
    removed: int = 0
    delisted: int = 0
    pending: int = 0
    undelisted: int = 0
    confirm: int = 0
    located: int = 0
    still_listed: int = 0
    rewalk: int = 0
    confirm_limit: float = 0.0
    requests: int = 0
    seconds: float = 0.0
    outcome: str = ""
    problems: list[str] = field(default_factory=list)

    def row(self) -> list[object]:
        return [
            self.seed,
            self.false_delisted,
            self.missed,
            self.wrong,
            self.stale,
            self.removed,
            self.delisted,
            self.pending,
            self.undelisted,
            self.confirm,
            f"{self.confirm_limit:.1f}",
            self.located,
            self.still_listed,
            self.rewalk,
            self.requests,
            self.outcome,
            f"{self.seconds:.1f}",
        ]


HEADERS = [
    "seed",
    "false delisted",
    "missed",
    "wrong",
    "stale",
    "removed",
    "delisted",
    "pending",
    "undelisted",
    "confirm",
    "limit",
    "located",
    "still listed",
    "re-walk",
    "requests (run 2)",
    "delisting",
    "run 2 s",
]


def random_mutations(rng: random.Random, pages: int, count: int) -> list[dict[str, int]]:
    """``count`` mutations at random listing pages of the second crawl's walk."""
    mutations = []
    for _ in range(count):
        kind = rng.choice(("add", "remove", "change"))
        size = {"add": rng.randint(1, 8), "remove": rng.randint(1, 3), "change": rng.randint(1, 8)}
        # pages 2 .. pages-2: every one exists whatever the other mutations do to the count
        mutations.append({kind: size[kind], "after_list_page": rng.randint(2, max(2, pages - 2))})
    return mutations


def database_rows(database_url: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict]]:
    """Truth-shaped records of every stored product, and their bookkeeping columns."""
    engine = create_engine(database_url)
    try:
        records = {r["url"]: r for r in stored_records(engine, include_delisted=True)}
        table = Product.__table__
        columns = (table.c.url, table.c.delisted_at, table.c.last_fetched_at)
        with engine.connect() as conn:
            extra = {
                url_path(row.url): {
                    "delisted": row.delisted_at is not None,
                    "fetched": row.last_fetched_at.timestamp(),
                    "seen_run": None,
                }
                for row in conn.execute(select(*columns))
            }
            seen = select(table.c.url, table.c.last_seen_run_id)
            for row in conn.execute(seen):
                extra[url_path(row.url)]["seen_run"] = row.last_seen_run_id
            runs = CrawlRun.__table__
            run_rows = {
                row.id: row._asdict() for row in conn.execute(select(runs).order_by(runs.c.id))
            }
    finally:
        engine.dispose()
    return records, {"products": extra, "runs": run_rows}


def soak_one(seed: int, options: argparse.Namespace, directory: Path) -> SeedResult:
    result = SeedResult(seed)
    rng = random.Random(seed)
    database_url = f"sqlite:///{directory}/seed-{seed}.sqlite3"
    products = options.products
    with SimulatedSite(products=products, seed=seed, latency_ms=options.latency_ms) as site:
        run_crawl(site.base_url, database_url, timeout=600).check()
        pages = -(-products // 12)
        for mutation in random_mutations(rng, pages, options.mutations):
            site.mutate(**mutation)
        site.set_faults(**TRANSIENT)
        started = time.monotonic()
        run_crawl(site.base_url, database_url, args={"mode": "full"}, timeout=600).check()
        result.seconds = time.monotonic() - started
        run_crawl(site.base_url, database_url, args={"mode": "incremental"}, timeout=600).check()
        site.set_faults(error_rate=0, reset_rate=0)

        truth = {record["url"]: record for record in site.truth()}
        removed = {record["url"]: record for record in site.removed()}
        applied = site.mutations()["applied"]
        pending = site.mutations()["pending"]
    if pending:
        result.problems.append(f"{len(pending)} mutations never triggered")

    stored, facts = database_rows(database_url)
    rows = facts["products"]
    runs = facts["runs"]
    second = runs[sorted(runs)[1]]
    # when each product's page last changed on the site
    changed_at: dict[str, float] = {}
    for mutation in applied:
        for path in mutation.get("changed", {}):
            changed_at[path] = max(changed_at.get(path, 0.0), mutation["applied_at"])

    for path, record in truth.items():
        row = rows.get(path)
        if row is None:
            result.missed += 1
            result.problems.append(f"missed {path}")
            continue
        if row["delisted"]:
            result.false_delisted += 1
            result.problems.append(f"false delisting {path}")
            continue
        for name in TRUTH_FIELDS:
            if stored[path][name] == record[name]:
                continue
            if changed_at.get(path, 0.0) > row["fetched"]:
                result.stale += 1
            else:
                result.wrong += 1
                result.problems.append(f"wrong {path} {name}")
    for path in removed:
        row = rows.get(path)
        if row is None:
            continue  # added and removed before any crawl stored it
        result.removed += 1
        if row["delisted"]:
            result.delisted += 1
        elif row["seen_run"] == second["id"]:
            result.pending += 1  # seen listed by the second crawl before it left
        else:
            result.undelisted += 1
            result.problems.append(f"not delisted {path}")

    stats = second["stats"]
    result.confirm = stats.get("delist/confirm_requests", 0)
    result.located = stats.get("delist/locate_pages", 0)
    result.still_listed = stats.get("delist/still_listed", 0)
    result.rewalk = stats.get("delist/rewalk_pages", 0)
    result.requests = second["requests"]
    result.outcome = second["delist_outcome"] or ""
    removed_in_run = sum(len(m.get("removed", ())) for m in applied)
    result.confirm_limit = removed_in_run + 0.01 * products
    if result.confirm > result.confirm_limit:
        result.problems.append(f"{result.confirm} confirmations > {result.confirm_limit:.1f}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--products", type=int, default=960, help="catalogue size (default 960)")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="site latency (default 5)")
    parser.add_argument(
        "--mutations", type=int, default=6, help="mutations during the second crawl (default 6)"
    )
    parser.add_argument("--keep", type=Path, help="keep the databases in this directory")
    options = parser.parse_args()

    print(f"Machine: {machine()}; load {load_average()}")
    print(
        f"{options.seeds} seeds x {options.products} products, latency {options.latency_ms:g} ms, "
        f"{options.mutations} mutations during the second full crawl, transient errors "
        f"{TRANSIENT}\n",
        flush=True,
    )
    results: list[SeedResult] = []
    with tempfile.TemporaryDirectory(prefix="integrity-soak-") as scratch:
        directory = options.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for seed in range(options.first_seed, options.first_seed + options.seeds):
            result = soak_one(seed, options, directory)
            results.append(result)
            print(
                f"seed {seed}: {result.seconds:.1f} s, "
                + (", ".join(result.problems[:5]) if result.problems else "no problem"),
                flush=True,
            )
        elapsed = time.monotonic() - started

    totals = SeedResult(seed=0)
    for result in results:
        for name in (
            "false_delisted", "missed", "wrong", "stale", "removed", "delisted", "pending",
            "undelisted", "confirm", "located", "still_listed", "rewalk", "requests",
            "confirm_limit",
        ):  # fmt: skip
            setattr(totals, name, getattr(totals, name) + getattr(result, name))
    rows = [result.row() for result in results]
    total_row = totals.row()
    total_row[0], total_row[-2], total_row[-1] = "total", "", f"{elapsed:.0f}"
    print()
    print(markdown_table(HEADERS, [*rows, total_row]))
    met = {
        "0 false delistings": totals.false_delisted == 0,
        "0 missed": totals.missed == 0,
        "0 wrong fields": totals.wrong == 0,
        "0 removed products left undelisted": totals.undelisted == 0,
        "confirmations <= removed + 1% in every seed": all(
            r.confirm <= r.confirm_limit for r in results
        ),
    }
    print()
    for target, ok in met.items():
        print(f"{'met   ' if ok else 'MISSED'} {target}")
    print(
        f"\nExtra requests of the second crawls: {totals.rewalk} listing pages read again from "
        f"page 1, {totals.located} listing pages read to find missed products, "
        f"{totals.confirm} confirmation requests; for {totals.removed} removed products "
        f"and {totals.still_listed} products the walks missed but the site still lists"
    )
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
