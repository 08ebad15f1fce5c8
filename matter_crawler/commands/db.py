"""``scrapy db upgrade|current|history``: the database's schema revision, by hand.

Crawls and the other commands upgrade an older database on their own
(:mod:`matter_crawler.storage.schema`); this command does it on request, says
where a database stands without changing it, and lists the revisions the
installed code knows.

- ``upgrade``: brings the database (``DATABASE_URL``) to the head revision; an
  empty database (a new PostgreSQL database, an empty SQLite file) gets the
  schema created. A missing SQLite file is an error, as for the other commands.
- ``current``: the database's revision and whether it is up to date. Reads only.
- ``history``: the revisions, oldest first, the head marked. Needs no database.

A database written by a newer release is refused with exit status 1, untouched.
"""

from __future__ import annotations

import argparse

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from ..storage.schema import SchemaError, head_revision, history, prepare_schema
from ._database import CommandError, DatabaseCommand, database_url, schema_state, shown_url
from ._text import table

ACTIONS = ("upgrade", "current", "history")


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "db"

    def syntax(self) -> str:
        return "upgrade|current|history"

    def short_desc(self) -> str:
        return "Upgrade the database schema, show its revision, or list the revisions"

    def long_desc(self) -> str:
        return (
            "upgrade: bring the database (DATABASE_URL) to the newest schema revision this "
            "release knows (crawls and the other commands do it on their own; an empty "
            "database gets the schema created). current: the database's revision and whether "
            "it is up to date, without changing anything. history: the revisions, oldest "
            "first. A database written by a newer release is refused and left untouched."
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if len(args) != 1 or args[0] not in ACTIONS:
            raise UsageError(f"give one of {', '.join(ACTIONS)}", print_help=False)

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        action = args[0]
        if action == "history":
            self.history()
            return
        engine = self.open_database((), upgrade=False)
        try:
            name = shown_url(database_url(self.settings))  # type: ignore[arg-type]
            state = schema_state(engine)
            if action == "current":
                print(f"{name}: {state.describe()}")
                return
            if state.status == "current":
                print(f"{name}: already at the head revision {head_revision()}, nothing to do")
                return
            try:
                change = prepare_schema(engine)
            except SchemaError as error:
                raise CommandError(str(error)) from None
            if change is None:  # another process upgraded it meanwhile
                print(f"{name}: already at the head revision {head_revision()}, nothing to do")
            else:
                print(f"{name}: {change.describe()}")
        finally:
            engine.dispose()

    def history(self) -> None:
        head = head_revision()
        rows = [
            [
                revision.revision + (" (head)" if revision.revision == head else ""),
                revision.down_revision or "-",
                revision.message,
            ]
            for revision in history()
        ]
        print(table(("revision", "revises", "description"), rows))
