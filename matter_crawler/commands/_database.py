"""What the database commands share: opening the crawl's database, and failing clearly.

The commands read the database a crawl wrote (``DATABASE_URL``); they never
create one. A missing SQLite file, a database without our tables, an
unreachable server or a missing driver each end the command with one line on
stderr (``scrapy export: error: ...``) and exit status 1, never a traceback
and never an empty database file left behind.

:class:`DatabaseCommand` is a mixin, not a :class:`~scrapy.commands.ScrapyCommand`
subclass, so that Scrapy does not list this module as a command of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scrapy.settings import BaseSettings
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..storage import DEFAULT_DATABASE_URL, create_database_engine

FIRST_CRAWL_HINT = "run `scrapy crawl matter_products` first, or set DATABASE_URL"


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def database_url(settings: BaseSettings) -> str:
    return settings.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def shown_url(url: str) -> str:
    """The URL as we may print it: the password hidden, a SQLite URL as its file path."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def open_database(
    url: str, tables: Iterable[str] = ("products",), busy_timeout: float | None = None
) -> Engine:
    """An engine on an existing crawl database holding ``tables``; CommandError otherwise.

    A SQLite file is checked before connecting, because connecting to a
    missing file creates it.
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
        engine = create_database_engine(url, busy_timeout=busy_timeout)
    except (NoSuchModuleError, ImportError) as error:
        raise CommandError(f"cannot open {shown_url(url)}: {error}") from None
    try:
        present = set(inspect(engine).get_table_names())
    except SQLAlchemyError as error:
        engine.dispose()
        raise CommandError(f"cannot read {shown_url(url)}: {first_line(error)}") from None
    missing = [name for name in tables if name not in present]
    if missing:
        engine.dispose()
        raise CommandError(
            f"{shown_url(url)} is not a matter-crawler database (no {', '.join(missing)} "
            f"table): {FIRST_CRAWL_HINT}"
        )
    return engine


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

    def open_database(self, tables: Iterable[str] = ("products",)) -> Engine:
        assert self.settings is not None
        timeout = self.settings.get("DATABASE_BUSY_TIMEOUT")
        busy_timeout = float(timeout) if timeout is not None else None
        return open_database(database_url(self.settings), tables, busy_timeout)

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
