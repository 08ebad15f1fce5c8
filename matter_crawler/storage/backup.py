"""A consistent copy of a SQLite database while a crawl may be writing to it.

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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

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
