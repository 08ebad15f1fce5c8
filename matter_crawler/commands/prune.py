"""``scrapy prune --older-than 180d``: delete old change rows and resolved dead letters.

What goes and what stays is :mod:`matter_crawler.storage.prune`'s rule: the change
rows of runs that ended before the cutoff, the dead letters resolved before it;
never the products, the run records, pending letters or a running run's rows.
``--dry-run`` counts them and deletes nothing.

A prune is a writer: it takes the database's writer lock, as a crawl does
(:mod:`matter_crawler.storage.lock`), for the few seconds it deletes. While a crawl
holds the lock, it refuses with exit status 1 and names the crawl, or, with
``-s DATABASE_LOCK=wait``, waits for the crawl to end. A crawl that starts while
the prune runs finds the lock taken, as it would another crawl's. ``--dry-run``
takes no lock and runs beside a crawl.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime, timedelta

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ..core.liveness import ProcessIdentity
from ..storage import prune as pruning
from ..storage.lock import MODES, WAIT, Acquired, LockBackend, LockHolder, Refused, backend_for
from ._database import CommandError, DatabaseCommand, database_url, shown_url
from ._text import table, utc_time

UNITS = {"d": "days", "h": "hours"}
#: Seconds between two asks for the lock with DATABASE_LOCK=wait.
WAIT_POLL_SECONDS = 1.0


def parse_age(text: str) -> timedelta:
    """``180d``, ``36h``, ``1.5d``: an age in days or hours; UsageError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dh])\s*", text.lower())
    if match is None:
        raise UsageError(
            f"--older-than {text!r}: give a number of days or hours, e.g. 180d or 36h",
            print_help=False,
        )
    return timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "prune"

    def syntax(self) -> str:
        return "--older-than AGE [--dry-run]"

    def short_desc(self) -> str:
        return "Delete old runs' change rows and old resolved dead letters"

    def long_desc(self) -> str:
        return (
            "Delete from DATABASE_URL the product_changes and dcl_changes rows of runs that "
            "ended more than AGE ago (180d, 36h) and the dead letters resolved more than AGE "
            "ago. Products, run records, pending dead letters and a running run's rows are "
            "kept. Takes the database's writer lock: refuses while a crawl holds it "
            "(-s DATABASE_LOCK=wait waits). --dry-run only counts."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--older-than",
            required=True,
            metavar="AGE",
            help="delete what is older than this: days (180d) or hours (36h)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go, delete nothing"
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        opts.age = parse_age(opts.older_than)

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        cutoff = datetime.now(UTC) - opts.age
        # an older schema lacking a table is upgraded first
        engine = self.open_database(("product_changes", "dead_letters", "crawl_runs"))
        try:
            if opts.dry_run:
                busy = pruning.crawl_lock_held(engine)
                counts = pruning.count(engine, cutoff, crawl_may_run=busy)
                self.report(counts, cutoff, opts.older_than, dry_run=True)
                return
            backend = backend_for(engine)
            holder = self.take_lock(engine, backend)
            try:
                counts = pruning.prune(engine, cutoff)
            finally:
                backend.release(engine, holder)
                backend.close()
            self.report(counts, cutoff, opts.older_than, dry_run=False)
        finally:
            engine.dispose()

    def take_lock(self, engine: Engine, backend: LockBackend) -> LockHolder:
        """The writer lock, as a crawl takes it (DATABASE_LOCK: refuse, or wait)."""
        assert self.settings is not None
        mode = self.settings.get("DATABASE_LOCK")
        if mode not in MODES:
            raise CommandError(f"DATABASE_LOCK must be one of {', '.join(MODES)}, not {mode!r}")
        stale_after = self.settings.getfloat("DATABASE_LOCK_STALE_AFTER")
        waiting = False
        while True:
            me = LockHolder.new(ProcessIdentity.current(), None, datetime.now(UTC))
            try:
                outcome = backend.try_acquire(engine, me, stale_after, me.acquired_at)
            except DBAPIError:
                if mode != WAIT:
                    raise
                outcome = None  # busy past DATABASE_BUSY_TIMEOUT with the crawl's write: ask again
            if isinstance(outcome, Acquired):
                if outcome.took_over is not None:
                    self.note(
                        f"took over the lock of {outcome.took_over.describe()}: {outcome.why_stale}"
                    )
                return outcome.holder
            name = shown_url(database_url(self.settings))
            if isinstance(outcome, Refused) and mode != WAIT:
                raise CommandError(
                    f"{name} is in use by {outcome.describe()}: nothing deleted; prune when "
                    "it ends (-s DATABASE_LOCK=wait waits for it)"
                )
            if isinstance(outcome, Refused) and not waiting:
                self.note(f"waiting for {outcome.describe()} to end (DATABASE_LOCK=wait)")
                waiting = True
            time.sleep(WAIT_POLL_SECONDS)

    def report(self, counts: dict[str, int], cutoff: datetime, age: str, *, dry_run: bool) -> None:
        verb = "Would delete" if dry_run else "Deleted"
        print(f"{verb} rows older than {age} (before {utc_time(cutoff)} UTC):")
        print(table(("table", "rows"), [[name, counts[name]] for name in counts], right={1}))
        if dry_run:
            print("Dry run: nothing was deleted.")
