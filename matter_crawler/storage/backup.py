"""A consistent copy of the database while a crawl may be writing to it.

SQLite (:func:`copy_sqlite`):

SQLite's online backup API (:meth:`sqlite3.Connection.backup`) copies the
database page by page, :data:`STEP_PAGES` pages a step, reporting progress
after each. On its own, a step-wise backup starts again from the first page
whenever another connection commits between two steps: against a crawl that
commits every batch it may never end. So the source connection first opens
a read transaction and holds it to the end: every step reads that one snapshot
(the backup is the database as it was when the command started), and no
commit restarts it. In WAL mode, which every database a crawl opened is in, a
reader does not block the writer: the crawl commits on meanwhile (its WAL
file grows until the copy ends, and is checkpointed after).

The source is opened read-only (``mode=ro``). The copy is switched to the
rollback journal (one self-contained file, no ``-wal`` beside it) and checked
with ``PRAGMA integrity_check`` before the caller renames it into place.

PostgreSQL (:func:`dump_postgresql`): the server's own tool, ``pg_dump``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

#: Pages copied per step (4 MiB at SQLite's default 4 KiB page).
STEP_PAGES = 1024


@dataclass(frozen=True, slots=True)
class Copied:
    pages: int
    page_size: int
    integrity: list[str]  # PRAGMA integrity_check's lines: ["ok"] for a sound copy

    @property
    def sound(self) -> bool:
        return self.integrity == ["ok"]


def copy_sqlite(
    source: Path,
    target: Path,
    *,
    busy_timeout: float,
    progress: Callable[[int, int], None] | None = None,
    step_pages: int = STEP_PAGES,
) -> Copied:
    """Copy ``source`` into the new, empty file ``target`` from one snapshot.

    ``progress(copied, total)`` is called after each step of ``step_pages`` pages.
    """
    uri = f"file:{quote(str(source.resolve()))}?mode=ro"
    reader = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts
        copy = sqlite3.connect(target, isolation_level=None)
        try:

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            reader.backup(copy, pages=step_pages, progress=step, sleep=0)
            reader.execute("COMMIT")
            copy.execute("PRAGMA journal_mode=DELETE")
            pages = copy.execute("PRAGMA page_count").fetchone()[0]
            page_size = copy.execute("PRAGMA page_size").fetchone()[0]
            try:
                integrity = [row[0] for row in copy.execute("PRAGMA integrity_check")]
            except sqlite3.DatabaseError as error:  # too damaged to be checked at all
                integrity = [str(error)]
        finally:
            copy.close()
    finally:
        reader.close()
    return Copied(pages, page_size, integrity)


class BackupFailed(Exception):
    """pg_dump or pg_restore failed, or is missing: why, in one line."""


def dump_postgresql(url: str, target: Path) -> int:
    """``pg_dump``'s archive (custom format) of the database at ``url``, into ``target``.

    pg_dump reads one snapshot (a repeatable-read transaction) and takes only
    ``ACCESS SHARE`` table locks, which a crawl's inserts, updates, deletes and its
    writer lock's ``LOCK TABLE ... IN EXCLUSIVE MODE`` do not wait for. The password,
    if the URL holds one, goes to pg_dump in its environment (``PGPASSWORD``), never on
    its command line, where other users' ``ps`` would show it. The archive is then read
    back with ``pg_restore --list``. Returns the number of entries that listing holds.
    """
    dump, restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if dump is None or restore is None:
        raise BackupFailed(
            "pg_dump and pg_restore are not installed (Debian: apt-get install postgresql-client)"
        )
    parsed = make_url(url)
    environment = dict(os.environ)
    if parsed.password is not None:
        environment["PGPASSWORD"] = str(parsed.password)
    conninfo = parsed.set(drivername="postgresql", password=None)
    _run(
        [
            dump,
            "--format=custom",
            "--no-password",
            f"--file={target}",
            f"--dbname={conninfo.render_as_string(hide_password=False)}",
        ],
        environment,
    )
    listing = _run([restore, "--list", str(target)], environment)
    return sum(1 for line in listing.splitlines() if line and not line.startswith(";"))


def _run(command: list[str], environment: dict[str, str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        program = Path(command[0]).name
        raise BackupFailed(f"{program} failed: {lines[0] if lines else f'exit {done.returncode}'}")
    return done.stdout
