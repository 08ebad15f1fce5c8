"""Schema revisions: which one a database is at, and bringing it to the code's (Alembic).

The revisions are Alembic scripts shipped in the package
(``matter_crawler/storage/migrations/versions/``, one file per revision, named
after its revision id: ``0001_baseline.py``, ``0002_...``), so an egg carries them.
Opening a database (:func:`prepare_schema`, called by
:class:`~matter_crawler.storage.Database` and the commands):

- at the newest revision the code knows (the head): nothing to do. This costs
  one look at the table names and one small select, and Alembic is not even
  imported;
- empty (none of our tables): every revision is run, which creates it at the head;
- holding our tables but no ``alembic_version`` (made by a release before schema
  revisions): recorded as ``0001_baseline``, then upgraded;
- at an older revision: upgraded to the head, logged as from which to which;
- at a revision the code does not know (written by a newer release), or holding
  some of our tables but not all of them: refused with :class:`SchemaError`,
  and nothing is written to it.

An upgrade is one transaction, taken with the database's write lock (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level advisory lock), and the
revision is read again under the lock: two processes opening an old database
at once upgrade it once.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, column, event, inspect, select, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from ..redaction import mask_credentials
from .engine import create_database_engine

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

BASELINE_REVISION = "0001_baseline"
VERSION_TABLE = "alembic_version"
#: The tables of every release before schema revisions (the baseline revision's).
BASELINE_TABLES = frozenset({"products", "product_changes", "crawl_runs", "dead_letters"})
#: Key of PostgreSQL's advisory lock around an upgrade (b"matter\x00\x01"): any constant will do.
UPGRADE_LOCK_KEY = 0x6D6174746572_0001

_PACKAGE = "matter_crawler.storage"
_MIGRATIONS = "migrations"


class SchemaError(Exception):
    """A database this code must not write to: newer than the code, or not ours."""


def display_url(url: str) -> str:
    """A database URL as it may be printed: the password hidden, SQLite as its file path."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    # credentials in the query string too (?password=...), not only user:password@
    return mask_credentials(parsed.render_as_string(hide_password=True))


# -- the revisions the code knows ------------------------------------------------------


def _migrations_resource() -> Traversable:
    return files(_PACKAGE).joinpath(_MIGRATIONS)


@cache
def revisions() -> tuple[str, ...]:
    """The revision ids the code knows, oldest first: the names of the revision files.

    Read from the package's file list, without Alembic (the cheap start-up path);
    tests/crawl/test_migrations.py checks that these are Alembic's revisions, in its order.
    """
    versions = _migrations_resource().joinpath("versions")
    names = [
        entry.name.removesuffix(".py")
        for entry in versions.iterdir()
        if entry.name.endswith(".py") and not entry.name.startswith("_")
    ]
    return tuple(sorted(names))


def head_revision() -> str:
    return revisions()[-1]


# -- where a database stands -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a database holds: our tables, and the revisions ``alembic_version`` records."""

    tables: frozenset[str]
    recorded: tuple[str, ...]  # alembic_version's rows (one, in a linear history)

    @property
    def revision(self) -> str | None:
        return ", ".join(self.recorded) if self.recorded else None

    @property
    def status(self) -> str:
        """``empty``, ``unversioned``, ``current``, ``behind``, ``newer`` or ``foreign``."""
        if self.recorded:
            if any(revision not in revisions() for revision in self.recorded):
                return "newer"
            return "current" if self.recorded == (head_revision(),) else "behind"
        ours = self.tables & BASELINE_TABLES
        if not ours:
            return "empty"
        return "unversioned" if ours == BASELINE_TABLES else "foreign"

    def describe(self) -> str:
        """One line for ``scrapy db current``."""
        head = head_revision()
        match self.status:
            case "current":
                return f"revision {head} (head): up to date"
            case "behind":
                behind = len(revisions()) - 1 - revisions().index(self.recorded[-1])
                return (
                    f"revision {self.revision}: {behind} revision(s) behind the head {head}; "
                    "the next crawl or `scrapy db upgrade` upgrades it"
                )
            case "unversioned":
                return (
                    "no recorded revision (made before schema revisions): the next crawl or "
                    f"`scrapy db upgrade` records it as {BASELINE_REVISION} and upgrades it "
                    f"to {head}"
                )
            case "empty":
                return f"no matter-crawler tables: the first crawl creates them at revision {head}"
            case _:
                return self.refusal("this database")

    def refusal(self, name: str) -> str:
        """Why a database in this state is not written to (newer or foreign only)."""
        if self.status == "newer":
            return (
                f"{name} is at schema revision {self.revision}, which this matter-crawler "
                f"does not know (its newest is {head_revision()}): a newer release wrote it. "
                "Run that release or a newer one; nothing was written to the database"
            )
        present = ", ".join(sorted(self.tables & BASELINE_TABLES))
        missing = ", ".join(sorted(BASELINE_TABLES - self.tables))
        return (
            f"{name} has the tables {present} but not {missing}: no matter-crawler release "
            "made it. Nothing was written to the database"
        )


def read_state(conn: Connection) -> SchemaState:
    """Where the database stands (two cheap reads)."""
    tables = frozenset(inspect(conn).get_table_names())
    recorded: tuple[str, ...] = ()
    if VERSION_TABLE in tables:
        versions = table(VERSION_TABLE, column("version_num"))
        recorded = tuple(sorted(row[0] for row in conn.execute(select(versions.c.version_num))))
    return SchemaState(tables, recorded)


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """What opening a database did to its schema."""

    before: str  # "empty", "unversioned" or the revision it was at
    after: str

    def describe(self) -> str:
        if self.before == "empty":
            return f"Created the database schema at revision {self.after}"
        if self.before == "unversioned":
            recorded = (
                f"Recorded the database schema (made before schema revisions) as revision "
                f"{BASELINE_REVISION}"
            )
            if self.after == BASELINE_REVISION:
                return recorded
            return f"{recorded} and upgraded it to {self.after}"
        return f"Upgraded the database schema from revision {self.before} to {self.after}"


def prepare_schema(engine: Engine, *, create: bool = True) -> SchemaChange | None:
    """Bring the database to the head revision (see the module's docstring).

    Returns what was done, None when it was already there. Raises SchemaError for a
    database that must not be written to, and for an empty one when not ``create``.
    """
    with engine.connect() as conn:
        state = read_state(conn)
    if state.status == "current":
        return None
    refuse_unless_writable(state, engine, create=create)
    return upgrade_to_head(engine, create=create)


def refuse_unless_writable(state: SchemaState, engine: Engine, *, create: bool) -> None:
    if state.status in ("newer", "foreign"):
        raise SchemaError(state.refusal(display_url(engine.url.render_as_string(False))))
    if state.status == "empty" and not create:
        raise SchemaError(
            f"{display_url(engine.url.render_as_string(False))} holds no matter-crawler tables"
        )


def upgrade_to_head(engine: Engine, *, create: bool = True) -> SchemaChange | None:
    """Upgrade under the write lock, in one transaction; None if another process just did."""
    with _quiet_alembic():
        from alembic import command  # noqa: PLC0415  (Alembic only when there is work for it)

    with _locked_transaction(engine) as conn:
        state = read_state(conn)  # again: another process may have upgraded meanwhile
        if state.status == "current":
            return None
        refuse_unless_writable(state, engine, create=create)
        config = alembic_config(conn)
        with _quiet_alembic():
            if state.status == "unversioned":
                command.stamp(config, BASELINE_REVISION)
            command.upgrade(config, "head")
        before = state.status if state.status in ("empty", "unversioned") else state.revision
    change = SchemaChange(before or "empty", head_revision())
    logger.info("%s: %s", change.describe(), display_url(engine.url.render_as_string(False)))
    return change


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic's INFO lines (plugins set up, the context's class) say nothing to a user:
    the line logged after the upgrade says what changed."""
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    alembic_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        alembic_logger.setLevel(level)


@contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's write lock until it commits or rolls back."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY})
            yield conn
        return
    database = engine.url.database
    if not database or database == ":memory:":  # one connection, no one else to lock out
        with engine.begin() as conn:
            yield conn
        return
    # pysqlite starts its transactions lazily, before the first INSERT/UPDATE and not
    # before DDL: a connection of our own begins them itself, with the write lock.
    locking = _sqlite_engine(engine)

    @event.listens_for(locking, "connect")
    def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(locking, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with locking.begin() as conn:
            yield conn
    finally:
        locking.dispose()


def _sqlite_engine(engine: Engine) -> Engine:
    return create_database_engine(engine.url.render_as_string(False), poolclass=NullPool)


# -- Alembic, configured in code ---------------------------------------------------------


def alembic_config(conn: Connection | None = None) -> Config:
    """Alembic's configuration: the package's migrations, and the connection to migrate."""
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    # a new revision's file is named after its id alone: 0002_add_x.py (% doubled for configparser)
    config.set_main_option("file_template", "%%(rev)s")
    config.set_main_option("path_separator", "os")
    if conn is not None:
        config.attributes["connection"] = conn
    return config


@cache
def migrations_directory() -> Path:
    """The migrations on the file system (Alembic reads a directory).

    Installed normally or in development mode that is the package's own directory;
    from a zipped egg (scrapyd) the files are copied to a temporary directory first,
    removed when the process exits.
    """
    resource = _migrations_resource()
    if isinstance(resource, Path):
        return resource
    target = Path(tempfile.mkdtemp(prefix="matter-crawler-migrations-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    _copy_tree(resource, target)
    return target


def _copy_tree(source: Traversable, target: Path) -> None:
    for entry in source.iterdir():
        if entry.is_dir():
            if entry.name != "__pycache__":
                (target / entry.name).mkdir()
                _copy_tree(entry, target / entry.name)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())


@dataclass(frozen=True, slots=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str


def history() -> list[Revision]:
    """Every revision the code knows, oldest first, with its message (Alembic's view)."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    script = ScriptDirectory.from_config(alembic_config())
    found = [
        Revision(
            script_revision.revision,
            script_revision.down_revision,  # type: ignore[arg-type]
            (script_revision.doc or "").strip().splitlines()[0] if script_revision.doc else "",
        )
        for script_revision in script.walk_revisions()
    ]
    return found[::-1]
