"""What the database commands share: opening the crawl's database, and failing clearly.

The commands read the database a crawl wrote (``DATABASE_URL``); they never
create one. A missing SQLite file, a database without our tables, an
unreachable server or a missing driver each end the command with one line on
stderr (``scrapy export: error: ...``) and exit status 1, never a traceback
and never an empty database file left behind. Like a crawl, they bring an older
database's schema to the code's revision first, saying so on stderr, and refuse
one written by a newer release without writing to it
(:mod:`matter_crawler.storage.schema`).

:class:`DatabaseCommand` is a mixin, not a :class:`~scrapy.commands.ScrapyCommand`
subclass, so that Scrapy does not list this module as a command of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from scrapy.settings import BaseSettings
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..storage import DEFAULT_DATABASE_URL, create_database_engine
from ..storage.schema import SchemaError, SchemaState, display_url, prepare_schema, read_state

FIRST_CRAWL_HINT = "run `scrapy crawl matter_products` first, or set DATABASE_URL"


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def database_url(settings: BaseSettings) -> str:
    return settings.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def shown_url(url: str) -> str:
    """The URL as we may print it: the password hidden, a SQLite URL as its file path."""
    return display_url(url)


def open_database(
    url: str,
    tables: Iterable[str] = ("products",),
    *,
    upgrade: bool = True,
    report: Callable[[str], None] | None = None,
) -> Engine:
    """An engine on an existing crawl database holding ``tables``; CommandError otherwise.

    A SQLite file is checked before connecting, because connecting to a
    missing file creates it. With ``upgrade``, an older schema is upgraded to the
    code's revision and ``report`` told what was done.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CommandError(f"DATABASE_URL {url!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise CommandError(
                f"DATABASE_URL {url!r} is an in-memory SQLite database: it holds no crawl"
            )
        path = Path(parsed.database).expanduser()
        if not path.is_file():
            raise CommandError(f"no database at {parsed.database}: {FIRST_CRAWL_HINT}")
    try:
        engine = create_database_engine(url)
    except (NoSuchModuleError, ImportError) as error:
        raise CommandError(f"cannot open {shown_url(url)}: {error}") from None
    try:
        state = schema_state(engine)
        if state.status in ("newer", "foreign"):
            raise CommandError(state.refusal(shown_url(url)))
        missing = [name for name in tables if name not in state.tables]
        if missing:
            raise CommandError(
                f"{shown_url(url)} is not a matter-crawler database (no {', '.join(missing)} "
                f"table): {FIRST_CRAWL_HINT}"
            )
        if upgrade and state.status != "empty":
            change = prepare_schema(engine, create=False)
            if change is not None and report is not None:
                report(change.describe())
    except SchemaError as error:  # another process changed it since it was read
        engine.dispose()
        raise CommandError(str(error)) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def schema_state(engine: Engine) -> SchemaState:
    """Where the database's schema stands; CommandError if it cannot be read."""
    try:
        with engine.connect() as conn:
            return read_state(conn)
    except SQLAlchemyError as error:
        raise CommandError(
            f"cannot read {shown_url(engine.url.render_as_string(False))}: {first_line(error)}"
        ) from None


def first_line(error: BaseException) -> str:
    """SQLAlchemy's messages run to several lines (statement, background link)."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


class DatabaseCommand:
    """Mixin for commands that read the crawl database.

    Subclasses implement :meth:`execute` instead of ``run``; a
    :class:`CommandError` (or a database error) raised from it becomes one line
    on stderr and exit status 1.
    """

    requires_project = True
    #: Reading needs no Scrapy engine: no reactor, no crawl log lines on stderr.
    requires_crawler_process = False

    settings: BaseSettings | None
    exitcode: int
    command_name = ""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)  # type: ignore[misc]
        # argparse's own errors then read "scrapy export: error: ...", like ours
        parser.prog = f"scrapy {self.command_name}"

    def open_database(
        self, tables: Iterable[str] = ("products",), *, upgrade: bool = True
    ) -> Engine:
        assert self.settings is not None
        return open_database(database_url(self.settings), tables, upgrade=upgrade, report=self.note)

    def note(self, message: str) -> None:
        """A line on stderr that is not an error (stdout may be the command's output)."""
        print(f"scrapy {self.command_name}: {message}", file=sys.stderr)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        try:
            self.execute(args, opts)
        except CommandError as error:
            self.fail(str(error))
        except SQLAlchemyError as error:
            self.fail(f"database error: {first_line(error)}")
        except BrokenPipeError:
            # `scrapy runs | head`: the reader left. Point stdout at /dev/null so
            # the interpreter's final flush does not fail a second time.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError as error:  # a file we write: permissions, a full disk
            self.fail(str(error))

    def fail(self, message: str) -> None:
        print(f"scrapy {self.command_name}: error: {message}", file=sys.stderr)
        self.exitcode = 1

    def execute(self, args: list[str], opts: argparse.Namespace) -> Any:
        raise NotImplementedError
