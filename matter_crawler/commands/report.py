"""``scrapy report``: one self-contained HTML report of the catalogue and the crawls.

Charts (certifications per month by device-type group, top manufacturers all time
and over the last 12 months, transport mix and specification-version adoption per
quarter) and tables (the newest certifications, the crawl history, the DCL
cross-check when one was stored), from :mod:`matter_crawler.reporting`.
``--since``/``--until`` (dates, inclusive) keep the products certified, the runs
started and the checks made in that period.

The database is opened read-only; the file is written as ``scrapy export`` writes
its files: never over the database, an existing file only with ``--force``, renamed
into place only when complete.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from ..reporting.report_data import read_report
from ..reporting.report_html import render_report
from ._database import (
    DatabaseCommand,
    QueryClock,
    database_file,
    database_url,
    open_read_only_database,
)
from ._export_files import check_output, default_mode, write_output


def parse_day(option: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r}: give a date (2026-11-01)", print_help=False) from None


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "report"

    def syntax(self) -> str:
        return "-o FILE [--since DATE] [--until DATE] [--force]"

    def short_desc(self) -> str:
        return "Write a self-contained HTML report with charts of the catalogue and crawls"

    def long_desc(self) -> str:
        return (
            "Write one HTML file (styles and SVG charts inline; it loads nothing and runs no "
            "script) with the catalogue's certifications per month by device-type group, top "
            "manufacturers, transport mix and specification-version adoption over time, the "
            "newest certifications, the crawl history and the DCL cross-check summary, from "
            "DATABASE_URL. --since/--until keep one period. An existing file is replaced "
            "only with --force, and never the database."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "-o", "--output", metavar="FILE", help="file to write (- for standard output)"
        )
        parser.add_argument("--since", metavar="DATE", help="from this date (inclusive)")
        parser.add_argument("--until", metavar="DATE", help="up to this date (inclusive)")
        parser.add_argument(
            "--force", action="store_true", help="replace FILE if it exists; never the database"
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if not opts.output:
            raise UsageError("give the file to write: -o FILE (- for standard output)")
        opts.since = parse_day("--since", opts.since)
        opts.until = parse_day("--until", opts.until)
        if opts.since and opts.until and opts.since > opts.until:
            raise UsageError("--since is after --until", print_help=False)

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
            data = read_report(engine, opts.since, opts.until)
        finally:
            engine.dispose()
        write_output(opts.output, render_report(data).encode("utf-8"), mode)
        target = "standard output" if opts.output == "-" else opts.output
        print(
            f"Wrote the report ({data.totals['listed']} listed products, {len(data.runs)} runs) "
            f"to {target}",
            file=sys.stderr,
        )
