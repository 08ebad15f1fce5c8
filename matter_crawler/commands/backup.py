"""``scrapy backup -o FILE``: a consistent copy of the database, even mid-crawl.

SQLite: SQLite's online backup of one snapshot (:mod:`matter_crawler.storage.backup`):
the database as it was when the command started, whatever a running crawl commits
meanwhile, and the crawl is not held up. It is checked with ``PRAGMA
integrity_check``. A new FILE gets the database file's permissions.

PostgreSQL: ``pg_dump``'s archive (custom format, for ``pg_restore``), which is one
snapshot too, read back with ``pg_restore --list``.

Either is written to a new temporary file beside FILE, flushed to disk and only
then renamed to FILE, so FILE is either the old file or a complete, checked copy.
An existing FILE is replaced only with ``--force``; the database itself never. The
database is neither upgraded nor changed: the copy is of what is there, whatever
release wrote it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path
from time import monotonic
from urllib.parse import quote

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..redaction import mask_credentials
from ..storage.backup import BackupFailed, copy_sqlite, dump_postgresql
from ._database import (
    FIRST_CRAWL_HINT,
    CommandError,
    DatabaseCommand,
    database_file,
    database_url,
    shown_url,
)
from ._export_files import check_output, replaced_when_done

#: Seconds between two progress lines on stderr (a copy shorter than this prints none).
PROGRESS_SECONDS = 2.0
#: SQLite's files beside a database; the copy's are removed if a failed copy left any.
SIDE_FILES = ("-journal", "-wal", "-shm")


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "backup"

    def syntax(self) -> str:
        return "-o FILE [--force]"

    def short_desc(self) -> str:
        return "Copy the database consistently, even while a crawl writes"

    def long_desc(self) -> str:
        return (
            "Copy the database (DATABASE_URL) to FILE: one consistent snapshot, taken while a "
            "crawl may be writing. SQLite: SQLite's online backup, checked with PRAGMA "
            "integrity_check. PostgreSQL: a pg_dump archive (custom format), read back with "
            "pg_restore --list. FILE appears only when complete; --force replaces it."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the copy")
        parser.add_argument("--force", action="store_true", help="replace FILE if it exists")

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if opts.output == "-":
            raise UsageError(
                "a backup cannot go to standard output: give -o FILE", print_help=False
            )

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        url = database_url(self.settings)
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            raise CommandError(
                f"DATABASE_URL {mask_credentials(url)!r} is not a database URL"
            ) from None
        target = Path(opts.output)
        if backend == "postgresql":
            self.dump(url, target, force=opts.force)
        else:
            self.copy(url, self.sqlite_file(url, backend), target, force=opts.force)

    def dump(self, url: str, target: Path, *, force: bool) -> None:
        mode = check_output(target, force=force, database=None)
        with replaced_when_done(target, mode) as (partial, descriptor):
            os.close(descriptor)  # pg_dump writes the file
            try:
                entries = dump_postgresql(url, partial)
            except BackupFailed as error:
                raise CommandError(f"{error}: {target} not written") from None
            flush(partial)
        flush(target.parent)
        size = target.stat().st_size / 1e6
        print(
            f"Backed up {shown_url(url)} to {target}: pg_dump archive ({size:.1f} MB), "
            f"{entries:,} entries listed by pg_restore"
        )

    def copy(self, url: str, source: Path, target: Path, *, force: bool) -> None:
        assert self.settings is not None
        mode = check_output(target, force=force, database=source)
        if not os.path.lexists(target):
            mode = stat.S_IMODE(source.stat().st_mode)
        said = monotonic()

        def progress(copied: int, total: int) -> None:
            nonlocal said
            if monotonic() - said >= PROGRESS_SECONDS:
                self.note(f"copied {copied:,} of {total:,} pages ({copied / total:.0%})")
                said = monotonic()

        with replaced_when_done(target, mode) as (partial, descriptor):
            os.close(descriptor)  # SQLite opens the file itself
            try:
                copied = copy_sqlite(
                    source,
                    partial,
                    busy_timeout=self.settings.getfloat("DATABASE_BUSY_TIMEOUT"),
                    progress=progress,
                )
                if not copied.sound:
                    raise CommandError(
                        f"the copy failed PRAGMA integrity_check ({'; '.join(copied.integrity)}):"
                        f" {target} not written"
                    )
                flush(partial)
            except sqlite3.Error as error:
                raise CommandError(f"cannot copy {source}: {error}: {target} not written") from None
            finally:
                for suffix in SIDE_FILES:
                    partial.with_name(partial.name + suffix).unlink(missing_ok=True)
        flush(target.parent)
        size = copied.pages * copied.page_size / 1e6
        print(
            f"Backed up {shown_url(url)} to {target}: {copied.pages:,} pages ({size:.1f} MB), "
            "integrity_check ok"
        )

    def sqlite_file(self, url: str, backend: str) -> Path:
        """The SQLite database's file; CommandError for other databases, or not ours."""
        path = database_file(url)
        if backend != "sqlite" or path is None:
            raise CommandError(
                f"{shown_url(url)}: scrapy backup copies SQLite database files and PostgreSQL "
                "databases"
            )
        if not path.is_file():
            self.open_database()  # the other commands' message for a missing file
        # read, not upgraded: a database of any schema revision is copied as it is
        try:
            tables = tables_of(path)
        except sqlite3.DatabaseError as error:
            raise CommandError(f"cannot read {path}: {error}") from None
        if "products" not in tables:
            raise CommandError(
                f"{path} is not a matter-crawler database (no products table): {FIRST_CRAWL_HINT}"
            )
        return path


def tables_of(path: Path) -> set[str]:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        return {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }


def flush(path: Path) -> None:
    """Write a file's (or a directory's entries') data to disk before relying on it."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
