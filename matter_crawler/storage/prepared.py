"""Statements compiled once and run with parameters processed the cheap way.

Given a list of rows, ``Connection.execute`` compiles nothing new but still
processes every parameter of every row in Python (``construct_params`` and the
bind processors of every column): more than half of a batch's write time. A
:class:`PreparedStatement` compiles its statement once for a dialect, applies
the bind processors of the few columns that have one (JSON, dates, booleans)
directly, processes values shared by a whole batch (times, a run id) once, and
hands the rows to the DB-API ``executemany`` through ``exec_driver_sql``. The
processors are the dialect's own, so what is stored is byte for byte what the
Core path writes and reads through the models see the same values
(``tests/unit/test_storage.py`` compares the two).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Dialect
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any]

#: Distinct JSON values remembered per column; beyond it values are serialised each time.
JSON_MEMO_SIZE = 10_000


class PreparedStatement:
    """``statement`` compiled for ``dialect``; ``column_names`` are an INSERT's columns."""

    def __init__(
        self, statement: Executable, dialect: Dialect, column_names: Sequence[str] = ()
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(column_names) or None)
        self.sql: str = compiled.string
        self.positional = bool(compiled.positional)
        names = compiled.positiontup if self.positional else list(compiled.binds)
        self.names: tuple[str, ...] = tuple(names or ())
        self._processors = {
            name: bind_processor(compiled.binds[name].type, dialect) for name in self.names
        }
        # a row's values in parameter order, in one C call (itemgetter of one name is no tuple)
        self._values: Callable[[Mapping[str, Any]], tuple[Any, ...]]
        if len(self.names) > 1:
            self._values = itemgetter(*self.names)
        else:
            self._values = lambda row: tuple(row[name] for name in self.names)

    def process(self, name: str, value: Any) -> Any:
        """``value`` as the driver is given it for the parameter ``name``."""
        processor = self._processors[name]
        return value if processor is None or value is None else processor(value)

    def parameters(
        self, rows: Sequence[Mapping[str, Any]], constants: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """Driver parameters for ``rows``; ``constants`` hold values shared by every row."""
        fixed = {name: self.process(name, value) for name, value in (constants or {}).items()}
        processed = [
            (index, processor)
            for index, name in enumerate(self.names)
            if (processor := self._processors[name]) is not None and name not in fixed
        ]
        parameters: list[Any] = []
        for row in rows:
            values = list(self._values({**row, **fixed} if fixed else row))
            for index, processor in processed:
                value = values[index]
                if value is not None:
                    values[index] = processor(value)
            parameters.append(
                tuple(values) if self.positional else dict(zip(self.names, values, strict=True))
            )
        return parameters

    def execute(
        self,
        conn: Connection,
        rows: Sequence[Mapping[str, Any]],
        constants: Mapping[str, Any] | None = None,
    ) -> int:
        """Run the statement once per row (one ``executemany``); the rows it touched."""
        if not rows:
            return 0
        return conn.exec_driver_sql(self.sql, self.parameters(rows, constants)).rowcount or 0

    def fetch(self, conn: Connection, row: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run a query once; its rows as the driver returns them (no result processing)."""
        (parameters,) = self.parameters([row])
        return [tuple(record) for record in conn.exec_driver_sql(self.sql, parameters)]


def bind_processor(column_type: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """The dialect's bind processor for a column type (JSON ones remember their texts)."""
    if isinstance(column_type, JSON) and dialect.driver == "psycopg":
        # psycopg's processor wraps each value in psycopg.Json, serialised (json.dumps)
        # again at every execution; the statement casts the parameter (``::JSON``), so
        # the same text, remembered, is what the server gets
        return remembering_json(json.dumps)
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    if processor is not None and isinstance(column_type, JSON):
        return remembering_json(processor)
    return processor


def remembering_json(processor: Processor) -> Processor:
    """A JSON processor that remembers the text of small lists and dicts of strings.

    Transports, categories and unknown labels repeat across thousands of
    products, and serialising them again and again was a tenth of a batch's
    write time. Only values made of strings (and None) are remembered, so two
    values that compare equal always have the same text (``1 == 1.0 == True``
    would not).
    """
    lists: dict[tuple[Any, ...], Any] = {}
    dicts: dict[tuple[Any, ...], Any] = {}

    def process(value: Any) -> Any:
        if type(value) is list:
            texts, key = lists, tuple(value)
        elif type(value) is dict:
            texts, key = dicts, tuple(value.items())
        else:
            return processor(value)
        # Looked up first and checked only when new: only keys made of strings (and
        # None) are stored, and a string equals nothing but the same string, so a hit
        # is a value made of the same strings, with the same text.
        try:
            return texts[key]
        except (KeyError, TypeError):  # not remembered yet, or unhashable
            pass
        text = processor(value)
        if len(texts) < JSON_MEMO_SIZE and _made_of_strings(key, pairs=texts is dicts):
            texts[key] = text
        return text

    return process


def _made_of_strings(key: tuple[Any, ...], *, pairs: bool) -> bool:
    """A list's elements all strings, or a dict's items all (string, string or None)."""
    if pairs:
        return all(type(name) is str and (item is None or type(item) is str) for name, item in key)
    return all(type(element) is str for element in key)
