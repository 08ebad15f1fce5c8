"""Each cross-check in the database: its inputs read, its result stored, its findings' history.

- :func:`read_inputs`: the catalogue's listed products and the ledger's ``matter``
  compliance records, vendors and models, as the rows
  :func:`~matter_crawler.dcl.crosscheck.crosscheck` takes;
- :func:`store_check`: one ``crosscheck_runs`` row (time, products, consistent,
  findings, counts per class and per field) and a ``crosscheck_findings`` row per
  finding (its :meth:`~matter_crawler.dcl.crosscheck.Finding.fingerprint`, both values
  as JSON text), in one transaction;
- :func:`appearances`: for findings, the first and last stored check each appeared in
  (by fingerprint), so a report can say since when a disagreement stands;
- :func:`latest_check`: the newest stored check's summary (the metrics read it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from ..storage.models import (
    CrosscheckFinding,
    CrosscheckRun,
    DclCompliance,
    DclModel,
    DclVendor,
    Product,
)
from .crosscheck import (
    CERTIFICATION_TYPE,
    COMPLIANCE_COLUMNS,
    PRODUCT_COLUMNS,
    CrosscheckResult,
    Finding,
)

products = Product.__table__
compliance = DclCompliance.__table__
vendors = DclVendor.__table__
models = DclModel.__table__
runs = CrosscheckRun.__table__
findings = CrosscheckFinding.__table__

#: Fingerprints per ``IN (...)`` of :func:`appearances` (well under any backend's limit).
FINGERPRINT_CHUNK = 500


@dataclass(slots=True)
class CheckInputs:
    """The rows one check reads."""

    products: list[dict[str, Any]]
    compliance: list[dict[str, Any]]
    vendors: list[dict[str, Any]]
    models: list[dict[str, Any]]
    dcl_records: int  # compliance records of every type: 0 means no DCL crawl yet


@dataclass(frozen=True, slots=True)
class Appearance:
    """The first and last stored check a finding appeared in."""

    first_check: int
    first_seen: datetime
    last_check: int
    last_seen: datetime


def read_inputs(conn: Connection) -> CheckInputs:
    """The listed products and the ledger's rows, ordered (a check reads them whole)."""
    product_rows = conn.execute(
        select(*(products.c[name] for name in PRODUCT_COLUMNS))
        .where(products.c.delisted_at.is_(None))
        .order_by(products.c.id)
    ).all()
    compliance_rows = conn.execute(
        select(*(compliance.c[name] for name in COMPLIANCE_COLUMNS))
        .where(compliance.c.certification_type == CERTIFICATION_TYPE)
        .order_by(compliance.c.vid, compliance.c.pid, compliance.c.software_version)
    ).all()
    vendor_rows = conn.execute(select(vendors.c.vid, vendors.c.vendor_name)).all()
    model_rows = conn.execute(select(models.c.vid, models.c.pid, models.c.product_name)).all()
    total = conn.execute(select(func.count()).select_from(compliance)).scalar() or 0
    return CheckInputs(
        [row._asdict() for row in product_rows],
        [row._asdict() for row in compliance_rows],
        [row._asdict() for row in vendor_rows],
        [row._asdict() for row in model_rows],
        total,
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def run_counts(result: CrosscheckResult) -> dict[str, Any]:
    """What ``crosscheck_runs.counts`` holds: per class, per field, products left out."""
    return {
        "counts": result.counts(),
        "field_counts": result.field_counts(),
        "unkeyed": len(result.unkeyed),
    }


def store_check(conn: Connection, result: CrosscheckResult, checked_at: datetime) -> int:
    """Store the check and its findings (call inside a transaction); returns its id."""
    check_id = conn.execute(
        insert(runs).values(
            checked_at=checked_at,
            products=result.products,
            consistent=result.consistent,
            findings=len(result.findings),
            counts=run_counts(result),
        )
    ).inserted_primary_key[0]
    if result.findings:
        conn.execute(
            insert(findings),
            [
                {
                    "check_id": check_id,
                    "fingerprint": finding.fingerprint(),
                    "finding_class": finding.finding_class,
                    "vid": finding.vid,
                    "pid": finding.pid,
                    "certificate_id": finding.certificate_id,
                    "field": finding.field,
                    "catalogue_value": _json(finding.catalogue),
                    "dcl_value": _json(finding.dcl),
                    "product_url": finding.product_url,
                }
                for finding in result.findings
            ],
        )
    return int(check_id)


def appearances(conn: Connection, fingerprints: Iterable[str]) -> dict[str, Appearance]:
    """For each fingerprint stored before, the first and the last check it appeared in."""
    wanted = sorted(set(fingerprints))
    first_run, last_run = runs.alias("first_run"), runs.alias("last_run")
    found: dict[str, Appearance] = {}
    for start in range(0, len(wanted), FINGERPRINT_CHUNK):
        chunk = wanted[start : start + FINGERPRINT_CHUNK]
        spans = (
            select(
                findings.c.fingerprint,
                func.min(findings.c.check_id).label("first_check"),
                func.max(findings.c.check_id).label("last_check"),
            )
            .where(findings.c.fingerprint.in_(chunk))
            .group_by(findings.c.fingerprint)
            .subquery()
        )
        rows = conn.execute(
            select(
                spans.c.fingerprint,
                spans.c.first_check,
                first_run.c.checked_at.label("first_seen"),
                spans.c.last_check,
                last_run.c.checked_at.label("last_seen"),
            )
            .join(first_run, first_run.c.id == spans.c.first_check)
            .join(last_run, last_run.c.id == spans.c.last_check)
        ).all()
        for row in rows:
            found[row.fingerprint] = Appearance(
                row.first_check, row.first_seen, row.last_check, row.last_seen
            )
    return found


def finding_appearances(
    conn: Connection, result_findings: Sequence[Finding]
) -> list[Appearance | None]:
    """:func:`appearances` of each finding in order (None: never stored)."""
    known = appearances(conn, (finding.fingerprint() for finding in result_findings))
    return [known.get(finding.fingerprint()) for finding in result_findings]


def latest_check(conn: Connection) -> dict[str, Any] | None:
    """The newest stored check: id, checked_at, products, consistent, findings, counts."""
    row = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(1)).first()
    return None if row is None else row._asdict()
