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
import csv
import io
import json
import os
import stat
import sys
import tempfile
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
#: What makes a spreadsheet program read a cell as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: What a CSV text cell that starts like a formula is given in front, so it is read as text.
CSV_TEXT_MARK = "'"

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


# -- CSV and JSON lines ----------------------------------------------------------------


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def starts_like_formula(value: str) -> bool:
    """Whether a spreadsheet program would read this text as a formula (``=1+1``, ``@SUM``...)."""
    return value.startswith(FORMULA_STARTS)


def csv_text(value: str) -> str:
    """Text for a CSV cell: a leading ``'`` when it starts like a formula, so it stays text."""
    return CSV_TEXT_MARK + value if starts_like_formula(value) else value


CSV_CONVERTERS: dict[str, Callable[[Any], str]] = {
    "bool": lambda value: "true" if value else "false",
    "date": date.isoformat,
    "datetime": datetime.isoformat,
    "json": _json_text,  # starts with [, { or ": never like a formula
    "int": str,
    "float": repr,
    "text": csv_text,
}
#: ``--raw``: text as stored
RAW_CSV_CONVERTERS = {**CSV_CONVERTERS, "text": str}


def write_csv(
    stream: IO[str],
    columns: Sequence[Column],
    rows: Iterator[Sequence[Any]],
    *,
    raw: bool = False,
) -> int:
    table = RAW_CSV_CONVERTERS if raw else CSV_CONVERTERS
    converters = [table[column.kind] for column in columns]
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
        if starts_like_formula(value) or value in ERROR_CODES:
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


def _default_mode() -> int:
    """The permissions a new file gets here (0o666 less the umask), as ``open`` would give."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _is_database(path: Path, database: Path) -> bool:
    """Whether ``path`` is the database file or one of SQLite's files beside it."""
    for name in ("", "-wal", "-shm", "-journal"):
        candidate = database.with_name(database.name + name)
        if path.resolve() == candidate.resolve():
            return True
        try:
            if os.path.samefile(path, candidate):  # a hard link, a symlink to it
                return True
        except OSError:
            continue
    return False


def check_output(path: Path, *, force: bool, database: Path | None) -> int:
    """Whether ``path`` may be written; the permissions the written file is to have.

    Never the database (nor its -wal, -shm or -journal file, by any name or
    link); an existing file only with ``--force``, keeping its permissions.
    """
    if database is not None and _is_database(path, database):
        raise CommandError(f"{path} is the database ({database}): refusing to write over it")
    if path.is_dir():
        raise CommandError(f"{path} is a directory: give a file name")
    if not path.parent.is_dir():
        raise CommandError(f"no directory {path.parent} to write {path.name} in")
    if os.path.lexists(path):
        if not force:
            raise CommandError(f"{path} exists: add --force to replace it")
        try:
            return stat.S_IMODE(path.stat().st_mode)
        except OSError:  # a dangling symlink: the link is replaced, not its target
            return _default_mode()
    return _default_mode()


@contextmanager
def replaced_when_done(path: Path, mode: int) -> Iterator[tuple[Path, int]]:
    """A new temporary file beside ``path`` (its name and descriptor), renamed to it on success.

    The temporary file is created exclusively (no other file or link is ever
    written through), gets ``mode``, and replaces ``path`` in one rename: a
    failed export leaves ``path`` as it was.
    """
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    partial = Path(name)
    try:
        os.fchmod(descriptor, mode)
        yield partial, descriptor
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def text_output(output: str, mode: int) -> Iterator[IO[str]]:
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
        replaced_when_done(Path(output), mode) as (_partial, descriptor),
        open(descriptor, "w", encoding="utf-8", newline="") as stream,
    ):
        yield stream


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
        _default_mode()
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
