"""Writing DCL records: batch upserts per record kind, with change history.

The DCL counterpart of :func:`matter_crawler.storage.products.upsert_products`, run in
the same transaction as a batch's products (:mod:`matter_crawler.pipelines.writes`).
Per kind, a batch costs a few statements whatever its size: one read of the stored
rows per chunk of keys, then one ``executemany`` each for the new rows, the changed
ones, the unchanged ones (their last sighting) and the ``dcl_changes`` rows. The
writes are prepared statements (:mod:`matter_crawler.storage.prepared`), compiled
once per kind and dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Table, bindparam, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from ..storage.bounds import problems
from ..storage.models import Base, DclChange
from ..storage.prepared import PreparedStatement
from ..storage.products import UpsertResult, as_json
from .records import KINDS, DclRecord, RecordKind

dcl_changes = DclChange.__table__

#: Bound parameters per read of stored rows (a key of n columns takes n of them): within
#: the 999 of an old SQLite, and a statement short enough to compile quickly.
_PARAMETERS_PER_READ = 500
_FIRST_SEEN = ("first_seen_at", "first_seen_run_id")
_LAST_SEEN = ("last_seen_at", "last_seen_run_id")


def record_key(values: Sequence[Any]) -> str:
    """A record's key as ``dcl_changes.record_key`` holds it: its values joined by ``/``."""
    return "/".join(map(str, values))


@dataclass(slots=True)
class _Statements:
    insert_new: PreparedStatement
    update_changed: PreparedStatement  # every tracked column, and the last sighting
    refresh_seen: PreparedStatement  # the last sighting only


_prepared: dict[tuple[str, str, str], _Statements] = {}


def _table(kind: RecordKind) -> Table:
    return Base.metadata.tables[kind.table]


def _statements(kind: RecordKind, dialect: Dialect) -> _Statements:
    """The write statements of a kind for a dialect, compiled on first use.

    Updates find their row by the key columns as ``_<column>`` parameters: a
    parameter named after a column is reserved for the SET clause.
    """
    cache_key = (kind.name, dialect.name, dialect.paramstyle)
    statements = _prepared.get(cache_key)
    if statements is None:
        table = _table(kind)
        by_key = [table.c[column] == bindparam(f"_{column}") for column in kind.key]
        changed = (*kind.tracked(), *_LAST_SEEN)
        statements = _prepared[cache_key] = _Statements(
            insert_new=PreparedStatement(
                _insert_or_update(kind, table, dialect),
                dialect,
                (*kind.columns(), *_FIRST_SEEN, *_LAST_SEEN),
            ),
            update_changed=PreparedStatement(
                update(table).where(*by_key).values({c: bindparam(c) for c in changed}),
                dialect,
            ),
            refresh_seen=PreparedStatement(
                update(table).where(*by_key).values({c: bindparam(c) for c in _LAST_SEEN}),
                dialect,
            ),
        )
    return statements


def _insert_or_update(kind: RecordKind, table: Table, dialect: Dialect) -> Any:
    """INSERT that turns into an UPDATE when another writer stored the key meanwhile."""
    dialects = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    make_insert = dialects.get(dialect.name)
    if make_insert is None:
        return insert(table)
    statement = make_insert(table)
    excluded = statement.excluded
    keep = {*kind.key, *_FIRST_SEEN}
    return statement.on_conflict_do_update(
        index_elements=[table.c[column] for column in kind.key],
        set_={c.name: excluded[c.name] for c in table.c if c.name not in keep},
    )


def upsert_dcl_records(
    conn: Connection, records: Sequence[DclRecord], run_id: int | None, now: datetime
) -> UpsertResult:
    """Insert new records and update known ones, a ``dcl_changes`` row per changed column.

    Records are grouped by kind; the last record of a key in a batch wins. A record
    with a value its column cannot hold on every backend (:func:`bounds.problems`) is
    not written and is listed in ``rejected``. ``changes`` and ``rejected`` name
    records by their ``url`` (a status-list page's URL names each of its records).
    """
    result = UpsertResult()
    latest: dict[str, dict[tuple[Any, ...], DclRecord]] = {}
    for record in records:
        latest.setdefault(record.kind, {})[record.key()] = record
    change_rows: list[dict[str, Any]] = []
    for name, batch in latest.items():
        change_rows += _upsert_kind(conn, KINDS[name], batch, run_id, now, result)
    if change_rows:
        conn.execute(insert(dcl_changes), change_rows)
    return result


def _upsert_kind(
    conn: Connection,
    kind: RecordKind,
    batch: dict[tuple[Any, ...], DclRecord],
    run_id: int | None,
    now: datetime,
    result: UpsertResult,
) -> list[dict[str, Any]]:
    """Write one kind's records; the ``dcl_changes`` rows they make."""
    table = _table(kind)
    columns = kind.columns()
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, record in batch.items():
        row = {column: record.values.get(column) for column in columns}
        if found := problems(table, row):  # what PostgreSQL would refuse, SQLite too
            reason = f"{kind.name} {record_key(key)}: {'; '.join(found)}"
            result.rejected.append((record.url, reason))
            continue
        rows[key] = row
    if not rows:
        return []

    stored = _stored_rows(conn, kind, table, list(rows))
    tracked = kind.tracked()
    new_rows: list[dict[str, Any]] = []
    changed_rows: list[dict[str, Any]] = []
    unchanged_rows: list[dict[str, Any]] = []
    change_rows: list[dict[str, Any]] = []
    for key, row in rows.items():
        old = stored.get(key)
        if old is None:
            new_rows.append(row)
            result.new += 1
            continue
        row.update({f"_{column}": value for column, value in zip(kind.key, key, strict=True)})
        differing = [column for column in tracked if old[column] != row[column]]
        if not differing:
            unchanged_rows.append(row)
            result.unchanged += 1
            continue
        changed_rows.append(row)
        result.changed += 1
        url = batch[key].url
        for column in differing:
            result.changes.append((url, column))
            change_rows.append(
                {
                    "table_name": kind.table,
                    "record_key": record_key(key),
                    "field": column,
                    "old_value": as_json(old[column]),
                    "new_value": as_json(row[column]),
                    "run_id": run_id,
                    "changed_at": now,
                }
            )

    statements = _statements(kind, conn.dialect)
    seen = {"last_seen_at": now, "last_seen_run_id": run_id}
    statements.insert_new.execute(
        conn, new_rows, {**seen, "first_seen_at": now, "first_seen_run_id": run_id}
    )
    statements.update_changed.execute(conn, changed_rows, seen)
    statements.refresh_seen.execute(conn, unchanged_rows, seen)
    return change_rows


def _stored_rows(
    conn: Connection, kind: RecordKind, table: Table, keys: list[tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The tracked columns of those of ``keys`` already stored, by key."""
    key_columns = [table.c[column] for column in kind.key]
    selected = select(*key_columns, *(table.c[column] for column in kind.tracked()))
    # one column: a plain IN; several: a row-value IN (SQLite 3.15+, PostgreSQL)
    among = key_columns[0] if len(key_columns) == 1 else tuple_(*key_columns)
    size = max(1, _PARAMETERS_PER_READ // len(key_columns))
    width = len(key_columns)
    stored: dict[tuple[Any, ...], dict[str, Any]] = {}
    for start in range(0, len(keys), size):
        chunk = keys[start : start + size]
        wanted = [key[0] for key in chunk] if width == 1 else chunk
        for record in conn.execute(selected.where(among.in_(wanted))):
            values = record._asdict()
            stored[tuple(values[column] for column in kind.key)] = values
    return stored
