"""``scrapy dead-letters``: list the pending dead letters, or replay them.

(The module's name has a hyphen because Scrapy names a command after its module.)
URLs and reasons come from the crawled site: they are printed terminal-safe
(control characters escaped, :mod:`matter_crawler.commands._text`).

A dead letter is a request that failed for good (see
:mod:`matter_crawler.storage.dead_letters`). ``--replay`` runs the
``matter_products`` spider with ``replay_dead_letters=1`` in this process,
exactly as ``scrapy crawl matter_products -a replay_dead_letters=1`` would,
with the same ``-s`` settings; letters whose page now succeeds are resolved.
"""

from __future__ import annotations

import argparse
from typing import Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy.exc import SQLAlchemyError

from ..json_log import use_json_log
from ..storage.dead_letters import count_pending, pending_letters
from ._database import CommandError, DatabaseCommand, first_line
from ._text import dumps, one_line, table, utc_time

SPIDER = "matter_products"
HEADERS = ("url", "stage", "class", "attempts", "last error", "last failed (UTC)")


def letter_row(letter: dict[str, Any]) -> list[Any]:
    return [
        letter["url"],
        letter["stage"] or "-",
        letter["failure_class"],
        letter["attempts"],
        one_line(letter["last_error"], 60),
        utc_time(letter["last_failed_at"]),
    ]


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "dead-letters"
    #: pending letters when the command started, and why they could not be counted
    pending_before = 0
    replay_error: CommandError | None = None

    def syntax(self) -> str:
        return "[--replay] [-n COUNT] [--json]"

    def short_desc(self) -> str:
        return "List the pending dead letters, or replay them (--replay)"

    def long_desc(self) -> str:
        return (
            "List the requests that failed for good and are still pending in dead_letters "
            "(DATABASE_URL): URL, stage, failure class, attempts, last error, when it last "
            "failed. --replay crawls them again (the matter_products spider with "
            "replay_dead_letters=1, honouring -s settings) and resolves those that succeed."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--replay", action="store_true", help="fetch the pending dead letters again"
        )
        parser.add_argument(
            "-n",
            "--count",
            type=int,
            default=100,
            metavar="COUNT",
            help="letters to list (100; 0 = all)",
        )
        parser.add_argument("--json", action="store_true", help="print the letters as JSON")

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if opts.count < 0:
            raise UsageError("-n must be 0 (all) or more", print_help=False)
        if opts.replay:
            # Scrapy's cmdline builds the crawler process (the reactor, the crawl log on
            # stderr) after process_options, and only for commands that ask. Ask only when
            # there is something to replay: a missing database or "nothing to replay"
            # stays one clean line.
            try:
                self.pending_before = self.count_pending()
            except CommandError as error:
                self.replay_error = error
            except SQLAlchemyError as error:
                self.replay_error = CommandError(f"database error: {first_line(error)}")
            self.requires_crawler_process = self.pending_before > 0
            if self.requires_crawler_process:
                assert self.settings is not None
                use_json_log(self.settings)  # LOG_FORMAT=json, as for scrapy crawl

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        if opts.replay:
            self.replay()
        else:
            self.list_letters(opts.count or None, as_json=opts.json)

    def count_pending(self) -> int:
        engine = self.open_database(("dead_letters",))
        try:
            return count_pending(engine)
        finally:
            engine.dispose()

    def list_letters(self, limit: int | None, *, as_json: bool) -> None:
        engine = self.open_database(("dead_letters",))
        try:
            total = count_pending(engine)
            letters = pending_letters(engine, limit)
        finally:
            engine.dispose()
        if as_json:
            print(dumps(letters))
            return
        if not letters:
            print("No pending dead letters.")
            return
        print(table(HEADERS, [letter_row(letter) for letter in letters], right={3}))
        if total > len(letters):
            print(f"... and {total - len(letters)} more (-n 0 lists all)")
        print(f"{total} pending; `scrapy dead-letters --replay` fetches them again.")

    def replay(self) -> None:
        if self.replay_error is not None:
            raise self.replay_error
        if not self.pending_before:
            print("No pending dead letters: nothing to replay.")
            return
        assert self.crawler_process is not None
        self.crawler_process.crawl(SPIDER, replay_dead_letters="1")
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        before, after = self.pending_before, self.count_pending()
        print(
            f"Replayed {before} dead letters: {max(before - after, 0)} resolved, "
            f"{after} still pending."
        )
