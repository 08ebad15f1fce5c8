"""The cross-check of the catalogue with the DCL: pure functions over rows, no I/O.

Input: the catalogue's listed products (``products`` rows, :data:`PRODUCT_COLUMNS`)
and the ledger's ``dcl_compliance``, ``dcl_vendors`` and ``dcl_models`` rows (the
columns of :mod:`.records`); output: the findings and how many products are
consistent (:class:`CrosscheckResult`). The rules (docs/sitesim.md, "The
cross-check's rules and its ground truth"; docs/commands.md):

1. A product matches the ``matter`` compliance record with its VID, PID and
   certificate id (several such records, one per software version: it matches all
   of them and is compared with the highest ``software_version``). Failing that, it
   matches the record with the highest software version among its VID/PID's records
   that no product matches by certificate id, and the certificate ids disagree
   (``certificate_id``). Failing that too, it is ``missing_on_dcl``.
2. A certified record (status 2) that no product matched is ``absent_from_catalogue``.
3. A matched record that is revoked (status 3) is ``revoked_but_listed``; its fields
   are not compared (a certificate id disagreement included).
4. Otherwise the fields are compared (:data:`FIELDS`): ``certification_date`` (the
   catalogue's date against the date part of the ledger's RFC 3339 ``date``),
   ``software_version`` (the software version, else the firmware version, against
   ``software_version_string``; not compared when the catalogue states neither),
   ``family_id`` (a missing one counts as empty), ``transport`` (as sets,
   case-insensitive: the catalogue's list against the ledger's comma-separated
   text), ``vendor_name`` (the manufacturer against the VID's vendor record) and
   ``product_name`` (the model against the VID/PID's model record). A vendor or
   model record the ledger lacks counts as a disagreement with ``dcl`` null.

A finding holds both values as each source states them (the catalogue's transports
as a list, the ledger's as its text; the ledger's whole ``date``). A product without
VID or PID cannot be joined: it is left out of the check and listed in
:attr:`CrosscheckResult.unkeyed`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .records import STATUS_CERTIFIED, STATUS_REVOKED

MISSING_ON_DCL = "missing_on_dcl"
ABSENT_FROM_CATALOGUE = "absent_from_catalogue"
REVOKED_BUT_LISTED = "revoked_but_listed"
FIELD_MISMATCH = "field_mismatch"
#: The finding classes, in the order the counts are reported.
CLASSES = (MISSING_ON_DCL, ABSENT_FROM_CATALOGUE, REVOKED_BUT_LISTED, FIELD_MISMATCH)
#: The fields of a ``field_mismatch``, in the order they are compared and reported.
FIELDS = (
    "certificate_id",
    "certification_date",
    "software_version",
    "family_id",
    "transport",
    "vendor_name",
    "product_name",
)
#: The ledger's certification type the catalogue's certificates are.
CERTIFICATION_TYPE = "matter"
#: The ``products`` columns the check reads.
PRODUCT_COLUMNS = (
    "url",
    "vid_int",
    "pid_int",
    "certificate_id",
    "certification_date",
    "software_version",
    "firmware_version",
    "family_id",
    "transport_interface",
    "manufacturer",
    "model",
)
#: The ``dcl_compliance`` columns the check reads.
COMPLIANCE_COLUMNS = (
    "vid",
    "pid",
    "software_version",
    "certification_type",
    "software_version_string",
    "status",
    "date",
    "cd_certificate_id",
    "transport",
    "family_id",
)

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Finding:
    """One disagreement between the catalogue and the ledger."""

    finding_class: str
    vid: int
    pid: int
    #: the catalogue's certificate id (the ledger's for ``absent_from_catalogue``)
    certificate_id: str | None
    field: str | None = None  # only for field_mismatch
    catalogue: Any = None
    dcl: Any = None
    product_url: str | None = None  # None for absent_from_catalogue

    def fingerprint(self) -> str:
        """A stable name of this finding across checks (values left out: they may change)."""
        key = [self.finding_class, self.vid, self.pid, self.certificate_id, self.field]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        """The finding in the ground truth's shape (``GET /__sim__/crosscheck``)."""
        return {
            "class": self.finding_class,
            "vid": self.vid,
            "pid": self.pid,
            "certificate_id": self.certificate_id,
            "field": self.field,
            "catalogue": self.catalogue,
            "dcl": self.dcl,
        }

    def sort_key(self) -> tuple[Any, ...]:
        return (
            self.finding_class,
            self.vid,
            self.pid,
            self.certificate_id or "",
            self.field or "",
            self.product_url or "",
        )


@dataclass(slots=True)
class CrosscheckResult:
    """What one check found: ``products`` compared, ``consistent`` without a finding."""

    products: int
    consistent: int
    findings: list[Finding]
    unkeyed: list[str] = field(default_factory=list)  # urls of products without VID/PID

    def counts(self) -> dict[str, int]:
        """Findings per class, every class included."""
        counts = dict.fromkeys(CLASSES, 0)
        for finding in self.findings:
            counts[finding.finding_class] += 1
        return counts

    def field_counts(self) -> dict[str, int]:
        """``field_mismatch`` findings per field, every field included."""
        counts = dict.fromkeys(FIELDS, 0)
        for finding in self.findings:
            if finding.field is not None:
                counts[finding.field] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """The ground truth's shape: products, consistent, counts, field_counts, findings."""
        return {
            "products": self.products,
            "consistent": self.consistent,
            "counts": self.counts(),
            "field_counts": self.field_counts(),
            "findings": [finding.as_dict() for finding in self.findings],
        }


# -- how each field is read and compared --------------------------------------------------


def _stated(value: Any) -> bool:
    return value is not None and value != ""


def catalogue_date(value: date | str | None) -> str | None:
    """The catalogue's certification date as ISO text (the column is a date)."""
    if isinstance(value, date):
        return value.isoformat()
    return value or None


def ledger_date(value: str | None) -> str:
    """The date part of an RFC 3339 time (``2024-05-17T00:00:00Z`` -> ``2024-05-17``)."""
    text = (value or "").strip()
    for separator in ("T", "t", " "):
        if separator in text:
            return text.split(separator, 1)[0]
    return text


def catalogue_transports(value: Iterable[str] | None) -> frozenset[str]:
    return frozenset(name.strip().casefold() for name in value or () if name and name.strip())


def ledger_transports(value: str | None) -> frozenset[str]:
    return frozenset(name.strip().casefold() for name in (value or "").split(",") if name.strip())


def catalogue_software_version(product: Row) -> str | None:
    """The software version, else the firmware version, else None (not compared)."""
    for column in ("software_version", "firmware_version"):
        if _stated(product.get(column)):
            return product[column]
    return None


def field_findings(
    product: Row,
    record: Row,
    vendor_names: Mapping[int, str],
    product_names: Mapping[tuple[int, int], str],
) -> list[tuple[str, Any, Any]]:
    """(field, catalogue value, ledger value) of each field of rule 4 that disagrees."""
    vid, pid = product["vid_int"], product["pid_int"]
    found: list[tuple[str, Any, Any]] = []
    stated_date = catalogue_date(product.get("certification_date"))
    if stated_date != ledger_date(record.get("date")):
        found.append(("certification_date", stated_date, record.get("date")))
    version = catalogue_software_version(product)
    if version is not None and version != record.get("software_version_string"):
        found.append(("software_version", version, record.get("software_version_string")))
    if (product.get("family_id") or "") != (record.get("family_id") or ""):
        found.append(("family_id", product.get("family_id"), record.get("family_id")))
    transports = product.get("transport_interface") or []
    if catalogue_transports(transports) != ledger_transports(record.get("transport")):
        found.append(("transport", list(transports), record.get("transport")))
    vendor_name = vendor_names.get(vid)
    if product.get("manufacturer") != vendor_name:
        found.append(("vendor_name", product.get("manufacturer"), vendor_name))
    product_name = product_names.get((vid, pid))
    if product.get("model") != product_name:
        found.append(("product_name", product.get("model"), product_name))
    return found


# -- the check ------------------------------------------------------------------------------


def _record_key(record: Row) -> tuple[int, int, str]:
    return (record["vid"], record["pid"], record["cd_certificate_id"])


def _newest(records: Iterable[Row]) -> Row | None:
    return max(records, key=lambda record: record["software_version"], default=None)


def crosscheck(
    products: Iterable[Row],
    compliance: Iterable[Row],
    vendors: Iterable[Row] = (),
    models: Iterable[Row] = (),
) -> CrosscheckResult:
    """Check the listed ``products`` against the ledger's rows (the rules above).

    ``compliance`` rows of another certification type than ``matter`` are ignored.
    Findings come sorted by class, VID, PID, certificate id and field.
    """
    records = [row for row in compliance if row["certification_type"] == CERTIFICATION_TYPE]
    vendor_names = {row["vid"]: row["vendor_name"] for row in vendors}
    product_names = {(row["vid"], row["pid"]): row["product_name"] for row in models}
    by_certificate: dict[tuple[int, int, str], list[Row]] = defaultdict(list)
    by_model: dict[tuple[int, int], list[Row]] = defaultdict(list)
    for record in records:
        by_certificate[_record_key(record)].append(record)
        by_model[record["vid"], record["pid"]].append(record)

    keyed: list[Row] = []
    unkeyed: list[str] = []
    for product in products:
        if product.get("vid_int") is None or product.get("pid_int") is None:
            unkeyed.append(product["url"])
        else:
            keyed.append(product)

    # rule 1, first pass: by VID, PID and certificate id (every product, before any fallback)
    certificate_keys = {
        (product["vid_int"], product["pid_int"], product.get("certificate_id")) for product in keyed
    }
    matched: set[int] = set()  # id() of the records some product matched
    findings: list[Finding] = []
    flagged: set[int] = set()  # indexes of products with a finding
    for index, product in enumerate(keyed):
        vid, pid = product["vid_int"], product["pid_int"]
        certificate_id = product.get("certificate_id")
        exact = by_certificate.get((vid, pid, certificate_id), [])
        if exact:
            matched.update(id(record) for record in exact)
            record = _newest(exact)
            assert record is not None
            disagreements = []
        else:
            # rule 1, second pass: the newest of the VID/PID's records no product names
            record = _newest(
                candidate
                for candidate in by_model.get((vid, pid), [])
                if _record_key(candidate) not in certificate_keys
            )
            if record is None:
                findings.append(_finding(MISSING_ON_DCL, product))
                flagged.add(index)
                continue
            matched.add(id(record))
            disagreements = [("certificate_id", certificate_id, record["cd_certificate_id"])]
        if record["status"] == STATUS_REVOKED:  # rule 3
            findings.append(_finding(REVOKED_BUT_LISTED, product))
            flagged.add(index)
            continue
        disagreements += field_findings(product, record, vendor_names, product_names)
        for name, catalogue_value, dcl_value in disagreements:  # rule 4
            findings.append(_finding(FIELD_MISMATCH, product, name, catalogue_value, dcl_value))
        if disagreements:
            flagged.add(index)

    for record in records:  # rule 2
        if record["status"] == STATUS_CERTIFIED and id(record) not in matched:
            findings.append(
                Finding(
                    ABSENT_FROM_CATALOGUE,
                    record["vid"],
                    record["pid"],
                    record["cd_certificate_id"],
                )
            )
    findings.sort(key=Finding.sort_key)
    return CrosscheckResult(len(keyed), len(keyed) - len(flagged), findings, unkeyed)


def _finding(
    finding_class: str,
    product: Row,
    name: str | None = None,
    catalogue_value: Any = None,
    dcl_value: Any = None,
) -> Finding:
    return Finding(
        finding_class,
        product["vid_int"],
        product["pid_int"],
        product.get("certificate_id"),
        name,
        catalogue_value,
        dcl_value,
        product["url"],
    )
