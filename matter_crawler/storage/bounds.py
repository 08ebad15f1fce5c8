"""Values every backend stores as they are: one rule for SQLite and PostgreSQL.

SQLite stores any string in any column; PostgreSQL refuses a string longer than
its ``VARCHAR(n)`` column and any text holding a NUL character, and a refusal
fails the whole statement, so one product would cost its batch. The writes check
first, with the lengths the models declare, and report what does not fit instead
of storing it on one backend and losing a batch on the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import String, Table


@cache
def string_columns(table: Table) -> tuple[tuple[str, int | None], ...]:
    """The table's string columns and their lengths (None: unbounded text)."""
    return tuple(
        (column.name, column.type.length)
        for column in table.columns
        if isinstance(column.type, String)  # Text is a String without a length
    )


def problems(table: Table, row: Mapping[str, Any]) -> list[str]:
    """Why ``row`` cannot be stored in ``table`` alike on every backend (empty: it can).

    Runs for every product of every batch: the common case (everything fits) is
    decided with C-level loops, and only a row that fails it is examined in detail.
    """
    names, bounded = _checked(table)
    try:
        text = "".join(filter(None, map(row.get, names)))
    except TypeError:  # a non-string value in a string column: let the slow path look
        text = "\x00"
    if "\x00" not in text and all(len(row.get(name) or "") <= n for name, n in bounded):
        return []
    return _problems(table, row)


@cache
def _checked(table: Table) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    columns = string_columns(table)
    return (
        tuple(name for name, _ in columns),
        tuple((name, length) for name, length in columns if length is not None),
    )


def _problems(table: Table, row: Mapping[str, Any]) -> list[str]:
    found = []
    for name, length in string_columns(table):
        value = row.get(name)
        if not isinstance(value, str):
            continue
        if length is not None and len(value) > length:
            found.append(
                f"{name} is {len(value)} characters long, longer than the {length} "
                f"{table.name}.{name} holds"
            )
        if "\x00" in value:
            found.append(f"{name} contains a NUL character, which PostgreSQL cannot store")
    return found


def shortened(table: Table, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``values`` with every string cut to its column's length, NULs replaced; what was cut.

    For the run record's own text (a scrapyd job id, a finish reason), where a shortened
    value beats no record at all.
    """
    fitted = dict(values)
    notes = []
    for name, length in string_columns(table):
        value = fitted.get(name)
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            value = value.replace("\x00", "\N{REPLACEMENT CHARACTER}")
            notes.append(f"{table.name}.{name}: NUL characters replaced")
        if length is not None and len(value) > length:
            notes.append(f"{table.name}.{name}: {len(value)} characters cut to {length}")
            value = value[:length]
        fitted[name] = value
    return fitted, notes
