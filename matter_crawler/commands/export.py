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

Rows are streamed: the query is read in batches (``yield_per``) and the
workbook is openpyxl's write-only one, so memory does not grow with the
table. The file appears only when complete (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy import JSON, Boolean, Date, DateTime, Engine, Float, Integer, Select, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..storage.models import Product
from ._database import CommandError, DatabaseCommand, first_line
from ._text import json_default

FORMATS = ("csv", "jsonl", "xlsx")
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".xlsx": "xlsx"}
#: Rows fetched from the database at a time.
BATCH_ROWS = 1000
#: Rows sampled to size the Excel columns before streaming.
WIDTH_SAMPLE_ROWS = 200
EXCEL_MAX_TEXT = 32767
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"

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


# -- the columns and their kinds --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str  # int, float, bool, date, datetime, json, text


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


def where_clause(where: str) -> Any:
    """The user's SQL condition, colons literal (``text()`` reads ``:x`` as a parameter)."""
    return text("(" + where.replace(":", "\\:") + ")")


def check_where(engine: Engine, where: str) -> None:
    """Fail before any file is written when the condition is not valid SQL here."""
    try:
        with engine.connect() as conn:
            conn.execute(select(products.c.id).where(where_clause(where)).limit(0)).all()
    except SQLAlchemyError as error:
        raise CommandError(f"--where {where!r}: {first_line(error)}") from None


def stream_rows(engine: Engine, statement: Select[Any]) -> Iterator[Sequence[Any]]:
    """The rows of ``statement``, fetched ``BATCH_ROWS`` at a time."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(
            statement
        )
        yield from result


# -- CSV and JSON lines ----------------------------------------------------------------


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


CSV_CONVERTERS: dict[str, Callable[[Any], str]] = {
    "bool": lambda value: "true" if value else "false",
    "date": date.isoformat,
    "datetime": datetime.isoformat,
    "json": _json_text,
    "int": str,
    "float": repr,
    "text": str,
}


def write_csv(stream: IO[str], columns: Sequence[Column], rows: Iterator[Sequence[Any]]) -> int:
    converters = [CSV_CONVERTERS[column.kind] for column in columns]
    writer = csv.writer(stream)
    writer.writerow([column.name for column in columns])
    count = 0
    for row in rows:
        writer.writerow(
            [
                "" if value is None else convert(value)
                for convert, value in zip(converters, row, strict=True)
            ]
        )
        count += 1
    return count


def write_jsonl(stream: IO[str], columns: Sequence[Column], rows: Iterator[Sequence[Any]]) -> int:
    names = [column.name for column in columns]
    count = 0
    for row in rows:
        record = dict(zip(names, row, strict=True))
        stream.write(json.dumps(record, ensure_ascii=False, default=json_default))
        stream.write("\n")
        count += 1
    return count


# -- Excel ---------------------------------------------------------------------------------


def excel_text(value: str) -> str:
    """Text a worksheet accepts: control characters XML cannot hold removed, length capped."""
    return ILLEGAL_CHARACTERS_RE.sub("", value)[:EXCEL_MAX_TEXT]


class ExcelRowBuilder:
    """Turns a database row into worksheet cells of the right Excel type."""

    def __init__(self, sheet: WriteOnlyWorksheet, columns: Sequence[Column]) -> None:
        self.sheet = sheet
        self.converters = [getattr(self, f"_{column.kind}") for column in columns]

    def cells(self, row: Sequence[Any]) -> list[Any]:
        return [
            None if value is None else convert(value)
            for convert, value in zip(self.converters, row, strict=True)
        ]

    def _int(self, value: int) -> int:
        return value

    _float = _int
    _bool = _int

    def _date(self, value: date) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.sheet, value)
        cell.number_format = DATE_FORMAT
        return cell

    def _datetime(self, value: datetime) -> WriteOnlyCell:
        # Excel has no time zones: UTC wall time, as the column docs say
        cell = WriteOnlyCell(self.sheet, value.astimezone(UTC).replace(tzinfo=None))
        cell.number_format = DATETIME_FORMAT
        return cell

    def _json(self, value: Any) -> Any:
        return self._text(_json_text(value))

    def _text(self, value: str) -> Any:
        value = excel_text(value)
        if value.startswith("=") or value in ERROR_CODES:
            # openpyxl would store "=..." as a formula and "#N/A" as an error: keep it text
            cell = WriteOnlyCell(self.sheet, None)
            cell.value = value
            cell.data_type = "s"
            return cell
        return value


def column_widths(columns: Sequence[Column], sample: Sequence[Sequence[Any]]) -> list[float]:
    """Widths (in characters) from the header and a sample of rows, within 8..60."""
    fixed = {"date": 12, "datetime": 20, "bool": 8}
    widths = []
    for index, column in enumerate(columns):
        longest = len(column.name) + 2  # room for the filter button
        if column.kind in fixed:
            longest = max(longest, fixed[column.kind])
        else:
            for row in sample:
                value = row[index]
                if value is not None:
                    shown = _json_text(value) if column.kind == "json" else str(value)
                    longest = max(longest, len(shown))
        widths.append(float(min(max(longest + 1, 8), 60)))
    return widths


def write_xlsx(
    path: Path,
    columns: Sequence[Column],
    rows: Iterator[Sequence[Any]],
    sample: Sequence[Sequence[Any]],
) -> int:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("products")
    # the sheet's head (widths, panes) is written before the first row: set them now
    for index, width in enumerate(column_widths(columns, sample), start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for column in columns:
        cell = WriteOnlyCell(sheet, column.name)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    builder = ExcelRowBuilder(sheet, columns)
    count = 0
    for row in rows:
        sheet.append(builder.cells(row))
        count += 1
    # the filter is written after the rows, so it can cover exactly the rows written
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{count + 1}"
    workbook.save(path)
    return count


# -- files ---------------------------------------------------------------------------------


@contextmanager
def replaced_when_done(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to it only if the block succeeds."""
    if path.is_dir():
        raise CommandError(f"{path} is a directory: give a file name")
    if not path.parent.is_dir():
        raise CommandError(f"no directory {path.parent} to write {path.name} in")
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def text_output(output: str) -> Iterator[IO[str]]:
    """A UTF-8 text stream to ``output`` (``-``: standard output), CSV-safe newlines."""
    if output == "-":
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            yield stream
            stream.flush()
        finally:
            stream.detach()
        return
    with (
        replaced_when_done(Path(output)) as partial,
        partial.open("x", encoding="utf-8", newline="") as stream,
    ):
        yield stream


def export_products(
    engine: Engine,
    output: str,
    fmt: str,
    *,
    include_delisted: bool = False,
    where: str | None = None,
) -> int:
    """Write the products to ``output`` in ``fmt``; returns how many rows were written."""
    columns = product_columns()
    if where:
        check_where(engine, where)
    statement = product_query(include_delisted=include_delisted, where=where)
    if fmt == "xlsx":
        with engine.connect() as conn:
            sample = conn.execute(statement.limit(WIDTH_SAMPLE_ROWS)).all()
        with replaced_when_done(Path(output)) as partial:
            return write_xlsx(partial, columns, stream_rows(engine, statement), sample)
    writer = write_csv if fmt == "csv" else write_jsonl
    with text_output(output) as stream:
        return writer(stream, columns, stream_rows(engine, statement))


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "export"

    def syntax(self) -> str:
        return "-o FILE [-f csv|jsonl|xlsx] [--include-delisted] [--where SQL]"

    def short_desc(self) -> str:
        return "Export the products to CSV, JSON lines or Excel (.xlsx)"

    def long_desc(self) -> str:
        return (
            "Export the products table (DATABASE_URL) to CSV, JSON lines or an Excel "
            "workbook with typed columns. The format comes from -f or from the file's "
            "suffix (.csv, .jsonl, .ndjson, .xlsx). Delisted products are left out "
            "unless --include-delisted. See docs/commands.md for how each type is written."
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
            "--where",
            metavar="SQL",
            help='only products matching this SQL condition, e.g. "vid_int = 4660"',
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if not opts.output:
            raise UsageError("give the file to write: -o FILE (- for standard output)")
        opts.format = output_format(opts.format, opts.output)

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        engine = self.open_database()
        try:
            count = export_products(
                engine,
                opts.output,
                opts.format,
                include_delisted=opts.include_delisted,
                where=opts.where,
            )
        finally:
            engine.dispose()
        target = "standard output" if opts.output == "-" else opts.output
        print(f"Exported {count} products to {target} ({opts.format})", file=sys.stderr)
