"""The ``dcl`` spider against the simulated ledger (``--dcl``), into a real SQLite file.

The expected records are the site's own (``GET /__sim__/dcl``: every record as its
paths serve it), turned into columns by this module's own mapping of the contract's
field names, not by the crawler's ``matter_crawler.dcl.records``: the site and the
crawler share no code, and neither do the truth and the thing it checks.
"""

from __future__ import annotations

import json
import math
import re
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select

from matter_crawler.core.session import RUNNING_MARKER
from matter_crawler.storage.models import Base, DeadLetter

from ..helpers import (
    crawl_runs,
    query,
    retry_after_violations,
    run_crawl,
    start_crawl,
    stop_process,
    wait_for,
)

SPIDER = "dcl"
TABLES = {
    "vendor": "dcl_vendors",
    "model": "dcl_models",
    "model_version": "dcl_model_versions",
    "compliance": "dcl_compliance",
    "model_status": "dcl_model_statuses",
}
KEYS = {
    "vendor": ("vid",),
    "model": ("vid", "pid"),
    "model_version": ("vid", "pid", "software_version"),
    "compliance": ("vid", "pid", "software_version", "certification_type"),
    "model_status": ("list", "vid", "pid", "software_version", "certification_type"),
}
#: the contract's names that snake_case does not give the column of
RENAMED = {
    "vendorID": "vid",
    "cDCertificateId": "cd_certificate_id",
    "cDVersionNumber": "cd_version_number",
    "softwareVersionCertificationStatus": "status",
}
#: uint64 fields: JSON strings on the wire, numbers in the table
UINT64 = {"otaFileSize"}
#: when a row was first and last read: not the ledger's
TRACKING = {"first_seen_at", "last_seen_at", "first_seen_run_id", "last_seen_run_id"}
LIST_PATHS = {
    "vendor": "/dcl/vendorinfo/vendors",
    "model": "/dcl/model/models",
    "compliance": "/dcl/compliance/compliance-info",
    "certified": "/dcl/compliance/certified-models",
    "provisional": "/dcl/compliance/provisional-models",
    "revoked": "/dcl/compliance/revoked-models",
}
# Slow enough to stop at a chosen point: 4 at a time.
PACED = {
    "CONCURRENT_REQUESTS_PER_DOMAIN": 4,
    "ADAPTIVE_CONCURRENCY_ENABLED": False,
    "STORE_BATCH_SIZE": 5000,
    "STORE_FLUSH_INTERVAL": 0,
}


def column(field: str) -> str:
    if field in RENAMED:
        return RENAMED[field]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", field).lower()


def expected_rows(truth: dict[str, list[dict[str, Any]]]) -> dict[str, dict[tuple, dict]]:
    """The truth's records as table rows, by kind and key."""
    rows: dict[str, dict[tuple, dict]] = {}
    for kind, records in truth.items():
        by_key = rows[kind] = {}
        for record in records:
            row = {
                column(name): int(value) if name in UINT64 else value
                for name, value in record.items()
            }
            by_key[tuple(row[c] for c in KEYS[kind])] = row
    return rows


def stored_rows(database_url: str) -> dict[str, dict[tuple, dict]]:
    engine = create_engine(database_url)
    try:
        rows: dict[str, dict[tuple, dict]] = {}
        with engine.connect() as conn:
            for kind, name in TABLES.items():
                table = Base.metadata.tables[name]
                by_key = rows[kind] = {}
                for row in conn.execute(select(table)):
                    values = {k: v for k, v in row._asdict().items() if k not in TRACKING}
                    by_key[tuple(values[c] for c in KEYS[kind])] = values
        return rows
    finally:
        engine.dispose()


def differences(
    database_url: str, truth: dict[str, list[dict]], *, accounted: dict[str, set] | None = None
) -> list[str]:
    """What the tables hold that the ledger does not, and the other way round.

    ``accounted``: keys by kind that may be missing (their page was dead-lettered).
    """
    expected, stored = expected_rows(truth), stored_rows(database_url)
    found = []
    for kind, rows in expected.items():
        have = stored[kind]
        for key, row in rows.items():
            if key not in have:
                if key not in (accounted or {}).get(kind, set()):
                    found.append(f"{kind} {key}: missing")
                continue
            diff = {
                name: (value, have[key].get(name, "<no column>"))
                for name, value in row.items()
                if have[key].get(name, "<no column>") != value
            }
            extra = set(have[key]) - set(row)
            if diff or extra:
                found.append(f"{kind} {key}: {diff} {sorted(extra)}")
        found += [f"{kind} {key}: not on the ledger" for key in set(have) - set(rows)]
    return found


def list_lengths(truth: dict[str, list[dict]]) -> dict[str, int]:
    lengths = {kind: len(truth[kind]) for kind in ("vendor", "model", "compliance")}
    for name in ("certified", "provisional", "revoked"):
        lengths[name] = sum(1 for r in truth["model_status"] if r["list"] == name)
    return lengths


def walk_requests(truth: dict[str, list[dict]], limit: int) -> int:
    """The fewest requests of a walk: every list's pages, one per model, one per version."""
    pages = sum(max(1, math.ceil(n / limit)) for n in list_lengths(truth).values())
    return pages + len(truth["model"]) + len(truth["model_version"])


def dcl_requests(site, since: float | None = None) -> Counter:
    return Counter(e["path"] for e in site.requests_log(since=since) if e["kind"] == "dcl")


def dcl_settings(site, **settings: Any) -> dict[str, Any]:
    return {"DCL_BASE_URL": site.base_url, **settings}


def snapshots(events: Path) -> list[dict]:
    lines = map(json.loads, events.read_text().splitlines())
    return [e for e in lines if e["type"] == "snapshot"]


def test_a_full_walk_stores_every_record_field_by_field(simulated_site, database_url, tmp_path):
    site = simulated_site(products=150, seed=21, dcl=True)
    truth = site.dcl_truth()
    events = tmp_path / "events.jsonl"
    result = run_crawl(
        site.base_url,
        database_url,
        spider=SPIDER,
        settings=dcl_settings(site, PROGRESS_EVENTS_FILE=str(events)),
    ).check()
    assert differences(database_url, truth) == []
    assert all(truth.values()), "every kind of record is on the ledger"
    (run,) = crawl_runs(database_url)
    assert (run["spider"], run["status"], run["stage"]) == ("dcl", "finished", "done"), (
        result.output[-3000:]
    )
    assert query(database_url, "select count(*) from dead_letters") == [(0,)]
    stats = run["stats"]
    assert stats["dcl/records/vendor"] == len(truth["vendor"])
    assert stats["dcl/records/model_version"] == len(truth["model_version"])
    assert stats["dcl/requests"] == walk_requests(truth, 1000)
    assert run["pages_planned"] == run["pages_crawled"] == walk_requests(truth, 1000)
    # the last snapshot: every stage's pages done, as many as planned
    final = snapshots(events)[-1]
    assert final["stage"] == "done"
    assert all(s["done"] == s["total"] and s["failed"] == 0 for s in final["stages"].values())
    assert final["stages"]["versions"]["total"] == len(truth["model"])
    assert final["stages"]["model_versions"]["total"] == len(truth["model_version"])


def test_pagination_takes_the_fewest_requests(simulated_site, database_url, tmp_path):
    site = simulated_site(products=120, seed=22, dcl=True)
    truth = site.dcl_truth()
    events = tmp_path / "events.jsonl"
    settings = dcl_settings(site, DCL_PAGE_LIMIT=7, PROGRESS_EVENTS_FILE=str(events))
    run_crawl(site.base_url, database_url, spider=SPIDER, settings=settings).check()
    assert differences(database_url, truth) == []
    expected = walk_requests(truth, 7)
    assert expected > 100  # many pages per list: the keys carry the walk
    assert site.stats()["by_kind"]["dcl"] == expected
    requested = dcl_requests(site)
    assert [path for path, n in requested.items() if n > 1] == []
    # every list page after the first asked by key, none by offset
    assert not [p for p in requested if "pagination.offset" in p]
    pages = {
        kind: sum(1 for p in requested if p.startswith(path + "?"))
        for kind, path in LIST_PATHS.items()
    }
    assert pages == {k: max(1, math.ceil(n / 7)) for k, n in list_lengths(truth).items()}
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["stage"]) == ("finished", "done")
    assert run["stats"]["dcl/requests"] == expected
    # progress knew each list's pages from its first answer's count
    totals = [s["stages"]["vendors"]["total"] for s in snapshots(events) if s["stages"]]
    assert set(totals) <= {None, max(1, math.ceil(len(truth["vendor"]) / 7))}


def stop_at(site, requests: int, crawl) -> None:
    wait_for(
        lambda: site.stats()["by_kind"].get("dcl", 0) >= requests or crawl.poll() is not None,
        timeout=120,
        interval=0.02,
        message=f"{requests} ledger requests",
    )
    assert crawl.poll() is None, "the crawl ended before the stop point"


@pytest.mark.slow
# at once (before Scrapy took every list's first page) and mid-walk
@pytest.mark.parametrize("share", [0.005, 0.4])
def test_ctrl_c_then_resume_repeats_nothing(simulated_site, tmp_path, share):
    site = simulated_site(products=200, seed=23, dcl=True, latency_ms=25)
    truth = site.dcl_truth()
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    jobdir = tmp_path / "job"
    settings = dcl_settings(site, DCL_PAGE_LIMIT=7, JOBDIR=str(jobdir), **PACED)
    expected = walk_requests(truth, 7)
    crawl = start_crawl(
        site.base_url, database_url, spider=SPIDER, settings=settings,
        log_path=tmp_path / "first.log",
    )  # fmt: skip
    try:
        stop_at(site, expected * share, crawl)
        crawl.send_signal(signal.SIGINT)
        crawl.wait(timeout=60)
    finally:
        stop_process(crawl, signal.SIGKILL)
    first_log = (tmp_path / "first.log").read_text()
    assert crawl.returncode == 0, first_log[-3000:]
    (run,) = crawl_runs(database_url)
    assert run["status"] == "stopped"
    assert run["stage"] != "done"
    assert not (jobdir / RUNNING_MARKER).exists()
    assert differences(database_url, truth) != []  # the walk was cut short

    events = tmp_path / "events.jsonl"
    resumed = {**settings, "PROGRESS_EVENTS_FILE": str(events)}
    result = run_crawl(site.base_url, database_url, spider=SPIDER, settings=resumed).check()
    assert "Resuming the DCL walk" in result.output
    assert differences(database_url, truth) == []
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["sessions"], run["stage"]) == ("finished", 2, "done")
    # every page asked for once in all, across the two processes
    requested = dcl_requests(site)
    assert [path for path, n in requested.items() if n > 1] == []
    assert sum(requested.values()) == expected
    assert run["stats"]["dcl/requests"] == expected  # the walk's counts went on
    final = snapshots(events)[-1]["stages"]
    assert all(s["done"] == s["total"] for s in final.values()), final


@pytest.mark.slow
def test_hard_kill_then_rerun_loses_nothing(simulated_site, tmp_path):
    site = simulated_site(products=200, seed=24, dcl=True, latency_ms=25)
    truth = site.dcl_truth()
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    jobdir = tmp_path / "job"
    settings = dcl_settings(
        site, DCL_PAGE_LIMIT=7, JOBDIR=str(jobdir), **{**PACED, "STORE_BATCH_SIZE": 50}
    )
    expected = walk_requests(truth, 7)
    crawl = start_crawl(
        site.base_url, database_url, spider=SPIDER, settings=settings,
        log_path=tmp_path / "first.log",
    )  # fmt: skip
    try:
        stop_at(site, expected * 0.6, crawl)
        crawl.send_signal(signal.SIGKILL)
        crawl.wait(timeout=30)
    finally:
        stop_process(crawl, signal.SIGKILL)
    assert (jobdir / RUNNING_MARKER).exists()
    stored_before = sum(
        n for ((n,),) in [query(database_url, f"select count(*) from {t}") for t in TABLES.values()]
    )
    assert stored_before > 0, "the kill should come after some records were stored"

    result = run_crawl(site.base_url, database_url, spider=SPIDER, settings=settings).check()
    assert "did not stop cleanly" in result.output
    assert differences(database_url, truth) == []  # keys are unique: nothing twice
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["sessions"], run["stage"]) == ("finished", 2, "done")
    # the walk started again: its counts are the second walk's
    assert run["stats"]["dcl/requests"] == expected
    assert query(database_url, "select count(*) from dcl_changes") == [(0,)]


def fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def accounted_for(site, truth: dict[str, list[dict]], letters: Iterable[str]) -> dict[str, set]:
    """The records a fault run may miss: those of its dead-lettered pages (asked again now,
    with the faults off), and the versions of the models it never got."""
    accounted: dict[str, set] = {kind: set() for kind in TABLES}
    rows = expected_rows(truth)
    missing_models: set[tuple] = set()
    for url in letters:
        path = url.removeprefix(site.base_url)
        answer = fetch_json(url.partition("#")[0]) if "?" in path else None
        for kind, list_path in LIST_PATHS.items():
            if answer is not None and path.startswith(list_path + "?"):
                (entries,) = [v for k, v in answer.items() if k != "pagination"]
                table_kind = kind if kind in ("vendor", "model", "compliance") else "model_status"
                for entry in entries:
                    row = {column(k): v for k, v in entry.items()}
                    if table_kind == "model_status":
                        row["list"] = kind
                    key = tuple(row[c] for c in KEYS[table_kind])
                    accounted[table_kind].add(key)
                    if table_kind == "model":
                        missing_models.add(key)
        parts = path.split("/")
        if path.startswith("/dcl/model/versions/") and len(parts) == 6:  # a model's versions
            missing_models.add((int(parts[4]), int(parts[5])))
        if path.startswith("/dcl/model/versions/") and len(parts) == 7:  # a version record
            accounted["model_version"].add((int(parts[4]), int(parts[5]), int(parts[6])))
    accounted["model_version"] |= {
        key for key in rows["model_version"] if key[:2] in missing_models
    }
    return accounted


# Server errors get 2 attempts, so that the fault run dead-letters pages (one request in
# 25 answers 5xx twice); hangs outlast the download timeout.
FAULTY = {
    "DOWNLOAD_TIMEOUT": 1,
    "RETRY_POLICIES": {
        "transient": {"attempts": 3, "base": 0.2, "cap": 1},
        "server": {"attempts": 2, "base": 0.2, "cap": 1},
        "throttled": {"base": 0.5, "cap": 3},
    },
    "CIRCUIT_FAILURE_THRESHOLD": 30,
    "CIRCUIT_COOLDOWN": 1,
}


@pytest.mark.slow
def test_a_fault_run_stores_or_dead_letters_every_record(simulated_site, database_url, tmp_path):
    site = simulated_site(
        products=150,
        seed=25,
        dcl=True,
        only="dcl",
        latency_ms=5,
        error_rate=0.2,
        timeout_rate=0.03,
        hang_ms=3000,
        throttle_rate=0.03,
        retry_after=1,
    )
    truth = site.dcl_truth()
    started = time.time()
    settings = dcl_settings(site, DCL_PAGE_LIMIT=7, **FAULTY)
    crawl = start_crawl(
        site.base_url, database_url, spider=SPIDER, settings=settings,
        log_path=tmp_path / "crawl.log",
    )  # fmt: skip
    try:
        stop_at(site, 60, crawl)
        site.set_faults(throttle_rate=0.6)  # a burst of 429s with Retry-After
        time.sleep(2)
        site.set_faults(throttle_rate=0.03)
        crawl.wait(timeout=300)
    finally:
        stop_process(crawl)
    output = (tmp_path / "crawl.log").read_text()
    assert crawl.returncode == 0, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    log = site.requests_log(since=started)
    (run,) = crawl_runs(database_url)
    stats = run["stats"]
    for failure_class in ("server", "transient", "throttled"):
        assert stats.get(f"retry/class/{failure_class}", 0) > 0, failure_class
    assert stats.get("retry/retry_after_honoured", 0) > 0
    assert retry_after_violations(log) == []

    letters = [url for (url,) in query(database_url, "select url from dead_letters")]
    assert letters, "the fault run dead-lettered nothing: it would prove nothing"
    # every record stored exactly, or its page dead-lettered; nothing else stored
    assert differences(database_url, truth, accounted=accounted_for(site, truth, letters)) == []
    # a walk with failed pages is not done, and says where it has holes
    assert (run["status"], run["dead_letters"]) == ("finished", len(letters))
    assert run["stage"] in ("vendors", "models", "compliance", "certified", "provisional",
                            "revoked", "versions", "model_versions")  # fmt: skip
    assert sum(v for k, v in stats.items() if k.startswith("dcl/failed/")) == len(letters)

    # with the faults off, a rerun completes everything
    site.set_faults(error_rate=0, timeout_rate=0, throttle_rate=0)
    run_crawl(site.base_url, database_url, spider=SPIDER, settings=settings).check()
    assert differences(database_url, truth) == []
    assert crawl_runs(database_url)[-1]["stage"] == "done"
    # the letters of pages read again are resolved, and the rest by the complete walk
    # (a page asked by offset after a failed one is not asked again by a walk without
    # failures)
    assert query(database_url, "select url from dead_letters where resolved_at is null") == []


def test_a_complete_walk_resolves_the_ledger_s_older_letters(simulated_site, database_url):
    site = simulated_site(products=40, seed=26, dcl=True)
    settings = dcl_settings(site, DCL_PAGE_LIMIT=7)
    run_crawl(site.base_url, database_url, spider=SPIDER, settings=settings).check()
    # letters no walk without failures asks for again: a page by offset, the versions of
    # a model since gone; and letters that are not this ledger's
    superseded = [
        (f"{site.base_url}/dcl/model/models?pagination.offset=14&pagination.limit=7", "models"),
        (f"{site.base_url}/dcl/model/versions/65521/65535", "versions"),
    ]
    others = [
        (f"{site.base_url}/csa_product/gone/", "detail"),
        ("https://on.dcl.csa-iot.org/dcl/model/models?pagination.offset=14", "models"),
    ]
    engine = create_engine(database_url)
    failed = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(DeadLetter),
            [
                {"url": url, "stage": stage, "failure_class": "server", "last_error": "HTTP 503",
                 "attempts": 3, "first_failed_at": failed, "last_failed_at": failed}
                for url, stage in superseded + others
            ],
        )  # fmt: skip
    engine.dispose()

    result = run_crawl(site.base_url, database_url, spider=SPIDER, settings=settings).check()
    run = crawl_runs(database_url)[-1]
    assert (run["stage"], run["dead_letters_resolved"]) == ("done", 2)
    assert "resolving 2 dead letters of earlier walks" in result.output
    assert query(
        database_url, "select url, resolved_run_id from dead_letters order by url"
    ) == sorted([(url, run["id"]) for url, _ in superseded] + [(url, None) for url, _ in others])
    # asked for by no request
    requested = dcl_requests(site)
    assert not [url for url, _ in superseded if url.removeprefix(site.base_url) in requested]
