"""``scrapy export``: the products table as CSV, JSON lines or Excel (.xlsx).

Every column of ``products`` in table order, one row per product, ordered by
id (the order products were first stored). Delisted products are left out
unless ``--include-delisted``; ``--where`` adds a SQL condition.

How values are written (docs/commands.md has the full table):

- CSV: UTF-8, a header row, RFC 4180 quoting. No value is an empty field;
  booleans are ``true``/``false``; dates ``2024-05-17``; times ISO 8601 UTC
  with offset (``2026-11-05T12:34:56.123456+00:00``); lists and dicts JSON text.
- JSON lines: one object per product, native JSON types (``null``, booleans,
  numbers, lists, objects); dates and times as the same ISO strings.
- Excel: one sheet ``products``, a bold frozen header row with a filter,
  typed cells: integers as numbers, booleans as booleans, dates as Excel
  dates (``yyyy-mm-dd``), times as Excel date-times in UTC
  (``yyyy-mm-dd hh:mm:ss``, millisecond precision), text as text (never
  a formula, even when it starts with ``=``), lists and dicts as JSON text.

- CSV and Excel alike: text that a spreadsheet program would take for a
  formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return, :func:`starts_like_formula`) is never one: in CSV it gets a leading
  ``'`` (``--raw`` writes it as stored), in Excel it is a text cell.

Rows are streamed: the query is read in batches (``yield_per``) and the
workbook is openpyxl's write-only one, so memory does not grow with the
table. The file appears only when complete (written beside it, then renamed);
an existing file is replaced only with ``--force`` (keeping its permissions),
and never the database itself.

The database is opened read-only (SQLite: ``mode=ro`` and ``query_only``;
PostgreSQL: read-only transactions), and no query may take longer than
``--timeout`` (``EXPORT_QUERY_TIMEOUT``) to produce its next rows. ``--where``
is the user's own SQL: it must be one condition (balanced parentheses, no
``;``, no comments), so it cannot undo the delisted filter it is combined
with, but it is trusted input otherwise (docs/security.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy import JSON, Boolean, Date, DateTime, Engine, Float, Integer, Select, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..storage.models import Product
from ._database import (
    CommandError,
    DatabaseCommand,
    QueryClock,
    database_file,
    database_url,
    first_line,
    guarded,
    open_read_only_database,
    query_timed_out,
)
from ._export_files import check_output, default_mode, replaced_when_done, text_output
from ._export_writers import Column, write_csv, write_jsonl, write_xlsx

FORMATS = ("csv", "jsonl", "xlsx")
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".xlsx": "xlsx"}
#: Rows fetched from the database at a time.
BATCH_ROWS = 1000
#: Rows sampled to size the Excel columns before streaming.
WIDTH_SAMPLE_ROWS = 200

products = Product.__table__


def output_format(requested: str | None, output: str) -> str:
    """The format asked for, or the one the file name's suffix says; UsageError if neither."""
    accepted = ", ".join(FORMATS)
    if requested:
        name = requested.strip().lower()
        if name not in FORMATS:
            raise UsageError(
                f"unknown format {requested!r}: use one of {accepted}", print_help=False
            )
        fmt = name
    else:
        fmt = SUFFIXES.get(Path(output).suffix.lower(), "")
        if not fmt:
            raise UsageError(
                f"cannot tell the format of {output!r} from its name: add -f with one of "
                f"{accepted} (or name the file .csv, .jsonl or .xlsx)",
                print_help=False,
            )
    if fmt == "xlsx" and output == "-":
        raise UsageError("xlsx cannot go to standard output: give -o FILE.xlsx", print_help=False)
    return fmt


# -- the columns and the query --------------------------------------------------------


def column_kind(column: Any) -> str:
    sql_type = column.type
    if isinstance(sql_type, JSON):
        return "json"
    if isinstance(sql_type, Boolean):
        return "bool"
    if isinstance(sql_type, Integer):
        return "int"
    if isinstance(sql_type, Float):
        return "float"
    if isinstance(sql_type, DateTime) or isinstance(getattr(sql_type, "impl", None), DateTime):
        return "datetime"
    if isinstance(sql_type, Date):
        return "date"
    return "text"


def product_columns() -> list[Column]:
    """Every column of the products table, in table order (new columns follow by themselves)."""
    return [Column(column.name, column_kind(column)) for column in products.columns]


def product_query(*, include_delisted: bool, where: str | None) -> Select[Any]:
    statement = select(products).order_by(products.c.id)
    if not include_delisted:
        statement = statement.where(products.c.delisted_at.is_(None))
    if where:
        statement = statement.where(where_clause(where))
    return statement


def where_problem(where: str) -> str | None:
    """Why ``where`` is not one SQL condition, or None.

    It is put in parentheses and combined with AND, so it must not close
    them (``1) OR (1`` would undo the delisted filter), end the statement
    (``;``) or comment out the rest (``--``, ``/*``). Quoted strings and
    identifiers are skipped: ``name = ')'`` is fine.
    """
    depth, index, length = 0, 0, len(where)
    closing = {"'": "'", '"': '"', "`": "`", "[": "]"}
    while index < length:
        char = where[index]
        if char in closing:
            end = where.find(closing[char], index + 1)
            # SQL doubles a quote to escape it: 'it''s' is one string
            while end != -1 and char != "[" and where[end + 1 : end + 2] == char:
                end = where.find(closing[char], end + 2)
            if end == -1:
                return f"unterminated {char} quote"
            index = end + 1
            continue
        if where.startswith(("--", "/*"), index):
            return "comments are not allowed"
        if char == ";":
            return "';' is not allowed: give one condition"
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return "a ')' closes a parenthesis it did not open"
        index += 1
    if depth:
        return "a '(' is not closed"
    return None


def where_clause(where: str) -> Any:
    """The user's SQL condition, colons literal (``text()`` reads ``:x`` as a parameter)."""
    return text("(" + where.replace(":", "\\:") + ")")


def check_where(engine: Engine, where: str) -> None:
    """Fail before any file is written when the condition is not one valid SQL condition here."""
    problem = where_problem(where)
    if problem is not None:
        raise CommandError(f"--where {where!r}: {problem}")
    try:
        with engine.connect() as conn:
            conn.execute(select(products.c.id).where(where_clause(where)).limit(0)).all()
    except SQLAlchemyError as error:
        raise CommandError(f"--where {where!r}: {first_line(error)}") from None


def stream_rows(
    engine: Engine, statement: Select[Any], clock: QueryClock | None = None
) -> Iterator[Sequence[Any]]:
    """The rows of ``statement``, fetched ``BATCH_ROWS`` at a time.

    The query clock restarts for every batch: what is limited is the time the
    database takes to produce the next rows, not the time spent writing them.
    """
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(
            statement
        )
        for count, row in enumerate(result, start=1):
            yield row
            if clock is not None and count % BATCH_ROWS == 0:
                clock.restart()


def export_products(
    engine: Engine,
    output: str,
    fmt: str,
    *,
    include_delisted: bool = False,
    where: str | None = None,
    force: bool = False,
    raw: bool = False,
    database: Path | None = None,
    clock: QueryClock | None = None,
) -> int:
    """Write the products to ``output`` in ``fmt``; returns how many rows were written."""
    columns = product_columns()
    mode = (
        default_mode()
        if output == "-"
        else check_output(Path(output), force=force, database=database)
    )
    if where:
        check_where(engine, where)
    statement = product_query(include_delisted=include_delisted, where=where)
    if fmt == "xlsx":
        with engine.connect() as conn:
            sample = conn.execute(statement.limit(WIDTH_SAMPLE_ROWS)).all()
        with replaced_when_done(Path(output), mode) as (partial, descriptor):
            os.close(descriptor)  # openpyxl writes the file by its name
            return write_xlsx(partial, columns, stream_rows(engine, statement, clock), sample)
    with text_output(output, mode) as stream:
        if fmt == "csv":
            return write_csv(stream, columns, stream_rows(engine, statement, clock), raw=raw)
        return write_jsonl(stream, columns, stream_rows(engine, statement, clock))


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "export"

    def syntax(self) -> str:
        return (
            "-o FILE [-f csv|jsonl|xlsx] [--force] [--include-delisted] [--where SQL] "
            "[--timeout S] [--raw]"
        )

    def short_desc(self) -> str:
        return "Export the products to CSV, JSON lines or Excel (.xlsx)"

    def long_desc(self) -> str:
        return (
            "Export the products table (DATABASE_URL) to CSV, JSON lines or an Excel "
            "workbook with typed columns. The format comes from -f or from the file's "
            "suffix (.csv, .jsonl, .ndjson, .xlsx). Delisted products are left out "
            "unless --include-delisted. An existing file is replaced only with --force, and "
            "never the database. See docs/commands.md for how each type is written."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "-o", "--output", metavar="FILE", help="file to write (- for standard output)"
        )
        parser.add_argument(
            "-f", "--format", metavar="FORMAT", help="csv, jsonl or xlsx (default: from FILE)"
        )
        parser.add_argument(
            "--include-delisted",
            action="store_true",
            help="also export products the catalogue no longer lists",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace FILE if it exists (keeping its permissions); never the database",
        )
        parser.add_argument(
            "--where",
            metavar="SQL",
            help='only products matching this SQL condition, e.g. "vid_int = 4660" '
            "(your own SQL: trusted, run read-only and time-limited)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            metavar="S",
            help="longest the database may take to produce the next rows, seconds; 0: no limit "
            "(EXPORT_QUERY_TIMEOUT)",
        )
        parser.add_argument(
            "--raw",
            action="store_true",
            help="CSV: write text exactly as stored, even text a spreadsheet would run as a "
            "formula (= + - @ first)",
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if not opts.output:
            raise UsageError("give the file to write: -o FILE (- for standard output)")
        opts.format = output_format(opts.format, opts.output)
        if opts.timeout is None:
            assert self.settings is not None
            opts.timeout = self.settings.getfloat("EXPORT_QUERY_TIMEOUT")
        if opts.timeout < 0:
            raise UsageError("--timeout must not be negative", print_help=False)

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        url = database_url(self.settings)
        if opts.where and not guarded(url):
            raise CommandError(
                "--where needs SQLite or PostgreSQL, where the export runs read-only with a "
                "time limit"
            )
        clock = QueryClock(opts.timeout)
        engine = open_read_only_database(url, clock)
        try:
            count = export_products(
                engine,
                opts.output,
                opts.format,
                include_delisted=opts.include_delisted,
                where=opts.where,
                force=opts.force,
                raw=opts.raw,
                database=database_file(url),
                clock=clock,
            )
        except SQLAlchemyError as error:
            if query_timed_out(error, clock):
                raise CommandError(
                    f"the query took longer than {opts.timeout:g} s (--timeout): nothing written"
                ) from None
            raise
        finally:
            engine.dispose()
        target = "standard output" if opts.output == "-" else opts.output
        print(f"Exported {count} products to {target} ({opts.format})", file=sys.stderr)
