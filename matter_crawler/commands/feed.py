"""``scrapy feed``: an Atom 1.0 feed of the catalogue's recent changes.

New certified products of the last ``--since`` days (or since a date), newest first,
at most ``--limit``; ``--include changed,delisted`` adds changed and delisted products
(:mod:`matter_crawler.reporting.feed` says what an entry holds). The defaults are the
settings ``FEED_ATOM_DAYS``, ``FEED_ATOM_LIMIT`` and ``FEED_ATOM_INCLUDE``, which the
feed extension (``FEED_ATOM_PATH``) uses at the end of every crawl.

The database is opened read-only; the file is written as ``scrapy export`` writes
its files: never over the database, an existing file only with ``--force``, and
renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from ..reporting.feed import parse_include, read_entries, render_atom
from ._database import (
    DatabaseCommand,
    QueryClock,
    database_file,
    database_url,
    open_read_only_database,
)
from ._export_files import check_output, default_mode, write_output


def parse_since(text: str, now: datetime) -> datetime:
    """``30`` (days before ``now``), ``2026-11-01`` or ``2026-11-01T12:00:00+00:00`` (UTC)."""
    value = text.strip()
    try:
        days = float(value.removesuffix("d"))
    except ValueError:
        pass
    else:
        if days < 0:
            raise UsageError("--since must not be negative", print_help=False)
        return now - timedelta(days=days)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give days (30) or a date (2026-11-01)", print_help=False
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "feed"

    def syntax(self) -> str:
        return "-o FILE [--since DAYS|DATE] [--limit N] [--include changed,delisted] [--force]"

    def short_desc(self) -> str:
        return "Write an Atom feed of new (and changed, delisted) certified products"

    def long_desc(self) -> str:
        return (
            "Write an Atom 1.0 feed of the products first stored in the last --since days "
            "(DATABASE_URL), newest first, one entry per product with a stable id; "
            "--include changed,delisted adds products changed or delisted in that time. "
            "An existing file is replaced only with --force, and never the database."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "-o", "--output", metavar="FILE", help="file to write (- for standard output)"
        )
        parser.add_argument(
            "--since",
            metavar="DAYS|DATE",
            help="entries since this many days ago, or since a date (FEED_ATOM_DAYS: 30)",
        )
        parser.add_argument(
            "--limit", type=int, metavar="N", help="most entries (FEED_ATOM_LIMIT: 200)"
        )
        parser.add_argument(
            "--include",
            metavar="KINDS",
            help="also changed and/or delisted products: changed,delisted (FEED_ATOM_INCLUDE)",
        )
        parser.add_argument(
            "--feed-url", metavar="URL", help="the URL the feed is served at (its self link)"
        )
        parser.add_argument(
            "--force", action="store_true", help="replace FILE if it exists; never the database"
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if not opts.output:
            raise UsageError("give the file to write: -o FILE (- for standard output)")
        now = datetime.now(UTC)
        since = (
            opts.since if opts.since is not None else str(self.settings.getfloat("FEED_ATOM_DAYS"))
        )
        opts.since = parse_since(since, now)
        if opts.limit is None:
            opts.limit = self.settings.getint("FEED_ATOM_LIMIT")
        if opts.limit < 1:
            raise UsageError("--limit must be at least 1", print_help=False)
        try:
            opts.include = parse_include(
                opts.include
                if opts.include is not None
                else self.settings.getlist("FEED_ATOM_INCLUDE")
            )
        except ValueError as error:
            raise UsageError(str(error), print_help=False) from None

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        url = database_url(self.settings)
        mode = (
            default_mode()
            if opts.output == "-"
            else check_output(Path(opts.output), force=opts.force, database=database_file(url))
        )
        engine = open_read_only_database(url, QueryClock(0), report=self.note)
        try:
            entries = read_entries(engine, opts.since, opts.limit, opts.include)
        finally:
            engine.dispose()
        data = render_atom(
            entries,
            site_url=self.settings.get("CSA_BASE_URL"),
            feed_url=opts.feed_url,
            include=opts.include,
        )
        write_output(opts.output, data, mode)
        target = "standard output" if opts.output == "-" else opts.output
        print(f"Wrote {len(entries)} feed entries to {target} (Atom)", file=sys.stderr)
