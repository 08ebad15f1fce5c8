"""``scrapy runs``: the recent crawl runs from ``crawl_runs``, newest first."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from ..storage.runs import recent_runs
from ._database import DatabaseCommand
from ._text import dumps, duration, table, utc_time

HEADERS = (
    "id",
    "started (UTC)",
    "status",
    "mode",
    "stage",
    "duration",
    "pages",
    "new",
    "changed",
    "delisted",
    "dead letters",
    "errors",
)
NUMERIC = {0, 7, 8, 9, 10, 11}


def run_row(run: dict[str, Any], now: datetime) -> list[Any]:
    seconds = run["duration_seconds"]
    if seconds is None and run["status"] == "running":
        seconds = (now - run["started_at"]).total_seconds()  # still going: time so far
    pages = str(run["pages_crawled"] or 0)
    if run["pages_planned"]:
        pages += f"/{run['pages_planned']}"
    return [
        run["id"],
        utc_time(run["started_at"]),
        run["status"],
        run["mode"] or "-",
        run["stage"] or "-",
        duration(seconds),
        pages,
        run["products_new"],
        run["products_changed"],
        run["products_delisted"],
        run["dead_letters"],
        run["errors"],
    ]


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "runs"

    def syntax(self) -> str:
        return "[-n COUNT] [--json]"

    def short_desc(self) -> str:
        return "List the recent crawl runs"

    def long_desc(self) -> str:
        return (
            "List the most recent crawl runs recorded in crawl_runs (DATABASE_URL), newest "
            "first: status, mode, stage reached, duration, listing pages crawled/planned, "
            "products new/changed/delisted, dead letters left pending and errors logged."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "-n", "--count", type=int, default=20, metavar="COUNT", help="runs to show (20)"
        )
        parser.add_argument(
            "--json", action="store_true", help="print the runs' full records as JSON"
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if opts.count < 1:
            raise UsageError("-n must be at least 1", print_help=False)

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        engine = self.open_database(("crawl_runs",))
        try:
            runs = recent_runs(engine, opts.count)
        finally:
            engine.dispose()
        if opts.json:
            print(dumps(runs))
            return
        if not runs:
            print("No crawl runs recorded yet.")
            return
        now = datetime.now(UTC)
        print(table(HEADERS, [run_row(run, now) for run in runs], right=NUMERIC))
