"""Compare a crawled database with a catalogue's ground truth, field by field.

The ground truth is the simulated site's (``GET /__sim__/truth``) or a reviewed
expectations file: one record per product, keyed by the catalogue record's
field names, with ``url`` and ``compliance_document_url`` as paths so that it
does not depend on the host the site ran on. Tests, benchmarks and the
recordings check use this; it reads the database with plain SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, select

from .items import RECORD_FIELDS
from .parsing.urls import url_path
from .storage.models import Product

#: The fields of a ground-truth record: the catalogue record's (docs/site-markup.md),
#: read from ``ProductItem`` (the simulated site keeps its own list, on purpose).
TRUTH_FIELDS: tuple[str, ...] = RECORD_FIELDS


def stored_records(engine: Engine, *, include_delisted: bool = False) -> list[dict[str, Any]]:
    """The products table as ground-truth records (paths for URLs, ISO dates)."""
    table = Product.__table__
    statement = select(table)
    if not include_delisted:
        statement = statement.where(table.c.delisted_at.is_(None))
    records = []
    with engine.connect() as conn:
        for row in conn.execute(statement):
            data = row._asdict()
            record = {name: data[name] for name in TRUTH_FIELDS}
            record["url"] = url_path(record["url"])
            record["compliance_document_url"] = url_path(record["compliance_document_url"])
            if record["certification_date"] is not None:
                record["certification_date"] = record["certification_date"].isoformat()
            records.append(record)
    return records


def diff_records(
    expected: Iterable[dict[str, Any]], actual: Iterable[dict[str, Any]], *, limit: int = 50
) -> list[str]:
    """Human-readable differences: missing and unexpected products, then differing fields."""
    want = {record["url"]: record for record in expected}
    have: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for record in actual:
        if record["url"] in have:
            problems.append(f"duplicate product {record['url']}")
        have[record["url"]] = record
    problems += [f"missing product {url}" for url in want.keys() - have.keys()]
    problems += [f"unexpected product {url}" for url in have.keys() - want.keys()]
    for url in sorted(want.keys() & have.keys()):
        for name in TRUTH_FIELDS:
            expected_value = want[url].get(name)
            actual_value = have[url].get(name)
            if expected_value != actual_value:
                problems.append(f"{url} {name}: expected {expected_value!r}, got {actual_value!r}")
    return problems[:limit] if limit else problems
