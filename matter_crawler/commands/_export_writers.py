"""How ``scrapy export`` writes each format: CSV, JSON lines and Excel (.xlsx).

Every writer takes the columns (name and kind) and an iterator of rows, streams
them, and returns how many rows it wrote. export.py's docstring and
docs/commands.md say how each kind of value is written. Text a spreadsheet
program would run as a formula is never one (:func:`starts_like_formula`).

Excel goes through openpyxl's public API only: ``Workbook(write_only=True)``,
``create_sheet()`` and ``WriteOnlyCell``. openpyxl is imported when a sheet is
written, not with this module: Scrapy imports every command module at every
``scrapy`` start, a crawl's too, and openpyxl alone costs about 24 MiB and 70 ms.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from ._text import json_default

if TYPE_CHECKING:
    from openpyxl.cell import WriteOnlyCell

EXCEL_MAX_TEXT = 32767
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
#: What makes a spreadsheet program read a cell as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: What a CSV text cell that starts like a formula is given in front, so it is read as text.
CSV_TEXT_MARK = "'"


@dataclass(frozen=True, slots=True)
class Column:
    """A column of the export: its name and the kind of value it holds."""

    name: str
    kind: str  # int, float, bool, date, datetime, json, text


class WriteOnlySheet(Protocol):
    """What the export needs of the sheet ``Workbook(write_only=True).create_sheet()`` gives.

    openpyxl's class for it lives in a private module: the type is spelled out here.
    """

    def append(self, iterable: Iterable[Any]) -> None: ...


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


class ExcelRowBuilder:
    """Turns a database row into worksheet cells of the right Excel type."""

    def __init__(self, sheet: WriteOnlySheet, columns: Sequence[Column]) -> None:
        from openpyxl.cell import WriteOnlyCell  # noqa: PLC0415  (see the module docstring)
        from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE  # noqa: PLC0415

        self.cell_class = WriteOnlyCell
        self.error_codes = ERROR_CODES
        self.illegal_characters = ILLEGAL_CHARACTERS_RE
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
        cell = self.cell_class(self.sheet, value)
        cell.number_format = DATE_FORMAT
        return cell

    def _datetime(self, value: datetime) -> WriteOnlyCell:
        # Excel has no time zones: UTC wall time, as the column docs say
        cell = self.cell_class(self.sheet, value.astimezone(UTC).replace(tzinfo=None))
        cell.number_format = DATETIME_FORMAT
        return cell

    def _json(self, value: Any) -> Any:
        return self._text(_json_text(value))

    def excel_text(self, value: str) -> str:
        """Text a worksheet accepts: control characters XML cannot hold removed, length capped."""
        return self.illegal_characters.sub("", value)[:EXCEL_MAX_TEXT]

    def _text(self, value: str) -> Any:
        value = self.excel_text(value)
        if starts_like_formula(value) or value in self.error_codes:
            # openpyxl would store "=..." as a formula and "#N/A" as an error: keep it text
            cell = self.cell_class(self.sheet, None)
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
    sheet_name: str = "products",
) -> int:
    from openpyxl import Workbook  # noqa: PLC0415  (see the module docstring)
    from openpyxl.cell import WriteOnlyCell  # noqa: PLC0415
    from openpyxl.styles import Font  # noqa: PLC0415
    from openpyxl.utils import get_column_letter  # noqa: PLC0415

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(sheet_name)
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
