"""Operations on a database a crawl is writing to: scrapy backup, scrapy prune, JSON logs.

Each command runs as ``python -m scrapy <command>`` from the project root, beside a
real crawl of the simulated site (a child process, slowed by the site's latency so
that it is still writing when the command runs). The prune test runs on SQLite and
on PostgreSQL; the backup is SQLite's (PostgreSQL has pg_dump).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update

from matter_crawler.storage.models import CrawlRun, DeadLetter, ProductChange

from ..helpers import (
    PROJECT_ROOT,
    crawl_command,
    crawl_runs,
    database_differences,
    query,
    run_crawl,
    sqlite_url,
    start_crawl,
    stop_process,
    wait_for,
)

ONE_ATTEMPT = {"RETRY_POLICIES": {"server": {"attempts": 1}}, "REFRESH_MAX_AGE_DAYS": 0}
FULL_REFRESH = {"mode": "full", "refresh": "all"}
#: few requests at a time, so a crawl of a site with latency writes for a while
SLOW = {"CONCURRENT_REQUESTS_PER_DOMAIN": 2, "ADAPTIVE_CONCURRENCY_ENABLED": False}
AGE = timedelta(days=200)


def scrapy(
    database_url: str, *args: str, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "scrapy", *args, "-s", f"DATABASE_URL={database_url}"]
    for name, value in (settings or {}).items():
        command += ["-s", f"{name}={value}"]
    return subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def holding_run(database_url: str, crawl: subprocess.Popen[bytes]) -> int:
    """Wait until ``crawl`` holds the writer lock with its run id; the run id."""

    def held() -> int | None:
        assert crawl.poll() is None, "the crawl ended early"
        rows = query(database_url, "select pid, run_id from crawl_locks")
        return rows[0][1] if rows and rows[0][0] == crawl.pid and rows[0][1] else None

    return wait_for(held, timeout=120, message="the crawl to hold the database lock")


def products_written(database_url: str, run_id: int, at_least: int) -> None:
    sql = f"select count(*) from products where last_fetched_run_id = {run_id}"
    wait_for(
        lambda: query(database_url, sql)[0][0] >= at_least,
        timeout=120,
        message=f"run {run_id} to store {at_least} products",
    )


# -- prune -----------------------------------------------------------------------------------


def build_history(site, url: str) -> None:
    """Runs 1-5: change rows (runs 2 and 4), letters resolved (by run 4) and pending (run 5)."""
    run_crawl(site.base_url, url).check()
    site.mutate(change=5)
    run_crawl(site.base_url, url, args=FULL_REFRESH).check()
    site.set_faults(error_rate=1.0, only="detail")
    site.mutate(add=4)
    run_crawl(site.base_url, url, settings=ONE_ATTEMPT).check()  # 4 letters
    site.set_faults(error_rate=0.0)
    site.mutate(change=3)
    run_crawl(site.base_url, url, args=FULL_REFRESH).check()  # resolves them; changes
    site.set_faults(error_rate=1.0, only="detail")
    site.mutate(add=3)
    run_crawl(site.base_url, url, settings=ONE_ATTEMPT).check()  # 3 letters left pending
    site.set_faults(error_rate=0.0)


def age(url: str, run_ids: set[int]) -> None:
    """Move runs ``run_ids`` (and their change rows) and every dead letter AGE back in time."""
    runs, changes, letters = CrawlRun.__table__, ProductChange.__table__, DeadLetter.__table__
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for row in conn.execute(select(runs).where(runs.c.id.in_(run_ids))).all():
                conn.execute(
                    update(runs)
                    .where(runs.c.id == row.id)
                    .values(started_at=row.started_at - AGE, finished_at=row.finished_at - AGE)
                )
            for row in conn.execute(select(changes).where(changes.c.run_id.in_(run_ids))).all():
                conn.execute(
                    update(changes)
                    .where(changes.c.id == row.id)
                    .values(changed_at=row.changed_at - AGE)
                )
            for row in conn.execute(select(letters)).all():
                values = {
                    "first_failed_at": row.first_failed_at - AGE,
                    "last_failed_at": row.last_failed_at - AGE,
                }
                if row.resolved_at is not None:
                    values["resolved_at"] = row.resolved_at - AGE
                conn.execute(update(letters).where(letters.c.id == row.id).values(values))
    finally:
        engine.dispose()


def ids(url: str, table: str, where: str = "1 = 1") -> set[int]:
    return {row[0] for row in query(url, f"select id from {table} where {where}")}


def reported(output: str) -> dict[str, int]:
    """The per-table counts ``scrapy prune`` prints."""
    found = re.findall(r"^(product_changes|dcl_changes|dead_letters)\s+(\d+)$", output, re.M)
    return {name: int(number) for name, number in found}


@pytest.mark.slow
@pytest.mark.both_databases
def test_prune_deletes_only_old_history_and_waits_for_a_running_crawl(
    simulated_site, database_url, tmp_path
):
    site = simulated_site(products=80, seed=61)
    build_history(site, database_url)
    assert [run["id"] for run in crawl_runs(database_url)] == [1, 2, 3, 4, 5]
    age(database_url, {1, 2, 3})
    old_changes = ids(database_url, "product_changes", "run_id in (1, 2, 3)")
    recent_changes = ids(database_url, "product_changes", "run_id = 4")
    resolved = ids(database_url, "dead_letters", "resolved_at is not null")
    pending = ids(database_url, "dead_letters", "resolved_at is null")
    assert len(old_changes) >= 5
    assert len(recent_changes) >= 3
    assert len(resolved) == 4
    assert len(pending) == 3
    expected = {"product_changes": len(old_changes), "dcl_changes": 0, "dead_letters": 4}

    # a cutoff before everything deletes nothing; --dry-run counts and deletes nothing
    nothing = {"product_changes": 0, "dcl_changes": 0, "dead_letters": 0}
    assert reported(ok(scrapy(database_url, "prune", "--older-than", "250d")).stdout) == nothing
    assert ids(database_url, "product_changes") == old_changes | recent_changes

    # beside a crawl that is writing: a dry run counts, a prune refuses, then waits for it
    site.mutate(change=5)
    site.set_faults(latency_ms=1500)  # about a minute: it runs until we speed it up
    crawl = start_crawl(
        site.base_url,
        database_url,
        settings=SLOW,
        args=FULL_REFRESH,
        log_path=tmp_path / "crawl.log",
    )
    waiting = None
    try:
        run_id = holding_run(database_url, crawl)
        assert run_id == 6
        dry = ok(scrapy(database_url, "prune", "--older-than", "180d", "--dry-run"))
        assert reported(dry.stdout) == expected
        assert "Dry run: nothing was deleted." in dry.stdout
        refused = scrapy(database_url, "prune", "--older-than", "180d")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
        assert f"is in use by crawl run {run_id}, pid {crawl.pid}" in refused.stderr
        assert "nothing deleted" in refused.stderr
        assert "DATABASE_LOCK=wait" in refused.stderr
        assert ids(database_url, "product_changes") >= old_changes | recent_changes
        assert ids(database_url, "dead_letters") == resolved | pending

        with (tmp_path / "prune.out").open("w") as out, (tmp_path / "prune.err").open("w") as err:
            waiting = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scrapy",
                    "prune",
                    "--older-than",
                    "180d",
                    "-s",
                    f"DATABASE_URL={database_url}",
                    "-s",
                    "DATABASE_LOCK=wait",
                ],
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=err,
                text=True,
            )
        wait_for(
            lambda: f"waiting for crawl run {run_id}" in (tmp_path / "prune.err").read_text(),
            timeout=120,
            message="the prune to say it waits",
        )
        assert crawl.poll() is None, "the crawl ended before the prune waited"
        assert waiting.poll() is None
        site.set_faults(latency_ms=0)
        assert crawl.wait(timeout=240) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
        assert waiting.wait(timeout=120) == 0, (tmp_path / "prune.err").read_text()
    finally:
        stop_process(crawl)
        if waiting is not None:
            stop_process(waiting)
    assert reported((tmp_path / "prune.out").read_text()) == expected
    assert "Traceback" not in (tmp_path / "prune.err").read_text()

    # exactly the old rows went: the crawl's own change rows, run 4's and every letter
    # that was not resolved long ago stayed
    changes_left = ids(database_url, "product_changes")
    assert not changes_left & old_changes
    assert recent_changes <= changes_left
    assert changes_left - recent_changes == ids(database_url, "product_changes", "run_id = 6")
    assert changes_left - recent_changes  # the crawl's change rows
    assert ids(database_url, "dead_letters") == pending
    # the run records and the products are the state: untouched
    assert [run["id"] for run in crawl_runs(database_url)] == [1, 2, 3, 4, 5, 6]
    assert database_differences(database_url, site.truth()) == []
    assert query(database_url, "select count(*) from crawl_locks") == [(0,)]  # given back
    again = ok(scrapy(database_url, "prune", "--older-than", "180d"))
    assert reported(again.stdout) == nothing


def test_prune_refuses_a_bad_age(tmp_path):
    result = scrapy(sqlite_url(tmp_path / "x.sqlite3"), "prune", "--older-than", "6 months")
    assert result.returncode == 2, result.stderr
    assert "give a number of days or hours, e.g. 180d or 36h" in result.stderr
    assert not (tmp_path / "x.sqlite3").exists()


# -- backup ----------------------------------------------------------------------------------


def check_sqlite_copy(path: Path) -> None:
    """One sound SQLite file, nothing beside it."""
    assert not path.with_name(path.name + "-wal").exists()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def restored(dump: Path, url: str) -> str:
    """A pg_dump archive restored into the empty PostgreSQL database ``url``; its URL."""
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    done = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq}", str(dump)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return url


def held_in(url: str) -> dict[str, Any]:
    """What a copy holds; every change row names a stored run and product, every product
    its runs."""

    def one(sql: str) -> Any:
        return query(url, sql)[0][0]

    assert not one(
        "select count(*) from product_changes where run_id not in (select id from crawl_runs) "
        "or product_url not in (select url from products)"
    )
    assert not one(
        "select count(*) from products where first_seen_run_id not in (select id from "
        "crawl_runs) or last_fetched_run_id not in (select id from crawl_runs)"
    )
    return {
        "runs": {row[0] for row in query(url, "select id from crawl_runs")},
        "running": {
            row[0] for row in query(url, "select id from crawl_runs where status = 'running'")
        },
        "listed": one("select count(*) from products where delisted_at is null"),
        "fetched": one(
            "select count(*) from products where last_fetched_run_id = (select max(id) "
            "from crawl_runs)"
        ),
    }


@pytest.mark.slow
@pytest.mark.both_databases
def test_backups_taken_while_a_crawl_writes_are_consistent_and_open(
    simulated_site, database_url, database_backend, make_database_url, tmp_path
):
    url = database_url
    sqlite = database_backend == "sqlite"
    site = simulated_site(products=200, seed=62)
    run_crawl(site.base_url, url).check()
    site.mutate(add=60, change=40)
    site.set_faults(latency_ms=800)  # over a minute: it runs until we speed it up
    crawl = start_crawl(
        site.base_url, url, settings=SLOW, args=FULL_REFRESH, log_path=tmp_path / "crawl.log"
    )
    targets = [tmp_path / f"backup-{n}.{'sqlite3' if sqlite else 'dump'}" for n in range(3)]
    try:
        run_id = holding_run(url, crawl)
        products_written(url, run_id, 5)  # the crawl is writing
        for target in targets:
            result = ok(scrapy(url, "backup", "-o", str(target)))
            assert crawl.poll() is None, "the crawl ended before the backup did"
            assert f"to {target}:" in result.stdout
            if sqlite:
                assert "integrity_check ok" in result.stdout
            else:
                assert "pg_dump archive" in result.stdout
                assert "entries listed by pg_restore" in result.stdout
        site.set_faults(latency_ms=0)
        assert crawl.wait(timeout=240) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
    finally:
        stop_process(crawl)
    copies = []
    for number, target in enumerate(targets):
        if sqlite:
            check_sqlite_copy(target)
            copies.append(sqlite_url(target))
        else:
            copies.append(restored(target, make_database_url(f"restored{number}")))
    held = [held_in(copy) for copy in copies]
    # each copy is the database mid-run: run 2 in progress, the rows written so far
    for each in held:
        assert each["runs"] == {1, 2}
        assert each["running"] == {run_id} == {2}
    listed = [each["listed"] for each in held]
    assert listed == sorted(listed)
    assert listed[0] >= 200
    assert listed[-1] <= 260
    fetched = [each["fetched"] for each in held]
    assert fetched == sorted(fetched)
    assert fetched[0] >= 5
    # the crawl was not disturbed: its database is the site
    assert database_differences(url, site.truth()) == []
    # a copy is a database like any other: the commands read it
    runs = json.loads(ok(scrapy(copies[-1], "runs", "--json")).stdout)
    assert [(run["id"], run["status"]) for run in runs] == [(run_id, "running"), (1, "finished")]
    exported = tmp_path / "copy.jsonl"
    ok(scrapy(copies[-1], "export", "-o", str(exported)))
    assert len(exported.read_text().splitlines()) == held[-1]["listed"]


def test_backup_refuses_what_it_must_not_write(simulated_site, tmp_path):
    database = tmp_path / "matter.sqlite3"
    url = sqlite_url(database)
    site = simulated_site(products=30, seed=63)
    run_crawl(site.base_url, url).check()
    os.chmod(database, 0o600)
    target = tmp_path / "copy.sqlite3"
    ok(scrapy(url, "backup", "-o", str(target)))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # a new copy: the database's mode
    check_sqlite_copy(target)
    assert held_in(sqlite_url(target))["listed"] == 30

    # an existing file only with --force, keeping its permissions; never the database
    target.write_bytes(b"keep me")
    os.chmod(target, 0o640)
    refused = scrapy(url, "backup", "-o", str(target))
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == f"scrapy backup: error: {target} exists: add --force to replace it"
    )
    assert target.read_bytes() == b"keep me"
    ok(scrapy(url, "backup", "-o", str(target), "--force"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    check_sqlite_copy(target)
    assert held_in(sqlite_url(target))["listed"] == 30
    before = database.read_bytes()
    itself = scrapy(url, "backup", "-o", str(database), "--force")
    assert itself.returncode == 1
    assert "is the database" in itself.stderr
    assert database.read_bytes() == before

    # any schema revision is copied as it is, the database left alone
    with sqlite3.connect(database) as conn:
        conn.execute("update alembic_version set version_num = '9999_from_the_future'")
    newer = tmp_path / "newer.sqlite3"
    ok(scrapy(url, "backup", "-o", str(newer)))
    with closing(sqlite3.connect(newer)) as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [
            ("9999_from_the_future",)
        ]
    # a copy that fails integrity_check is not kept: a database with a page overwritten
    broken = tmp_path / "broken.sqlite3"
    shutil.copyfile(database, broken)
    with closing(sqlite3.connect(broken)) as conn:
        page_size, pages = (
            conn.execute(f"pragma {name}").fetchone()[0] for name in ("page_size", "page_count")
        )
    with broken.open("r+b") as file:
        file.seek(page_size * (pages // 2))
        file.write(b"\xff" * page_size)
    failed = scrapy(sqlite_url(broken), "backup", "-o", str(tmp_path / "copy-of-broken.sqlite3"))
    assert failed.returncode == 1, failed.stdout
    assert "the copy failed PRAGMA integrity_check" in failed.stderr
    assert not (tmp_path / "copy-of-broken.sqlite3").exists()

    # PostgreSQL: pg_dump's error, the password shown nowhere
    postgresql = scrapy(
        "postgresql+psycopg://someone:secret@127.0.0.1:9/matter",
        "backup",
        "-o",
        str(tmp_path / "pg.dump"),
    )
    assert postgresql.returncode == 1
    assert "scrapy backup: error: pg_dump failed: " in postgresql.stderr
    assert "secret" not in postgresql.stderr
    assert "Traceback" not in postgresql.stderr
    assert sorted(
        path.name for path in tmp_path.iterdir() if "copy" in path.name or "pg" in path.name
    ) == ["copy.sqlite3"]  # no partial file left by any of them


# -- LOG_FORMAT=json -------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines
    return [json.loads(line) for line in lines]  # every line, or the test fails here


@pytest.mark.slow
def test_every_line_of_a_crawl_is_json_with_log_format_json(simulated_site, tmp_path):
    site = simulated_site(products=40, seed=64)
    url = sqlite_url(tmp_path / "matter.sqlite3")
    command = crawl_command(site.base_url, url, settings={"LOG_FORMAT": "json"})
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    entries = json_lines(result.stderr)
    assert re.fullmatch(r"Scrapy \S+ started \(bot: matter_crawler\)", entries[0]["message"])
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert datetime.fromisoformat(entry["time"]).utcoffset() == timedelta(0)
        assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    assert abs(datetime.fromisoformat(entries[0]["time"]) - datetime.now(UTC)) < timedelta(
        minutes=5
    )
    messages = [entry["message"] for entry in entries]
    assert any(message.startswith("Dumping Scrapy stats:\n") for message in messages)
    opened = next(entry for entry in entries if entry["message"] == "Spider opened")
    assert opened["logger"] == "scrapy.core.engine"
    assert opened["spider"] == "matter_products"

    # to a file (LOG_FILE), with LOG_SHORT_NAMES honoured, as by Scrapy's own handler
    log = tmp_path / "crawl.log"
    settings = {"LOG_FORMAT": "json", "LOG_FILE": str(log), "LOG_SHORT_NAMES": True}
    quiet = subprocess.run(
        crawl_command(site.base_url, url, settings=settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert quiet.returncode == 0, log.read_text()[-3000:]
    assert quiet.stderr == ""
    entries = json_lines(log.read_text())
    loggers = {entry["logger"] for entry in entries}
    assert "scrapy" in loggers
    assert not [name for name in loggers if name.startswith("scrapy.")]
