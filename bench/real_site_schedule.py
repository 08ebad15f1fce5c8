"""The runs of ``bench/real_site_cost.py``: a user's schedule against one simulated catalogue.

A first full crawl, a daily and a weekly run on one database whose times are moved
back between runs, each run's requests counted by the site and classified by what
they were for; every database checked against the site's ground truth. The
method is in ``real_site_cost.py``'s docstring and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import ROOT, run_measured
from report import status_problem
from sqlalchemy import bindparam, create_engine, select, update

from matter_crawler import settings as project_settings
from matter_crawler.storage.models import CrawlRun, Product
from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite

#: The user's schedule of issue 19: what changes between the runs.
DAILY_NEW = 20
WEEKLY_NEW, WEEKLY_REMOVED = 100, 10
#: The real site's politeness ceiling, as settings.py has it (not copied).
REAL_SITE = "csa-iot.org"

#: The breakdown's columns: what each request of a run was for.
KINDS = ("robots.txt", "listing", "new products", "refresh", "confirmations", "other")


@dataclass
class CostRun:
    """One run of the schedule: what it cost and what it was for."""

    name: str
    how: str  # "measured" or "derived"
    wall: float | None
    requests: int  # the site's account
    scrapy_requests: int | None  # Scrapy's downloader/request_count
    by_kind: dict[str, int] = field(default_factory=dict)
    rerun_listing: int = 0  # listing pages read again at the end of a full run
    asked_again: int = 0  # requests for a URL the run had asked for already
    products_new: int = 0
    products_delisted: int = 0
    stored: int = 0  # listed products in the database after the run
    problems: list[str] = field(default_factory=list)


def slash(path: str) -> str:
    """A product path with its trailing slash (the site's and the database's canonical form)."""
    return path.rstrip("/") + "/"


def ceiling_settings() -> list[str]:
    """The real site's ceiling applied to the simulated host (127.0.0.1)."""
    ceiling = project_settings.ADAPTIVE_DOMAIN_LIMITS[REAL_SITE]
    return ["-s", "ADAPTIVE_DOMAIN_LIMITS=" + json.dumps({"127.0.0.1": ceiling})]


def crawl_command(site: SimulatedSite, database: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "scrapy", "crawl", "matter_products",
        "-s", f"CSA_BASE_URL={site.base_url}",
        "-s", f"DATABASE_URL=sqlite:///{database}",
        *extra,
    ]  # fmt: skip


def move_back(database: Path, days: float) -> None:
    """Every time the crawls wrote moves ``days`` back: the next run comes that much later.

    The refresh quota (``REFRESH_MAX_AGE_DAYS``) depends on the time since the
    previous run and on when each page was fetched; nothing else a run plans does.
    """
    shift = timedelta(days=days)
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as conn:
            for table, columns in (
                (CrawlRun.__table__, ("started_at", "finished_at")),
                (Product.__table__, ("first_seen_at", "last_seen_at", "last_fetched_at")),
            ):
                rows = conn.execute(select(table.c.id, *(table.c[name] for name in columns)))
                values = [
                    {"row_id": row[0]}
                    | {
                        name: value - shift if value else value
                        for name, value in zip(columns, row[1:], strict=True)
                    }
                    for row in rows
                ]
                if values:
                    statement = (
                        update(table)
                        .where(table.c.id == bindparam("row_id"))
                        .values({name: bindparam(name) for name in columns})
                    )
                    conn.execute(statement, values)
    finally:
        engine.dispose()


def stored_paths(database: Path) -> set[str]:
    """Paths of every product the database holds (delisted ones too)."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            table = Product.__table__
            return {slash(urlsplit(url).path) for (url,) in conn.execute(select(table.c.url))}
    finally:
        engine.dispose()


def last_run(database: Path) -> dict[str, Any]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            table = CrawlRun.__table__
            row = conn.execute(select(table).order_by(table.c.id.desc()).limit(1)).one()
            return row._asdict()
    finally:
        engine.dispose()


def check_database(database: Path, site: SimulatedSite) -> tuple[list[str], int, set[str]]:
    """Differences from the ground truth, the listed products, the delisted paths."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        listed = stored_records(engine)
        everything = stored_records(engine, include_delisted=True)
    finally:
        engine.dispose()
    listed_paths = {slash(record["url"]) for record in listed}
    delisted = {slash(record["url"]) for record in everything} - listed_paths
    return diff_records(site.truth(), listed, limit=3), len(listed), delisted


def crawl(
    name: str, site: SimulatedSite, database: Path, extra: list[str], timeout: float
) -> CostRun:
    """Run one crawl; count its requests at the site and classify them."""
    before = stored_paths(database) if database.exists() else set()
    site.reset_stats()
    measurement = run_measured(crawl_command(site, database, *extra), cwd=ROOT, timeout=timeout)
    stats = site.stats()
    log = site.requests_log()
    problems = status_problem(measurement)
    run = CostRun(name, "measured", measurement.wall, stats["requests_total"], None)
    if len(log) != stats["requests_total"]:
        problems.append(f"the site logged {len(log):,} of {stats['requests_total']:,} requests")
    if problems:
        run.problems = problems
        return run
    record = last_run(database)
    crawl_stats = record["stats"] or {}
    run.scrapy_requests = crawl_stats.get("downloader/request_count")
    if run.scrapy_requests != run.requests:
        problems.append(f"Scrapy counted {run.scrapy_requests} requests, the site {run.requests:,}")
        if not run.requests:  # a crawl that ended without a request says why in its log
            warnings = [
                line
                for line in measurement.output.splitlines()
                if "WARNING" in line or "ERROR" in line
            ]
            problems.append(
                "its log: " + " | ".join((warnings or measurement.output.splitlines())[-3:])[-600:]
            )
    counts = dict.fromkeys(KINDS, 0)
    stored_details = 0
    asked = Counter(entry["path"] for entry in log)
    run.asked_again = sum(times - 1 for times in asked.values())
    for path, times in asked.items():
        if times > 1:
            print(f"    {name}: {path} asked {times} times", file=sys.stderr)
    for entry in log:
        path = urlsplit(entry["path"]).path
        if path == "/robots.txt":
            counts["robots.txt"] += 1
        elif entry["kind"] == "list":
            counts["listing"] += 1
        elif entry["kind"] == "detail" and slash(path) not in before:
            counts["new products"] += 1
        elif entry["kind"] == "detail":
            stored_details += 1
        else:
            counts["other"] += 1
    # a stored product's page is asked for its age, to confirm it left, or for a changed card
    counts["refresh"] = crawl_stats.get("refresh/pages", 0)
    counts["confirmations"] = crawl_stats.get("delist/confirm_requests", 0)
    counts["other"] += stored_details - counts["refresh"] - counts["confirmations"]
    run.by_kind = counts
    run.rerun_listing = crawl_stats.get("delist/rewalk_pages_scheduled", 0) + crawl_stats.get(
        "delist/locate_pages_scheduled", 0
    )
    run.products_new = record["products_new"] or 0
    run.products_delisted = record["products_delisted"] or 0
    differences, run.stored, _ = check_database(database, site)
    if differences:
        problems.append(f"{len(differences)}+ differences from the ground truth: {differences[0]}")
    run.problems = problems
    return run


def weekly_run(
    suffix: str,
    site: SimulatedSite,
    database: Path,
    extra: list[str],
    removed: set[str],
    timeout: float,
) -> CostRun:
    """The weekly full run; the products it delisted must be the ones the site removed."""
    name = f"weekly: {WEEKLY_NEW} new, {WEEKLY_REMOVED} removed, -a mode=full{suffix}"
    run = crawl(name, site, database, [*extra, "-a", "mode=full"], timeout)
    if not run.problems:
        _, _, delisted = check_database(database, site)
        if delisted != removed:
            run.problems.append(
                f"delisted {len(delisted)} products, the site removed {len(removed)}: "
                f"{sorted(delisted ^ removed)[:3]}"
            )
    return run


def real_site_cost(
    products: int,
    latency_ms: int,
    seed: int,
    scratch: Path,
    *,
    polite_first_crawl: bool = False,
    counts_only: bool = False,
    timeout: float = 4 * 3600,
) -> tuple[list[CostRun], dict[str, Any]]:
    """The schedule's runs against one simulated catalogue; the figures of each.

    ``counts_only``: every run at profile ``fast`` without the ceiling, for a quick
    look at the request counts (the wall times then say nothing of the real site).
    """
    polite = ["-s", "CRAWL_PROFILE=polite", *ceiling_settings()]
    if counts_only:
        polite = ["-s", "CRAWL_PROFILE=fast"]
    runs: list[CostRun] = []
    log_size = max(200_000, 3 * products)
    with SimulatedSite(
        products=products, seed=seed, latency_ms=latency_ms, request_log_size=log_size
    ) as site:
        database = scratch / "real-site.sqlite3"
        first_extra = polite if polite_first_crawl else ["-s", "CRAWL_PROFILE=fast"]
        first = crawl("first full crawl", site, database, first_extra, timeout)
        if not polite_first_crawl:
            first.how = "requests measured at profile fast; wall derived"
        runs.append(first)
        print(f"  first crawl: {first.requests:,} requests", file=sys.stderr, flush=True)

        move_back(database, 1)
        site.mutate(add=DAILY_NEW)
        without_refresh = scratch / "real-site-no-refresh.sqlite3"
        shutil.copyfile(database, without_refresh)
        daily = crawl(f"daily: {DAILY_NEW} new", site, database, polite, timeout)
        runs.append(daily)
        print(f"  daily: {daily.requests:,} requests", file=sys.stderr, flush=True)
        daily_off = crawl(
            f"daily: {DAILY_NEW} new, REFRESH_MAX_AGE_DAYS=0",
            site,
            without_refresh,
            [*polite, "-s", "REFRESH_MAX_AGE_DAYS=0"],
            timeout,
        )
        runs.append(daily_off)
        print(f"  daily, no refresh: {daily_off.requests:,} requests", file=sys.stderr, flush=True)

        move_back(database, 7)
        mutation = site.mutate(add=WEEKLY_NEW, remove=WEEKLY_REMOVED)
        removed = {slash(path) for path in mutation["removed"]}
        shutil.copyfile(database, without_refresh)
        weekly = weekly_run("", site, database, polite, removed, timeout)
        runs.append(weekly)
        print(f"  weekly: {weekly.requests:,} requests", file=sys.stderr, flush=True)
        weekly_off = weekly_run(
            ", REFRESH_MAX_AGE_DAYS=0",
            site,
            without_refresh,
            [*polite, "-s", "REFRESH_MAX_AGE_DAYS=0"],
            removed,
            timeout,
        )
        runs.append(weekly_off)
        print(
            f"  weekly, no refresh: {weekly_off.requests:,} requests", file=sys.stderr, flush=True
        )

    # the pace at the ceiling: the weekly run's wall time per request (its start-up included)
    pace = weekly.wall / weekly.requests if weekly.wall and not weekly.problems else None
    if not polite_first_crawl:
        first.wall = first.requests * pace if pace else None
    facts = {"pace_s_per_request": pace, "products": products, "latency_ms": latency_ms}
    return runs, facts
