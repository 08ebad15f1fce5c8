"""Helpers of the simulated-DCL tests: the contract's schemas, list walks, and the
cross-check derived from what the site serves.

The expected findings are derived here from the ledger's JSON and the catalogue's
truth as the site serves them, by the rules docs/sitesim.md states, with none of
the site's code: the ledger records the disagreements it seeded, and the tests
check that these rules find those, no more, no fewer.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import yaml

from .webclient import fetch

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "dcl" / "openapi-excerpt.yml"
LIST_FIELDS = {
    "/dcl/vendorinfo/vendors": "vendorInfo",
    "/dcl/model/models": "model",
    "/dcl/compliance/compliance-info": "complianceInfo",
    "/dcl/compliance/certified-models": "certifiedModel",
    "/dcl/compliance/provisional-models": "provisionalModel",
    "/dcl/compliance/revoked-models": "revokedModel",
}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def load_contract() -> dict[str, Any]:
    with CONTRACT.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def strict(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """A Swagger 2.0 schema as a draft-4 JSON Schema, tightened to what the gateway emits.

    ``$ref``s to ``#/definitions/...`` are resolved; every declared property is
    required (EmitDefaults writes zero values too) and no other is allowed (unless
    the schema itself allows more); integer formats bound the value; a ``uint64``
    string must hold digits; a ``byte`` string is base64, or ``null`` (Swagger 2.0
    cannot say nullable, but an unset ``bytes`` field is written as ``null``).
    """
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/definitions/")
        return strict(root["definitions"][name], root)
    out = {k: v for k, v in schema.items() if k not in ("properties", "items", "title")}
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "object" and "properties" in schema:
        out["properties"] = {k: strict(v, root) for k, v in schema["properties"].items()}
        out["required"] = list(schema["properties"])
        out.setdefault("additionalProperties", False)
    if kind == "array":
        out["items"] = strict(schema["items"], root)
    if kind == "integer" and fmt in _INT_RANGES:
        low, high = _INT_RANGES[fmt]
        out["minimum"], out["maximum"] = (
            max(low, out.get("minimum", low)),
            min(high, out.get("maximum", high)),
        )
    if kind == "string" and fmt == "uint64":
        out["pattern"] = "^[0-9]+$"
    if kind == "string" and fmt == "byte":
        out["type"] = ["string", "null"]
        out["pattern"] = "^[A-Za-z0-9+/]*={0,2}$"
    return out


class Contract:
    """Validators of each path's answers (200 and error)."""

    def __init__(self) -> None:
        self.root = load_contract()
        self.paths = self.root["paths"]

    def validate(self, path: str, status: int, body: Any) -> None:
        responses = self.paths[path]["get"]["responses"]
        schema = responses["200"]["schema"] if status == 200 else responses["default"]["schema"]
        jsonschema.Draft4Validator(strict(schema, self.root)).validate(body)


def get_json(base: str, path: str, **query: Any) -> tuple[int, Any]:
    text = "&".join(f"pagination.{k}={quote(str(v), safe='')}" for k, v in query.items())
    reply = fetch(f"{base}{path}" + (f"?{text}" if text else ""))
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    return reply.status, json.loads(reply.body)


def walk(base: str, path: str, contract: Contract | None = None, **query: Any) -> list[dict]:
    """Every record of a list, page by page with ``pagination.key``."""
    records: list[dict] = []
    key = None
    for _ in range(100_000):
        page = dict(query) | ({"key": key} if key is not None else {})
        status, body = get_json(base, path, **page)
        assert status == 200, body
        if contract is not None:
            contract.validate(path, status, body)
        records += body[LIST_FIELDS[path]]
        key = body["pagination"]["next_key"]
        if key is None:
            return records
    raise AssertionError("the walk never ended")


def hexid(text: str) -> int:
    return int(text, 16)


def derive_findings(
    truth: list[dict], vendors: list[dict], models: list[dict], compliance: list[dict]
) -> tuple[list[dict], int]:
    """(findings, consistent products) by the rules of docs/sitesim.md."""
    vendor_names = {v["vendorID"]: v["vendorName"] for v in vendors}
    model_names = {(m["vid"], m["pid"]): m["productName"] for m in models}
    matter = [c for c in compliance if c["certificationType"] == "matter"]
    by_certificate = {(c["vid"], c["pid"], c["cDCertificateId"]): c for c in matter}
    by_model: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for record in matter:
        by_model[(record["vid"], record["pid"])].append(record)
    findings: list[dict] = []
    flagged: set[str] = set()

    def add(
        kind: str, vid: int, pid: int, cert: str, name: Any = None, cat: Any = None, dcl: Any = None
    ) -> None:
        findings.append(
            {
                "class": kind,
                "vid": vid,
                "pid": pid,
                "certificate_id": cert,
                "field": name,
                "catalogue": cat,
                "dcl": dcl,
            }
        )

    pairs: list[tuple[dict, dict, bool]] = []
    by_cert_ids = set()
    pending = []
    for product in truth:
        key = (hexid(product["vid"]), hexid(product["pid"]), product["certificate_id"])
        record = by_certificate.get(key)
        if record is None:
            pending.append(product)
        else:
            by_cert_ids.add(id(record))
            pairs.append((product, record, False))
    for product in pending:
        vid, pid = hexid(product["vid"]), hexid(product["pid"])
        candidates = [c for c in by_model[(vid, pid)] if id(c) not in by_cert_ids]
        if not candidates:
            add("missing_on_dcl", vid, pid, product["certificate_id"])
            flagged.add(product["url"])
            continue
        pairs.append((product, max(candidates, key=lambda c: c["softwareVersion"]), True))
    matched = {id(record) for _, record, _ in pairs}
    for record in matter:
        if record["softwareVersionCertificationStatus"] == 2 and id(record) not in matched:
            add("absent_from_catalogue", record["vid"], record["pid"], record["cDCertificateId"])
    for product, record, by_model_only in pairs:
        vid, pid, cert = hexid(product["vid"]), hexid(product["pid"]), product["certificate_id"]
        before = len(findings)
        if record["softwareVersionCertificationStatus"] == 3:
            add("revoked_but_listed", vid, pid, cert)
            flagged.add(product["url"])
            continue
        if by_model_only:
            add("field_mismatch", vid, pid, cert, "certificate_id", cert, record["cDCertificateId"])
        if product["certification_date"] != record["date"][:10]:
            add(
                "field_mismatch",
                vid,
                pid,
                cert,
                "certification_date",
                product["certification_date"],
                record["date"],
            )
        version = product["software_version"] or product["firmware_version"]
        if version is not None and version != record["softwareVersionString"]:
            add(
                "field_mismatch",
                vid,
                pid,
                cert,
                "software_version",
                version,
                record["softwareVersionString"],
            )
        if (product["family_id"] or "") != record["familyId"]:
            add(
                "field_mismatch",
                vid,
                pid,
                cert,
                "family_id",
                product["family_id"],
                record["familyId"],
            )
        ours = {t.lower() for t in product["transport_interface"]}
        theirs = {t.strip() for t in record["transport"].split(",") if t.strip()}
        if ours != theirs:
            add(
                "field_mismatch",
                vid,
                pid,
                cert,
                "transport",
                product["transport_interface"],
                record["transport"],
            )
        if product["manufacturer"] != vendor_names.get(vid):
            add(
                "field_mismatch",
                vid,
                pid,
                cert,
                "vendor_name",
                product["manufacturer"],
                vendor_names.get(vid),
            )
        name = model_names.get((vid, pid))
        if product["model"] != name:
            add("field_mismatch", vid, pid, cert, "product_name", product["model"], name)
        if len(findings) > before:
            flagged.add(product["url"])
    return findings, len(truth) - len(flagged)


def canonical(findings: list[dict]) -> list[str]:
    return sorted(json.dumps(finding, sort_keys=True, ensure_ascii=False) for finding in findings)
