"""Schema revisions: old databases upgrade in place, newer ones are refused untouched.

The old database is ``tests/fixtures/databases/c3359a7.sqlite3``, written by the
crawler of commit c3359a7 (the last release before schema revisions; made by
``make_c3359a7.py`` beside it): 63 products, 5 change rows, 3 runs, 2 pending
dead letters, and no ``alembic_version``. On PostgreSQL the same rows are
loaded into c3359a7's schema (``c3359a7_models.py``, that commit's models),
as that release would have made it. Its site ran on another port: the URLs are
first moved to this test's site with plain SQL on the old schema.

**A new revision extends this module**: add its check to ``UPGRADE_CHECKS``
(what upgrading a database at the revision before it must do: the rows it keeps,
the columns it fills), and ``test_every_revision_has_an_upgrade_check`` passes
again. ``test_the_models_are_the_head_revision`` fails until models.py and the
revisions agree.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine, inspect, select, text

from matter_crawler.storage import Database
from matter_crawler.storage.models import Base
from matter_crawler.storage.schema import (
    BASELINE_REVISION,
    BASELINE_TABLES,
    SchemaError,
    alembic_config,
    head_revision,
    read_state,
    revisions,
)

from ..helpers import (
    PROJECT_ROOT,
    crawl_runs,
    database_differences,
    new_database,
    query,
    run_crawl,
)

pytestmark = pytest.mark.both_databases

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "databases"
OLD_DATABASE = FIXTURES / "c3359a7.sqlite3"
OLD = json.loads((FIXTURES / "c3359a7.json").read_text())
#: Where each table's URLs are (moved to the test's site).
URL_COLUMNS = {
    "products": ("url", "compliance_document_url"),
    "product_changes": ("product_url",),
    "dead_letters": ("url",),
}
Snapshot = dict[str, list[dict[str, Any]]]
RESOLUTION = {"resolved_at", "resolved_run_id"}


def old_models() -> ModuleType:
    """c3359a7's models.py, as that commit had it."""
    spec = importlib.util.spec_from_file_location("c3359a7_models", FIXTURES / "c3359a7_models.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # SQLAlchemy resolves the annotations through it
    spec.loader.exec_module(module)
    return module


OLD_METADATA: MetaData = old_models().Base.metadata


def using(url: str, function: Callable[[Engine], Any]) -> Any:
    engine = create_engine(url)
    try:
        return function(engine)
    finally:
        engine.dispose()


def old_sqlite_copy(directory: Path, base_url: str) -> Path:
    """A copy of the fixture, its URLs moved from the fixture's site to ``base_url``."""
    path = directory / "c3359a7-copy.sqlite3"
    shutil.copyfile(OLD_DATABASE, path)
    with sqlite3.connect(path) as conn:
        for table, columns in URL_COLUMNS.items():
            for name in columns:
                conn.execute(
                    f"update {table} set {name} = replace({name}, ?, ?)",
                    (OLD["base_url"], base_url),
                )
        conn.execute(
            "update crawl_runs set settings = replace(settings, ?, ?)", (OLD["base_url"], base_url)
        )
    return path


def load_old_database(request, backend: str, directory: Path, base_url: str) -> str:
    """A database with c3359a7's schema and the fixture's rows, on ``backend``; its URL."""
    path = old_sqlite_copy(directory, base_url)
    if backend == "sqlite":
        return f"sqlite:///{path}"
    url = new_database(request, backend, directory, "old")
    source, target = create_engine(f"sqlite:///{path}"), create_engine(url)
    try:
        OLD_METADATA.create_all(target)  # what c3359a7's Database did on PostgreSQL
        with source.connect() as reading, target.begin() as writing:
            for table in OLD_METADATA.sorted_tables:
                rows = [row._asdict() for row in reading.execute(select(table))]
                if rows:
                    writing.execute(table.insert(), rows)
                # ids were given: move the sequence past them, as a restore does
                writing.execute(
                    text(
                        f"select setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(select max(id) from {table.name}))"
                    )
                )
    finally:
        source.dispose()
        target.dispose()
    return url


def snapshot(engine: Engine, metadata: MetaData = OLD_METADATA) -> Snapshot:
    """Every row of every table of ``metadata`` (c3359a7's columns), by id."""
    with engine.connect() as conn:
        return {
            table.name: [row._asdict() for row in conn.execute(select(table).order_by(table.c.id))]
            for table in metadata.sorted_tables
        }


def schema(engine: Engine, tables: frozenset[str] = BASELINE_TABLES) -> dict[str, Any]:
    """What the database says its tables are: columns, keys, indexes, unique constraints."""
    inspector = inspect(engine)
    described: dict[str, Any] = {}
    for name in sorted(tables):
        described[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c["default"])
                for c in inspector.get_columns(name)
            ],
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(name)
            ),
            "unique": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)
            ),
        }
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            described["sql"] = sorted(
                conn.execute(
                    text(
                        "select type, name, sql from sqlite_master where tbl_name != 'alembic_version'"
                    )
                ).all()
            )
    return described


def recorded(url: str) -> tuple[str, ...]:
    def read(engine: Engine) -> tuple[str, ...]:
        with engine.connect() as conn:
            return read_state(conn).recorded

    return using(url, read)


def upgrade_to(engine: Engine, revision: str) -> None:
    """As opening does, but stopping at ``revision``: unversioned means the baseline."""
    with engine.begin() as conn:
        config = alembic_config(conn)
        if read_state(conn).status == "unversioned":
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, revision)


# -- what each revision must do to a database at the revision before it -------------------


def check_baseline(engine: Engine, before: Snapshot, old_schema: dict[str, Any]) -> None:
    """0001_baseline: recorded, not run; the schema is c3359a7's, every row as it was."""
    assert schema(engine) == old_schema
    assert snapshot(engine) == before


def check_crawl_locks(engine: Engine, before: Snapshot, old_schema: dict[str, Any]) -> None:
    """0002_add_crawl_locks: a new, empty crawl_locks table; nothing else touched."""
    described = schema(engine)
    if "sql" in described:  # SQLite lists every table's SQL: leave the new one out
        described["sql"] = [row for row in described["sql"] if "crawl_locks" not in row[1]]
    assert described == old_schema
    assert snapshot(engine) == before
    columns = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("crawl_locks")}
    assert columns == {
        "name": False,
        "token": False,
        "pid": False,
        "host": False,
        "process_started": True,
        "run_id": True,
        "acquired_at": False,
        "heartbeat_at": False,
    }
    assert inspect(engine).get_pk_constraint("crawl_locks")["constrained_columns"] == ["name"]
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from crawl_locks")).scalar() == 0


def check_delisting_columns(engine: Engine, before: Snapshot, old_schema: dict[str, Any]) -> None:
    """0003_add_delisting_to_crawl_runs: three nullable columns, empty for the old runs."""
    assert snapshot(engine) == before  # every old column of every row as it was
    columns = {c["name"]: c for c in inspect(engine).get_columns("crawl_runs")}
    for name in ("delist_outcome", "delist_candidates", "delist_still_listed"):
        assert columns[name]["nullable"], name
    with engine.connect() as conn:
        filled = conn.execute(
            text(
                "select count(*) from crawl_runs where delist_outcome is not null "
                "or delist_candidates is not null or delist_still_listed is not null"
            )
        ).scalar()
        runs = conn.execute(text("select count(*) from crawl_runs")).scalar()
    assert runs == len(before["crawl_runs"]) > 0
    assert filled == 0


DCL_TABLES = (
    "dcl_vendors",
    "dcl_models",
    "dcl_model_versions",
    "dcl_compliance",
    "dcl_model_statuses",
    "dcl_changes",
    "crosscheck_runs",
    "crosscheck_findings",
)


def check_dcl_tables(engine: Engine, before: Snapshot, old_schema: dict[str, Any]) -> None:
    """0004_add_dcl_and_crosscheck: new, empty tables; every old row as it was."""
    assert snapshot(engine) == before
    tables = set(inspect(engine).get_table_names())
    assert set(DCL_TABLES) <= tables
    assert not set(DCL_TABLES) & set(old_schema)
    pk = inspect(engine).get_pk_constraint("dcl_compliance")["constrained_columns"]
    assert pk == ["vid", "pid", "software_version", "certification_type"]
    with engine.connect() as conn:
        for table in DCL_TABLES:
            assert conn.execute(text(f"select count(*) from {table}")).scalar() == 0, table


UPGRADE_CHECKS: dict[str, Callable[[Engine, Snapshot, dict[str, Any]], None]] = {
    "0001_baseline": check_baseline,
    "0002_add_crawl_locks": check_crawl_locks,
    "0003_add_delisting_to_crawl_runs": check_delisting_columns,
    "0004_add_dcl_and_crosscheck": check_dcl_tables,
}


# -- the tests -----------------------------------------------------------------------------


def test_every_revision_has_an_upgrade_check():
    script = ScriptDirectory.from_config(alembic_config())
    alembic_order = [r.revision for r in script.walk_revisions()][::-1]
    assert list(revisions()) == alembic_order  # file names = ids, numbered in chain order
    assert script.get_heads() == [head_revision()]
    assert list(UPGRADE_CHECKS) == alembic_order
    for revision in alembic_order:
        # alembic_version.version_num is VARCHAR(32)
        assert len(revision) <= 32, revision
        assert revision[:4].isdigit(), revision
        assert revision[4] == "_", revision


def test_the_baseline_is_the_schema_of_c3359a7(make_database_url):
    old, new = make_database_url("created_by_c3359a7"), make_database_url("baseline")
    using(old, OLD_METADATA.create_all)
    using(new, lambda engine: upgrade_to(engine, BASELINE_REVISION))
    assert using(new, schema) == using(old, schema)


def test_the_models_are_the_head_revision(database_url):
    """models.py and the revisions agree: a schema change without a revision fails here."""
    database = Database(database_url)
    try:
        with database.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        database.close()
    assert differences == []


def test_an_old_database_is_upgraded_revision_by_revision_keeping_every_row(
    request, database_backend, tmp_path
):
    url = load_old_database(request, database_backend, tmp_path, OLD["base_url"])
    old_schema = using(url, schema)
    before = using(url, snapshot)
    assert {name: len(rows) for name, rows in before.items()} == OLD["rows"]
    engine = create_engine(url)
    try:
        for revision, check in UPGRADE_CHECKS.items():
            upgrade_to(engine, revision)
            with engine.connect() as conn:
                assert read_state(conn).recorded == (revision,)
            check(engine, before, old_schema)
    finally:
        engine.dispose()


def test_an_old_database_upgrades_when_a_crawl_opens_it_and_the_crawl_goes_on(
    request, database_backend, tmp_path, simulated_site
):
    site = simulated_site(products=OLD["products"], seed=OLD["seed"])
    for mutation in OLD["mutations"]:  # the catalogue as the old crawls left it
        site.mutate(**mutation)
    url = load_old_database(request, database_backend, tmp_path, site.base_url)
    before = using(url, snapshot)

    added = site.mutate(add=4)["added"]
    site.reset_stats()
    # (no page fetched again for its age: this test counts the product pages fetched)
    result = run_crawl(site.base_url, url, settings={"REFRESH_MAX_AGE_DAYS": 0}).check()
    assert (
        f"Recorded the database schema (made before schema revisions) as revision "
        f"{BASELINE_REVISION}" in result.output
    )
    assert recorded(url) == (head_revision(),)

    # incremental, as if nothing had happened: only the new products and the two whose
    # pages failed in the old release's last run are fetched; page 1 holds them all
    run = crawl_runs(url)[-1]
    assert (run["id"], run["mode"], run["status"]) == (4, "incremental", "finished")
    fetched = {e["path"] for e in site.requests_log() if e["kind"] == "detail"}
    assert fetched == set(added) | set(OLD["failing"])
    assert run["products_new"] == len(fetched)
    assert site.stats()["by_kind"]["list"] <= 2
    assert database_differences(url, site.truth()) == []

    # the old rows are all there: history and runs untouched, products only seen again
    after = using(url, snapshot)
    assert after["product_changes"] == before["product_changes"]
    assert after["crawl_runs"][:3] == before["crawl_runs"]
    stored = {row["url"]: row for row in after["products"]}
    seen_again = {"last_seen_at", "last_seen_run_id"}
    for row in before["products"]:
        kept = {k: v for k, v in stored[row["url"]].items() if k not in seen_again}
        assert kept == {k: v for k, v in row.items() if k not in seen_again}
    letters = {row["url"]: row for row in after["dead_letters"]}
    for row in before["dead_letters"]:
        kept = {k: v for k, v in letters[row["url"]].items() if k not in RESOLUTION}
        assert kept == {k: v for k, v in row.items() if k not in RESOLUTION}
    # the letters of the products this crawl stored are resolved by it
    resolved = {url for url, row in letters.items() if row["resolved_run_id"] == 4}
    assert {urlsplit(url).path for url in resolved} == set(OLD["failing"])


NEWER = "9999_from_a_newer_release"


def test_a_database_newer_than_the_code_is_refused_and_left_untouched(
    request, database_backend, tmp_path
):
    url = load_old_database(request, database_backend, tmp_path, "http://127.0.0.1:9")
    Database(url).close()

    def from_a_newer_release(engine: Engine) -> None:
        with engine.begin() as conn:
            conn.execute(text("update alembic_version set version_num = :v"), {"v": NEWER})

    using(url, from_a_newer_release)

    def fingerprint() -> Any:
        if database_backend == "sqlite":
            path = Path(url.removeprefix("sqlite:///"))
            files = sorted(p.name for p in tmp_path.iterdir())
            return hashlib.sha256(path.read_bytes()).hexdigest(), files
        return using(url, schema), using(url, snapshot), query(url, "select * from alembic_version")

    untouched = fingerprint()
    with pytest.raises(SchemaError) as refused:
        Database(url)
    message = str(refused.value)
    assert NEWER in message
    assert head_revision() in message
    assert "nothing was written" in message

    crawl = run_crawl("http://127.0.0.1:9", url)
    assert crawl.returncode != 0
    assert f"is at schema revision {NEWER}, which this matter-crawler does not know" in crawl.output
    commands = [["runs"], ["export", "-o", str(tmp_path / "out.csv")], ["db", "upgrade"]]
    if database_backend == "postgresql":  # the same code path: one command is enough
        commands = commands[:1]
    for arguments in commands:
        result = subprocess.run(
            [sys.executable, "-m", "scrapy", *arguments, "-s", f"DATABASE_URL={url}"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 1, (arguments, result.stderr)
        assert "error: " in result.stderr, result.stderr
        assert NEWER in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert fingerprint() == untouched


def scrapy(url: str, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scrapy", *arguments, "-s", f"DATABASE_URL={url}"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str]) -> tuple[str, str]:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, (process.args, stdout, stderr)
    assert "Traceback" not in stderr
    return stdout, stderr


@pytest.mark.slow
def test_db_commands_and_the_other_commands_on_an_old_database(request, database_backend, tmp_path):
    url = load_old_database(request, database_backend, tmp_path, OLD["base_url"])
    before = using(url, snapshot)
    name = url.removeprefix("sqlite:///") if database_backend == "sqlite" else "old_"
    head = head_revision()

    current, _ = finished(scrapy(url, "db", "current"))
    assert name in current
    assert "no recorded revision (made before schema revisions)" in current
    assert recorded(url) == ()  # `current` reads only
    if database_backend == "sqlite":  # `history` reads no database
        history, _ = finished(scrapy(url, "db", "history"))
        assert [line.split()[0] for line in history.splitlines()[2:]] == list(revisions())
        assert f"{head} (head)" in history

    # two commands open it at once: one upgrades it, under the lock; the other waits
    runs, upgrade = scrapy(url, "runs"), scrapy(url, "db", "upgrade")
    (runs_out, runs_err), (upgrade_out, _) = finished(runs), finished(upgrade)
    recognised = f"Recorded the database schema (made before schema revisions) as revision {BASELINE_REVISION}"
    assert (recognised in runs_err) != (recognised in upgrade_out)
    assert [line.split()[0] for line in runs_out.splitlines()[2:]] == ["3", "2", "1"]
    assert recorded(url) == (head,)
    assert using(url, snapshot) == before

    current, _ = finished(scrapy(url, "db", "current"))
    assert f"revision {head} (head): up to date" in current
    again, _ = finished(scrapy(url, "db", "upgrade"))
    assert f"already at the head revision {head}, nothing to do" in again


def test_db_upgrade_creates_the_schema_in_an_empty_database(make_database_url, database_backend):
    url = make_database_url("empty")
    if database_backend == "sqlite":
        sqlite3.connect(url.removeprefix("sqlite:///")).close()  # a file, without tables
    current, _ = finished(scrapy(url, "db", "current"))
    assert "no matter-crawler tables" in current
    created, _ = finished(scrapy(url, "db", "upgrade"))
    assert f"Created the database schema at revision {head_revision()}" in created
    assert using(url, lambda engine: set(inspect(engine).get_table_names()) >= BASELINE_TABLES)


def test_an_up_to_date_database_opens_without_alembic(database_url):
    """The revision check at every start: two small reads, Alembic not even imported."""
    Database(database_url).close()
    check = (
        "import sys, time\n"
        "from sqlalchemy import text\n"
        "from matter_crawler.storage import create_database_engine\n"
        "from matter_crawler.storage.schema import prepare_schema\n"
        f"engine = create_database_engine({database_url!r})\n"
        "with engine.connect() as conn:\n"
        "    conn.execute(text('select 1'))  # the driver imported, a connection pooled\n"
        "started = time.perf_counter()\n"
        "assert prepare_schema(engine) is None\n"
        "print(time.perf_counter() - started, 'alembic' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60
    )
    seconds, imported = result.stdout.split()
    assert imported == "False"
    print(f"revision check of an up-to-date database: {float(seconds) * 1000:.1f} ms")


def test_a_new_revision_is_written_for_a_model_change(tmp_path):
    """scripts/new_revision.py, as docs/migrations.md tells a developer to run it."""
    generate = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sqlalchemy import Column, Text\n"
        "sys.path.insert(0, 'scripts')\n"
        "from new_revision import new_revision\n"
        "from matter_crawler.storage.models import Base\n"
        "Base.metadata.tables['crawl_runs'].append_column(Column('note', Text))\n"
        f"print(new_revision('add a note to runs', Path({str(tmp_path)!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", generate],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    number = len(revisions()) + 1
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path == tmp_path / f"{number:04d}_add_a_note_to_runs.py"
    source = path.read_text()
    assert f'down_revision = "{head_revision()}"' in source
    assert 'with op.batch_alter_table("crawl_runs"' in source
    assert 'batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))' in source
    lint = subprocess.run(
        [Path(sys.executable).with_name("ruff"), "check", path], capture_output=True, check=False
    )
    assert lint.returncode == 0, lint.stdout


def test_a_database_with_only_some_of_our_tables_is_refused(database_url):
    products = OLD_METADATA.tables["products"]
    using(database_url, products.create)
    with pytest.raises(SchemaError) as refused:
        Database(database_url)
    assert "has the tables products but not crawl_runs, dead_letters, product_changes" in str(
        refused.value
    )
    assert using(database_url, lambda engine: set(inspect(engine).get_table_names())) == {
        "products"
    }
