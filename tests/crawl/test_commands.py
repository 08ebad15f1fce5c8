"""The custom scrapy commands (export, runs, changes, dead-letters) on a real crawl database.

One database for the module: the simulated site is crawled (run 1, full),
mutated (4 added, 3 removed, 5 changed) and crawled again with a full refresh
(run 2), then set to fail every product page while 5 products are added, so an
incremental crawl with one attempt per server error leaves 5 dead letters
(run 3). Each command then runs as ``python -m scrapy <command>`` from the
project root, as a user runs it, and its output is read back with standard
readers and compared with the database. The module runs twice: on a SQLite file
and on a PostgreSQL database.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import JSON, create_engine, func, select, update

from matter_crawler.storage.models import Product
from sitesim.process import SimulatedSite

from ..helpers import (
    BACKENDS,
    PROJECT_ROOT,
    crawl_runs,
    database_differences,
    new_database,
    query,
    run_crawl,
    sqlite_url,
)

# its module-scoped fixtures crawl: run the module on one pytest-xdist worker, once
pytestmark = pytest.mark.xdist_group(__name__)

PRODUCTS = 240
ONE_ATTEMPT = {"RETRY_POLICIES": {"server": {"attempts": 1}}}


@dataclass
class Crawled:
    site: SimulatedSite
    url: str
    before: dict[str, dict[str, Any]]  # truth before the mutation, by path
    after: dict[str, dict[str, Any]]  # truth after it
    mutation: dict[str, Any]
    failing: list[str]  # paths of the products whose pages failed in run 3
    copy: Callable[[str], str]  # copy("name"): the URL of a copy, for tests that change it


@pytest.fixture(scope="module", params=BACKENDS)
def crawled(request, tmp_path_factory) -> Iterator[Crawled]:
    backend = request.param
    directory = tmp_path_factory.mktemp("commands")
    url = new_database(request, backend, directory)

    def copy(name: str) -> str:
        if backend == "sqlite":
            return copy_database(directory / "matter.sqlite3", directory / f"{name}.sqlite3")
        server = request.getfixturevalue("postgresql_server")
        target = f"{url.rsplit('/', 1)[1]}_{name}"
        request.addfinalizer(lambda: server.drop_database(target))
        return server.copy_database(url.rsplit("/", 1)[1], target)

    site = SimulatedSite(products=PRODUCTS, seed=11)
    site.start()
    try:
        before = {record["url"]: record for record in site.truth()}
        run_crawl(site.base_url, url).check()
        mutation = site.mutate(add=4, remove=3, change=5)
        after = {record["url"]: record for record in site.truth()}
        run_crawl(site.base_url, url, args={"mode": "full", "refresh": "all"}).check()
        assert database_differences(url, after.values()) == []

        site.set_faults(error_rate=1.0, only="detail")
        failing = site.mutate(add=5)["added"]
        # no stored page fetched again for its age (REFRESH_MAX_AGE_DAYS): its error would be
        # a sixth dead letter
        run_crawl(site.base_url, url, settings={**ONE_ATTEMPT, "REFRESH_MAX_AGE_DAYS": 0}).check()
        yield Crawled(site, url, before, after, mutation, failing, copy)
    finally:
        site.stop()


def scrapy(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m scrapy <args> -s DATABASE_URL=...`` from the project root."""
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args, "-s", f"DATABASE_URL={database_url}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def copy_database(source: Path, target: Path) -> str:
    """A consistent copy (SQLite's backup API), for tests that change the database."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return sqlite_url(target)


# -- the database as the reference -------------------------------------------------------

COLUMNS = list(Product.__table__.columns)
NAMES = [column.name for column in COLUMNS]


def kind(column: Any) -> type:
    """The Python type a column holds (JSON: whatever JSON holds)."""
    if isinstance(column.type, JSON):
        return object
    return getattr(column.type, "impl_instance", column.type).python_type  # TypeDecorators


KINDS = {column.name: kind(column) for column in COLUMNS}


def database_rows(database_url: str, *, include_delisted: bool = False) -> list[dict[str, Any]]:
    table = Product.__table__
    statement = select(table).order_by(table.c.id)
    if not include_delisted:
        statement = statement.where(table.c.delisted_at.is_(None))
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [row._asdict() for row in conn.execute(statement)]
    finally:
        engine.dispose()


def from_csv(name: str, text: str) -> Any:
    """A CSV field read back as the documented format says."""
    if text == "":
        return None
    wanted = KINDS[name]
    if wanted is object:
        return json.loads(text)
    if wanted is bool:
        assert text in ("true", "false"), (name, text)
        return text == "true"
    if wanted is int:
        return int(text)
    if wanted is date:
        return date.fromisoformat(text)
    if wanted is datetime:
        value = datetime.fromisoformat(text)
        assert value.utcoffset() == timedelta(0), (name, text)
        return value
    return text


def from_json(name: str, value: Any) -> Any:
    if value is None:
        return None
    wanted = KINDS[name]
    if wanted is date:
        return date.fromisoformat(value)
    if wanted is datetime:
        return datetime.fromisoformat(value)
    if wanted is not object:
        assert type(value) is wanted, (name, value)  # native JSON types: no "1" for 1
    return value


@pytest.fixture(scope="module")
def export_database(crawled) -> str:
    """The crawl database with values that trip naive writers in its first listed product."""
    url = crawled.copy("export")
    table = Product.__table__
    first = select(func.min(table.c.id)).where(table.c.delisted_at.is_(None)).scalar_subquery()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.id == first)
                .values(
                    manufacturer='=HYPERLINK("http://x")',
                    model="#N/A",
                    description='line one\nbell\x07 "quoted", comma',
                )
            )
    finally:
        engine.dispose()
    return url


# -- export ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_csv_matches_the_database(export_database, tmp_path):
    output = tmp_path / "products.csv"
    result = ok(scrapy(export_database, "export", "-o", str(output)))
    expected = database_rows(export_database)
    assert f"Exported {len(expected)} products to {output} (csv)" in result.stderr

    with output.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == NAMES
        exported = [{name: from_csv(name, row[name]) for name in NAMES} for row in reader]
    # text a spreadsheet would run as a formula gets a leading ' (--raw: as stored)
    assert exported[0]["manufacturer"] == "'" + expected[0]["manufacturer"]
    exported[0]["manufacturer"] = expected[0]["manufacturer"]
    assert exported == expected
    assert exported[0]["description"] == 'line one\nbell\x07 "quoted", comma'
    assert any(row["tis_trp_tested"] is False for row in exported)
    assert not list(tmp_path.glob(".*partial"))

    raw = tmp_path / "raw.csv"
    ok(scrapy(export_database, "export", "-o", str(raw), "--raw"))
    with raw.open(newline="", encoding="utf-8") as stream:
        assert [{n: from_csv(n, row[n]) for n in NAMES} for row in csv.DictReader(stream)] == (
            expected
        )


def test_export_jsonl_matches_the_database_with_native_types(export_database, tmp_path):
    output = tmp_path / "products.jsonl"
    ok(scrapy(export_database, "export", "-o", str(output), "--include-delisted"))
    expected = database_rows(export_database, include_delisted=True)
    assert sum(row["delisted_at"] is not None for row in expected) == 3

    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [list(record) for record in records] == [NAMES] * len(expected)
    exported = [{name: from_json(name, record[name]) for name in NAMES} for record in records]
    assert exported == expected
    assert all(isinstance(record["transport_interface"], list) for record in records)
    assert all(isinstance(record["extra_fields"], dict) for record in records)

    # to standard output, with a filter
    result = ok(
        scrapy(export_database, "export", "-o", "-", "-f", "jsonl", "--where", "vid_int < 30000")
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    wanted = [row["url"] for row in database_rows(export_database) if row["vid_int"] < 30000]
    assert 0 < len(lines) < len(expected)
    assert [line["url"] for line in lines] == wanted


def test_export_xlsx_has_typed_cells_matching_the_database(export_database, tmp_path):
    output = tmp_path / "products.xlsx"
    ok(scrapy(export_database, "export", "-o", str(output)))
    expected = database_rows(export_database)

    workbook = openpyxl.load_workbook(output)
    assert workbook.sheetnames == ["products"]
    sheet = workbook["products"]
    assert sheet.freeze_panes == "A2"
    rows = list(sheet.iter_rows())
    header, body = rows[0], rows[1:]
    assert [cell.value for cell in header] == NAMES
    assert all(cell.font.bold for cell in header)
    assert sheet.auto_filter.ref == f"A1:{header[-1].column_letter}{len(expected) + 1}"
    for cell in header:
        assert 8 <= sheet.column_dimensions[cell.column_letter].width <= 61
    assert len(body) == len(expected)

    for cells, want in zip(body, expected, strict=True):
        for cell, name in zip(cells, NAMES, strict=True):
            value, stored, wanted = cell.value, want[name], KINDS[name]
            if stored is None:
                assert value is None, (name, value)
            elif wanted is date:
                assert cell.is_date, (name, cell)
                assert cell.number_format == "yyyy-mm-dd", (name, cell)
                assert value == datetime.combine(stored, datetime.min.time())
            elif wanted is datetime:
                assert cell.is_date, (name, cell)
                assert cell.number_format == "yyyy-mm-dd hh:mm:ss", (name, cell)
                # Excel keeps milliseconds; the time is UTC wall time
                naive = stored.astimezone(UTC).replace(tzinfo=None)
                assert abs(value - naive) <= timedelta(milliseconds=1), (name, value, naive)
            elif wanted is object:
                assert cell.data_type == "s", (name, value)
                assert json.loads(value) == stored, (name, value)
            elif wanted is str:
                assert cell.data_type == "s", (name, value, cell.data_type)
                assert value == stored.replace("\x07", ""), (name, value)  # XML cannot hold ^G
            else:
                assert type(value) is wanted, (name, value)
                assert value == stored, (name, value, stored)
    first = dict(zip(NAMES, body[0], strict=True))
    assert first["manufacturer"].value == '=HYPERLINK("http://x")'  # text, not a formula
    assert first["model"].value == "#N/A"  # text, not an error value


def test_export_refuses_bad_formats_and_conditions_without_writing(export_database, tmp_path):
    bad = scrapy(export_database, "export", "-o", str(tmp_path / "p.csv"), "-f", "xml")
    assert bad.returncode == 2
    assert "scrapy export: error: unknown format 'xml': use one of csv, jsonl, xlsx" in bad.stderr

    unknown = scrapy(export_database, "export", "-o", str(tmp_path / "products.txt"))
    assert unknown.returncode == 2
    assert "cannot tell the format of" in unknown.stderr
    assert "csv, jsonl, xlsx" in unknown.stderr

    where = scrapy(
        export_database, "export", "-o", str(tmp_path / "p.csv"), "--where", "no_such = 1"
    )
    assert where.returncode == 1
    assert "scrapy export: error: --where 'no_such = 1'" in where.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr + where.stderr
    assert list(tmp_path.iterdir()) == []


# -- runs, changes ---------------------------------------------------------------------------


def table_rows(text: str) -> list[list[str]]:
    """The rows of an aligned text table (columns are two or more spaces apart)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert set(lines[1].replace(" ", "")) == {"-"}, lines[:2]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]


def test_runs_lists_the_runs_newest_first(crawled):
    result = ok(scrapy(crawled.url, "runs"))
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["id", "started", "(UTC)"]
    rows = table_rows(result.stdout)
    runs = crawl_runs(crawled.url)
    assert [row[0] for row in rows] == [str(run["id"]) for run in reversed(runs)] == ["3", "2", "1"]
    by_id = {row[0]: row for row in rows}
    # id, started, status, mode, stage, duration, pages, new, changed, delisted, dead, errors
    assert by_id["1"][2:5] == ["finished", "full", "done"]
    assert by_id["1"][7:] == [str(PRODUCTS), "0", "0", "0", "0"]
    assert by_id["2"][3] == "full"
    assert by_id["2"][7:] == ["4", "5", "3", "0", "0"]
    assert by_id["3"][3] == "incremental"
    assert by_id["3"][10] == "5"  # dead letters
    pages = (PRODUCTS + 1 + 11) // 12
    assert by_id["2"][6] == f"{pages}/{pages}"

    latest = json.loads(ok(scrapy(crawled.url, "runs", "-n", "1", "--json")).stdout)
    assert [run["id"] for run in latest] == [3]
    assert latest[0]["dead_letters"] == 5


def test_changes_shows_exactly_what_the_full_refresh_changed(crawled):
    site, mutation = crawled.site, crawled.mutation
    report = json.loads(ok(scrapy(crawled.url, "changes", "--run", "2", "--json")).stdout)
    assert report["run"]["id"] == 2
    assert report["previous_run"] == 1

    assert sorted(item["url"] for item in report["new"]) == sorted(
        site.url(path) for path in mutation["added"]
    )
    assert report["new_count"] == 4
    assert sorted(item["url"] for item in report["delisted"]) == sorted(
        site.url(path) for path in mutation["removed"]
    )
    changed = {
        (item["url"], change["field"]): (change["old"], change["new"])
        for item in report["changed"]
        for change in item["fields"]
    }
    expected = {
        (site.url(path), name): (crawled.before[path][name], crawled.after[path][name])
        for path, names in mutation["changed"].items()
        for name in names
    }
    assert changed == expected
    assert report["changed_count"] == 5
    assert report["changed_fields_count"] == len(expected)

    text = ok(scrapy(crawled.url, "changes", "--run", "2")).stdout
    assert "4 new, 5 changed" in text
    assert f"({len(expected)} fields), 3 delisted" in text
    for (url, name), (old, new) in expected.items():
        assert url in text
        assert f"    {name}: {json.dumps(old)} -> {json.dumps(new)}" in text
    for path in mutation["removed"]:
        assert site.url(path) in text


def test_changes_defaults_to_the_latest_run_and_points_at_the_last_change(crawled):
    text = ok(scrapy(crawled.url, "changes")).stdout
    assert text.startswith("Run 3 (incremental, finished;")
    assert "0 new, 0 changed (0 fields), 0 delisted" in text
    assert "The last run that changed something is run 2: scrapy changes --run 2" in text

    first = json.loads(ok(scrapy(crawled.url, "changes", "--run", "1", "--json")).stdout)
    assert first["previous_run"] is None
    assert first["new_count"] == PRODUCTS
    assert len(first["new"]) == 100  # --limit's default
    assert first["changed_count"] == first["delisted_count"] == 0

    missing = scrapy(crawled.url, "changes", "--run", "99")
    assert missing.returncode == 1
    assert "scrapy changes: error: no run 99" in missing.stderr


# -- dead letters ----------------------------------------------------------------------------


@pytest.mark.slow
def test_dead_letters_are_listed_then_replayed(crawled):
    site = crawled.site
    listed = ok(scrapy(crawled.url, "dead-letters")).stdout
    rows = table_rows(listed.split("\n5 pending")[0])
    assert sorted(row[0] for row in rows) == sorted(site.url(path) for path in crawled.failing)
    assert {tuple(row[1:4]) for row in rows} == {("detail", "server", "1")}
    assert all(row[4].startswith("HTTP 50") for row in rows)
    assert "5 pending" in listed

    # the replay changes the database: work on a copy
    url = crawled.copy("replay")
    site.set_faults(error_rate=0)
    replay = ok(scrapy(url, "dead-letters", "--replay", "-s", "CRAWL_PROFILE=fast"))
    assert "Replayed 5 dead letters: 5 resolved, 0 still pending." in replay.stdout
    assert "Spider closed (finished)" in replay.stderr  # the crawl's own log

    last = crawl_runs(url)[-1]
    assert last["mode"] == "replay"
    assert last["dead_letters_resolved"] == 5
    assert last["settings"]["CRAWL_PROFILE"] == "fast"  # -s reached the crawl
    assert database_differences(url, site.truth()) == []
    assert ok(scrapy(url, "dead-letters")).stdout.strip() == "No pending dead letters."
    assert query(url, "select count(*) from dead_letters where resolved_run_id is not null") == [
        (5,)
    ]

    again = ok(scrapy(url, "dead-letters", "--replay"))
    assert again.stdout.strip() == "No pending dead letters: nothing to replay."
    assert len(crawl_runs(url)) == len(crawl_runs(crawled.url)) + 1  # no run for nothing


# -- a database that is not there -------------------------------------------------------------

COMMANDS = [
    ["export", "-o", "OUT/products.csv"],
    ["runs"],
    ["changes"],
    ["dead-letters"],
    ["dead-letters", "--replay"],
    ["db", "upgrade"],
    ["db", "current"],
    ["crosscheck", "-o", "OUT/findings.csv"],
    ["backup", "-o", "OUT/copy.sqlite3"],
    ["prune", "--older-than", "180d"],
    ["prune", "--older-than", "180d", "--dry-run"],
]


@pytest.mark.slow
def test_commands_fail_clearly_without_creating_a_database(tmp_path):
    missing = tmp_path / "data" / "matter.sqlite3"
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()  # a SQLite file without our tables
    (tmp_path / "OUT").mkdir()
    cases = [(missing, command) for command in COMMANDS] + [(empty, ["runs"])]
    processes = [  # started together: these only read settings and fail
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scrapy",
                *(part.replace("OUT", str(tmp_path / "OUT")) for part in command),
                "-s",
                f"DATABASE_URL={sqlite_url(path)}",
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path, command in cases
    ]
    for process, (path, command) in zip(processes, cases, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        name = command[0]
        assert process.returncode == 1, (command, stdout, stderr)
        assert "Traceback" not in stderr, stderr
        if path == missing:
            assert stderr.strip() == (
                f"scrapy {name}: error: no database at {missing}: "
                "run `scrapy crawl matter_products` first, "
                "or set DATABASE_URL (or MATTER_DATABASE_URL)"
            )
        else:
            assert stderr.strip() == (
                f"scrapy runs: error: {empty} is not a matter-crawler database (no crawl_runs "
                "table): run `scrapy crawl matter_products` first, "
                "or set DATABASE_URL (or MATTER_DATABASE_URL)"
            )
    assert not missing.parent.exists()
    assert list((tmp_path / "OUT").iterdir()) == []
