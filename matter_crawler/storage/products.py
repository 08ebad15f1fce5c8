"""Writing products: batch upserts with change history, sightings, delisting.

Each function takes a connection inside the caller's transaction, so the batch
pipeline writes a batch's products and sightings in one transaction, on the
database's writer thread. The writes are prepared statements
(:mod:`matter_crawler.storage.prepared`), compiled once per dialect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    any_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import String

from ..items import PRODUCT_FIELDS, ListingSighting, ProductItem
from ..parsing.normalize import iso_date
from .bounds import problems
from .models import Product, ProductChange
from .prepared import PreparedStatement

products = Product.__table__
changes = ProductChange.__table__

#: Fields whose changes are recorded (derived integer ids follow their text form).
TRACKED_FIELDS: tuple[str, ...] = tuple(
    name for name in PRODUCT_FIELDS if name not in ("url", "vid_int", "pid_int")
)
_SQL_IN_CHUNK = 500


@dataclass(slots=True)
class UpsertResult:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    changes: list[tuple[str, str]] = field(default_factory=list)  # (url, field)
    #: products not stored because a value does not fit its column: (url, why)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: UpsertResult) -> None:
        """Count ``other`` in too (a batch written in parts)."""
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.changes.extend(other.changes)
        self.rejected.extend(other.rejected)


@dataclass(frozen=True, slots=True)
class KnownProduct:
    """What the planner needs to know of a stored product."""

    manufacturer: str | None
    model: str | None
    certificate_id: str | None
    last_fetched_run_id: int | None
    delisted: bool
    first_seen_run_id: int | None = None
    last_seen_run_id: int | None = None
    certification_date: date | None = None  # where it sits in the listing (newest first)


_product_values = attrgetter(*PRODUCT_FIELDS)


def product_row(item: ProductItem) -> dict[str, Any]:
    """The column values of a product item (dates typed for the Date column)."""
    row = dict(zip(PRODUCT_FIELDS, _product_values(item), strict=True))
    row["certification_date"] = iso_date(item.certification_date)
    return row


#: Columns a fetched product sets: its fields plus when and by which run it was seen.
_FETCH_COLUMNS = (
    *PRODUCT_FIELDS,
    "last_seen_at",
    "last_fetched_at",
    "last_seen_run_id",
    "last_fetched_run_id",
    "delisted_at",
)
_NEW_COLUMNS = (*_FETCH_COLUMNS, "first_seen_at", "first_seen_run_id")
_SIGHTING_COLUMNS = ("last_seen_at", "last_seen_run_id", "delisted_at")


@dataclass(slots=True)
class _Statements:
    find_urls: PreparedStatement  # which of _SQL_IN_CHUNK URLs are stored
    insert_new: PreparedStatement
    update_known: PreparedStatement
    record_sighting: PreparedStatement


_prepared: dict[tuple[str, str], _Statements] = {}


def _statements(dialect: Dialect) -> _Statements:
    """The write statements for a dialect, compiled on first use."""
    key = (dialect.name, dialect.paramstyle)
    statements = _prepared.get(key)
    if statements is None:
        statements = _prepared[key] = _Statements(
            find_urls=PreparedStatement(
                select(products.c.url).where(_url_among(_find_urls_parameter(dialect), dialect)),
                dialect,
            ),
            insert_new=PreparedStatement(_insert_or_update(dialect), dialect, _NEW_COLUMNS),
            update_known=PreparedStatement(
                update(products)
                .where(products.c.url == bindparam("_url"))
                .values({name: bindparam(name) for name in _FETCH_COLUMNS if name != "url"}),
                dialect,
            ),
            record_sighting=PreparedStatement(
                update(products)
                .where(products.c.url == bindparam("_url"))
                .values({name: bindparam(name) for name in _SIGHTING_COLUMNS}),
                dialect,
            ),
        )
    return statements


#: PostgreSQL's array of URLs (no length: a cast to VARCHAR(512)[] would cut longer ones)
_URL_ARRAY = postgresql.ARRAY(String())


def _find_urls_parameter(dialect: Dialect) -> Any:
    """PostgreSQL: one array parameter. Elsewhere: _SQL_IN_CHUNK parameters, unused ones NULL.

    psycopg rewrites a statement's ``%(name)s`` placeholders itself and caches the
    result only for short statements: a 500-parameter IN list was parsed again at every
    execution (80 ms each, on this machine).
    """
    if dialect.name == "postgresql":
        return bindparam("urls", type_=_URL_ARRAY)
    return [bindparam(f"url_{n}", type_=products.c.url.type) for n in range(_SQL_IN_CHUNK)]


def _url_among(urls: Any, dialect: Dialect) -> Any:
    """``products.url`` is one of ``urls`` (a list, or PostgreSQL's array parameter)."""
    if dialect.name != "postgresql":
        return products.c.url.in_(urls)
    if isinstance(urls, list):
        urls = literal(urls, type_=_URL_ARRAY)
    return products.c.url == any_(urls)


def upsert_products(
    conn: Connection, items: Sequence[ProductItem], run_id: int | None, now: datetime
) -> UpsertResult:
    """Insert new products and update known ones, recording a change row per changed field."""
    result = UpsertResult()
    if not items:
        return result
    rows: dict[str, dict[str, Any]] = {}
    for item in items:  # the last sighting of a URL in a batch wins
        rows[item.url] = product_row(item)
    for url, row in list(rows.items()):  # what PostgreSQL would refuse, SQLite too
        if found := problems(products, row):
            result.rejected.append((url, "; ".join(found)))
            del rows[url]
    if not rows:
        return result

    statements = _statements(conn.dialect)
    stored = _stored_products(conn, statements.find_urls, list(rows))

    change_rows: list[dict[str, Any]] = []
    new_rows: list[dict[str, Any]] = []
    known_rows: list[dict[str, Any]] = []
    for url, row in rows.items():
        old = stored.get(url)
        if old is None:
            new_rows.append(row)
            result.new += 1
            continue
        row["_url"] = url
        known_rows.append(row)
        differing = [name for name in TRACKED_FIELDS if old[name] != row[name]]
        if not differing:
            result.unchanged += 1
            continue
        result.changed += 1
        for name in differing:
            result.changes.append((url, name))
            change_rows.append(
                {
                    "product_url": url,
                    "field": name,
                    "old_value": as_json(old[name]),
                    "new_value": as_json(row[name]),
                    "run_id": run_id,
                    "changed_at": now,
                }
            )

    seen = {
        "last_seen_at": now,
        "last_fetched_at": now,
        "last_seen_run_id": run_id,
        "last_fetched_run_id": run_id,
        "delisted_at": None,
    }
    statements.insert_new.execute(
        conn, new_rows, {**seen, "first_seen_at": now, "first_seen_run_id": run_id}
    )
    statements.update_known.execute(conn, known_rows, seen)
    if change_rows:
        conn.execute(insert(changes), change_rows)
    return result


def _stored_products(
    conn: Connection, find_urls: PreparedStatement, urls: list[str]
) -> dict[str, dict[str, Any]]:
    """The tracked fields of those of ``urls`` already stored.

    Which URLs are stored is asked the cheap way first: in a first crawl none
    are, and the typed select then has nothing to read.
    """
    found: list[str] = []
    array = conn.dialect.name == "postgresql"
    for start in range(0, len(urls), _SQL_IN_CHUNK):
        chunk = urls[start : start + _SQL_IN_CHUNK]
        if array:
            parameters: dict[str, Any] = {"urls": chunk}
        else:
            padded = chunk + [None] * (_SQL_IN_CHUNK - len(chunk))  # NULL matches no URL
            parameters = {f"url_{n}": url for n, url in enumerate(padded)}
        found += [url for (url,) in find_urls.fetch(conn, parameters)]
    stored: dict[str, dict[str, Any]] = {}
    columns = [products.c.url, *(products.c[name] for name in TRACKED_FIELDS)]
    for start in range(0, len(found), _SQL_IN_CHUNK):
        chunk = found[start : start + _SQL_IN_CHUNK]
        among = _url_among(chunk, conn.dialect)
        for record in conn.execute(select(*columns).where(among)):
            stored[record.url] = record._asdict()
    return stored


def _insert_or_update(dialect: Dialect) -> Any:
    """INSERT that turns into an UPDATE when another writer stored the URL meanwhile."""
    dialects = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    make_insert = dialects.get(dialect.name)
    if make_insert is None:
        return insert(products)
    statement = make_insert(products)
    excluded = statement.excluded
    keep_first_seen = {"id", "url", "first_seen_at", "first_seen_run_id"}
    return statement.on_conflict_do_update(
        index_elements=[products.c.url],
        set_={c.name: excluded[c.name] for c in products.c if c.name not in keep_first_seen},
    )


def as_json(value: Any) -> str | None:
    """A change row's old or new value: JSON text (None stays NULL)."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def record_sightings(
    conn: Connection, sightings: Iterable[ListingSighting], run_id: int | None, now: datetime
) -> int:
    """Mark products seen on a listing page (no detail fetch needed). Returns rows touched."""
    rows = [{"_url": sighting.url} for sighting in sightings]
    constants = {"last_seen_at": now, "last_seen_run_id": run_id, "delisted_at": None}
    return _statements(conn.dialect).record_sighting.execute(conn, rows, constants)


def mark_delisted(conn: Connection, urls: Sequence[str], run_id: int, now: datetime) -> int:
    """Mark delisted the products whose pages proved them gone (404, 410...).

    Only those ``urls``, and never one this run saw listed or stored (a product
    is delisted by proof, not by absence). Returns the rows marked.
    """
    marked = 0
    for start in range(0, len(urls), _SQL_IN_CHUNK):
        statement = (
            update(products)
            .where(products.c.url.in_(urls[start : start + _SQL_IN_CHUNK]))
            .where(products.c.delisted_at.is_(None))
            .where(
                or_(products.c.last_seen_run_id.is_(None), products.c.last_seen_run_id != run_id)
            )
            .values(delisted_at=now)
        )
        marked += conn.execute(statement).rowcount or 0
    return marked


def refresh_counts(engine: Engine, older_than: datetime) -> tuple[int, int]:
    """For ``REFRESH_MAX_AGE_DAYS``: stored products (not delisted), and how many of
    their pages were last fetched before ``older_than``."""
    listed = products.c.delisted_at.is_(None)
    number = select(func.count()).select_from(products)
    with engine.connect() as conn:
        stored = conn.execute(number.where(listed)).scalar() or 0
        due = conn.execute(number.where(listed, products.c.last_fetched_at < older_than)).scalar()
    return stored, due or 0


def oldest_fetched(engine: Engine, limit: int, run_id: int | None) -> list[str]:
    """The URLs of the ``limit`` stored products whose pages were fetched longest ago.

    Delisted products are left out, and so are those this run fetched already
    (after a hard kill the run plans again: what it refreshed stays refreshed).
    """
    not_this_run = or_(
        products.c.last_fetched_run_id.is_(None), products.c.last_fetched_run_id != run_id
    )
    statement = (
        select(products.c.url)
        .where(products.c.delisted_at.is_(None), not_this_run)
        .order_by(products.c.last_fetched_at, products.c.id)
        .limit(max(limit, 0))
    )
    with engine.connect() as conn:
        return [url for (url,) in conn.execute(statement)]


def load_known_products(engine: Engine) -> dict[str, KnownProduct]:
    """Every stored product's card fields, for deciding which detail pages to fetch."""
    statement = select(
        products.c.url,
        products.c.manufacturer,
        products.c.model,
        products.c.certificate_id,
        products.c.last_fetched_run_id,
        products.c.delisted_at,
        products.c.first_seen_run_id,
        products.c.last_seen_run_id,
        products.c.certification_date,
    )
    with engine.connect() as conn:
        return {
            row.url: KnownProduct(
                row.manufacturer,
                row.model,
                row.certificate_id,
                row.last_fetched_run_id,
                row.delisted_at is not None,
                row.first_seen_run_id,
                row.last_seen_run_id,
                row.certification_date,
            )
            for row in conn.execute(statement)
        }
