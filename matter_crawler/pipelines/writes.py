"""What the store pipeline runs on the database's thread: one transaction per call.

:func:`write_batch` writes a batch whole; :func:`write_item_by_item` isolates the
rows the database refuses; :func:`delist_proven` marks delisted the products a run
proved gone. See :mod:`matter_crawler.pipelines.store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from ..items import ListingSighting, ProductItem
from ..storage.database import database_reason, may_pass
from ..storage.products import UpsertResult, mark_delisted, record_sightings, upsert_products


def write_batch(
    engine: Engine,
    products: Sequence[ProductItem],
    sightings: Sequence[ListingSighting],
    run_id: int | None,
    now: datetime,
) -> UpsertResult:
    """One transaction: upsert the products, then record the sightings."""
    with engine.begin() as conn:
        result = upsert_products(conn, products, run_id, now)
        record_sightings(conn, sightings, run_id, now)
    return result


def delist_proven(engine: Engine, urls: Sequence[str], run_id: int, now: datetime) -> int:
    """Mark delisted the products a run proved gone (one transaction)."""
    with engine.begin() as conn:
        return mark_delisted(conn, urls, run_id, now)


@dataclass(slots=True)
class IsolatedBatch:
    """What writing a batch item by item stored, and what the database refused."""

    result: UpsertResult = field(default_factory=UpsertResult)
    stored: list[str] = field(default_factory=list)  # product URLs
    refused: list[tuple[ProductItem, str]] = field(default_factory=list)  # and the reason
    sightings_refused: str | None = None  # why the sightings could not be written


def write_item_by_item(
    engine: Engine,
    products: Sequence[ProductItem],
    sightings: Sequence[ListingSighting],
    run_id: int | None,
    now: datetime,
) -> IsolatedBatch:
    """Each product in its own transaction, then the sightings: the refused rows isolated.

    A refusal that may pass (the database locked or full, not this row) ends the
    isolation: trying every other row would wait out the busy timeout once per
    row for the same answer, so the rest are refused with the same reason.
    """
    batch = IsolatedBatch()
    latest = {item.url: item for item in products}  # as in a batch: the last of a URL wins
    down: str | None = None
    for item in latest.values():
        if down is not None:
            batch.refused.append((item, down))
            continue
        try:
            result = write_batch(engine, [item], [], run_id, now)
        except Exception as error:
            reason = database_reason(error)
            batch.refused.append((item, reason))
            if may_pass(error):
                down = reason
            continue
        batch.result.new += result.new
        batch.result.changed += result.changed
        batch.result.unchanged += result.unchanged
        batch.result.changes.extend(result.changes)
        if result.rejected:  # left out by the storage layer, not written
            batch.result.rejected.extend(result.rejected)
            continue
        batch.stored.append(item.url)
    if sightings:
        if down is not None:
            batch.sightings_refused = down
        else:
            try:
                write_batch(engine, [], sightings, run_id, now)
            except Exception as error:
                batch.sightings_refused = database_reason(error)
    return batch
