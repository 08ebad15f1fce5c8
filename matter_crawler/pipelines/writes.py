"""What the store pipeline runs on the database's thread: one transaction per call.

:func:`write_batch` writes a batch whole; :func:`write_item_by_item` isolates the
rows the database refuses; :func:`delist_proven` marks delisted the products a run
proved gone. A batch's records are products and DCL records, in any mix; each kind
goes to its own upsert (:func:`~matter_crawler.storage.products.upsert_products`,
:func:`~matter_crawler.dcl.storage.upsert_dcl_records`) in the same transaction.
See :mod:`matter_crawler.pipelines.store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine

from ..dcl.records import DclRecord
from ..dcl.storage import upsert_dcl_records
from ..items import ListingSighting, ProductItem
from ..storage.database import database_reason, may_pass
from ..storage.products import UpsertResult, mark_delisted, record_sightings, upsert_products

#: What a batch stores: products and DCL records.
StoredRecord = ProductItem | DclRecord


@dataclass(slots=True)
class BatchResult(UpsertResult):
    """What a batch wrote: its products' counts (the fields of :class:`UpsertResult`,
    as before DCL records shared the batches) and its DCL records' (``dcl``)."""

    dcl: UpsertResult = field(default_factory=UpsertResult)


def split_records(
    records: Sequence[StoredRecord],
) -> tuple[Sequence[ProductItem], list[DclRecord]]:
    """A batch's products and its DCL records.

    A batch of products only (every catalogue batch) is passed on as it is: the
    types are collected in C (``set(map(type, ...))``), with no Python step per item.
    """
    if not any(issubclass(kind, DclRecord) for kind in set(map(type, records))):
        return cast("Sequence[ProductItem]", records), []
    products = [record for record in records if isinstance(record, ProductItem)]
    dcl = [record for record in records if isinstance(record, DclRecord)]
    return products, dcl


def write_batch(
    engine: Engine,
    records: Sequence[StoredRecord],
    sightings: Sequence[ListingSighting],
    run_id: int | None,
    now: datetime,
) -> BatchResult:
    """One transaction: upsert the products and the DCL records, then record the sightings."""
    products, dcl = split_records(records)
    result = BatchResult()
    with engine.begin() as conn:
        if products:
            result.add(upsert_products(conn, products, run_id, now))
        if dcl:
            result.dcl = upsert_dcl_records(conn, dcl, run_id, now)
        record_sightings(conn, sightings, run_id, now)
    return result


def delist_proven(engine: Engine, urls: Sequence[str], run_id: int, now: datetime) -> int:
    """Mark delisted the products a run proved gone (one transaction)."""
    with engine.begin() as conn:
        return mark_delisted(conn, urls, run_id, now)


@dataclass(slots=True)
class IsolatedBatch:
    """What writing a batch item by item stored, and what the database refused."""

    result: BatchResult = field(default_factory=BatchResult)
    #: URLs of the stored records (products' and DCL records'); a URL one of whose
    #: records was refused or rejected is not among them (its letter must stay)
    stored: list[str] = field(default_factory=list)
    refused: list[tuple[StoredRecord, str]] = field(default_factory=list)  # and the reason
    sightings_refused: str | None = None  # why the sightings could not be written


def _identity(record: StoredRecord) -> Any:
    """What a batch keeps one of: a product's URL, a DCL record's kind and key (the
    records of a status-list page share its URL)."""
    if isinstance(record, DclRecord):
        return (record.kind, record.key())
    return record.url


def write_item_by_item(
    engine: Engine,
    records: Sequence[StoredRecord],
    sightings: Sequence[ListingSighting],
    run_id: int | None,
    now: datetime,
) -> IsolatedBatch:
    """Each record in its own transaction, then the sightings: the refused rows isolated.

    A refusal that may pass (the database locked or full, not this row) ends the
    isolation: trying every other row would wait out the busy timeout once per
    row for the same answer, so the rest are refused with the same reason.
    """
    batch = IsolatedBatch()
    # as in a batch: the last product of a URL, the last DCL record of a key wins
    latest = {_identity(record): record for record in records}
    stored: list[str] = []
    left_out: set[str] = set()  # URLs with a record refused or rejected
    down: str | None = None
    for record in latest.values():
        if down is not None:
            batch.refused.append((record, down))
            left_out.add(record.url)
            continue
        try:
            result = write_batch(engine, [record], [], run_id, now)
        except Exception as error:
            reason = database_reason(error)
            batch.refused.append((record, reason))
            left_out.add(record.url)
            if may_pass(error):
                down = reason
            continue
        batch.result.add(result)
        batch.result.dcl.add(result.dcl)
        if result.rejected or result.dcl.rejected:  # left out by the storage layer
            left_out.add(record.url)
            continue
        stored.append(record.url)
    batch.stored = [url for url in dict.fromkeys(stored) if url not in left_out]
    if sightings:
        if down is not None:
            batch.sightings_refused = down
        else:
            try:
                write_batch(engine, [], sightings, run_id, now)
            except Exception as error:
                batch.sightings_refused = database_reason(error)
    return batch
