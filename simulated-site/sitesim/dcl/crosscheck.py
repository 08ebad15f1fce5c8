"""The cross-check's expected findings and their JSON (the ground truth).

The rules a cross-check applies (docs/sitesim.md, "The simulated DCL") decide
which finding a disagreement is; the ledger records each one it seeds here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ledger import Ledger

FIELDS = (
    "certificate_id",
    "certification_date",
    "software_version",
    "family_id",
    "transport",
    "vendor_name",
    "product_name",
)
CLASSES = ("missing_on_dcl", "absent_from_catalogue", "revoked_but_listed", "field_mismatch")


@dataclass(frozen=True, slots=True)
class Finding:
    """One expected finding of the cross-check."""

    kind: str  # one of CLASSES
    vid: int
    pid: int
    certificate_id: str  # the catalogue's; the DCL record's for absent_from_catalogue
    field: str | None = None  # for field_mismatch, one of FIELDS
    catalogue: Any = None
    dcl: Any = None

    def as_json(self) -> dict[str, Any]:
        return {
            "class": self.kind,
            "vid": self.vid,
            "pid": self.pid,
            "certificate_id": self.certificate_id,
            "field": self.field,
            "catalogue": self.catalogue,
            "dcl": self.dcl,
        }


def order(finding: Finding) -> tuple[Any, ...]:
    return (finding.kind, finding.vid, finding.pid, finding.certificate_id, finding.field or "")


def crosscheck_json(ledger: Ledger) -> dict[str, Any]:
    """The ground truth of the cross-check (``/__sim__/crosscheck``, ``--dump-crosscheck``)."""
    counts = {kind: 0 for kind in CLASSES}
    fields = {name: 0 for name in FIELDS}
    for finding in ledger.findings:
        counts[finding.kind] += 1
        if finding.field:
            fields[finding.field] += 1
    return {
        "products": ledger.products,
        "consistent": ledger.consistent,
        "counts": counts,
        "field_counts": fields,
        "findings": [finding.as_json() for finding in ledger.findings],
    }
