"""The simulated ledger: the DCL's records for the catalogue, with known disagreements.

Built once, from the ground-truth records of the catalogue as the site starts
(what a correct crawl of the catalogue stores), so that a cross-check of that crawl
with a crawl of this ledger has an exact expected answer: the findings below, and
nothing else. Every catalogue product gets a vendor record, a model (one per
VID/PID), a model version and a certified ``matter`` compliance record whose
``cDCertificateId`` is the catalogue's certificate id, except for a seeded few of
every class the cross-check reports (see docs/sitesim.md, "The simulated DCL"):

- ``missing_on_dcl``: no compliance record for the product (for half of them no
  model either);
- ``absent_from_catalogue``: certified records of models the catalogue lacks;
- ``revoked_but_listed``: the product's record is revoked;
- ``field_mismatch`` on one field: ``certificate_id``, ``certification_date``,
  ``software_version``, ``family_id``, ``transport``, ``vendor_name`` (every product
  of one vendor) or ``product_name``; the catalogue's own products that share a
  VID/PID (one model on the ledger, named after the oldest) also disagree on
  ``product_name``.

A few provisional records of models the catalogue lacks are not findings
(provisional is not certified). The stores are keyed as the DCL keys them
(big-endian ids and ``/`` separators), so their order, and the pagination keys,
are the real ledger's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..catalogue import Catalogue, slugify
from ..seeding import stream
from ..truth import records as truth_records
from .crosscheck import Finding, order
from .store import MATTER, Store, compliance_key, model_key, vendor_key

CERTIFIED, PROVISIONAL, REVOKED = 2, 1, 3  # softwareVersionCertificationStatus codes
_ROUTES = ("fullTested", "similarity", "rapid-recert", "fastTrack", "family")
_OTHER_TRANSPORT = {
    "thread": "wi-fi",
    "wi-fi": "thread",
    "bluetooth": "thread",
    "ethernet": "wi-fi",
}


@dataclass(slots=True)
class Item:
    """A catalogue product as the cross-check sees it (from its truth record)."""

    vid: int
    pid: int
    certificate_id: str
    certified: str  # YYYY-MM-DD
    version: str | None  # software version, else firmware version
    family_id: str | None
    transports: list[str]
    manufacturer: str
    model: str
    device_type_id: int
    spec: str
    family_sku: str | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> Item:
        return cls(
            vid=int(record["vid"], 16),
            pid=int(record["pid"], 16),
            certificate_id=record["certificate_id"],
            certified=record["certification_date"],
            version=record["software_version"] or record["firmware_version"],
            family_id=record["family_id"],
            transports=list(record["transport_interface"]),
            manufacturer=record["manufacturer"],
            model=record["model"],
            device_type_id=int(record["primary_device_type_id"], 16),
            spec=record["specification_version"],
            family_sku=record["family_sku"],
        )


@dataclass(slots=True)
class Ledger:
    """Every store of the simulated ledger, and the cross-check it must produce."""

    vendors: Store
    models: Store
    versions: dict[tuple[int, int, int], dict[str, Any]]
    compliance: Store
    certified: Store
    provisional: Store
    revoked: Store
    findings: list[Finding]
    consistent: int  # catalogue products with no finding
    products: int  # catalogue products compared
    mutations: int  # the catalogue's mutation count when the ledger was built


def spec_number(version: str) -> int:
    """``"1.4"`` -> 0x01040000, the DCL's encoded specification version."""
    parts = [int(part) for part in version.split(".")][:4]
    parts += [0] * (4 - len(parts))
    return int.from_bytes(bytes(parts), "big")


def _address(rng: random.Random) -> str:
    alphabet = "023456789acdefghjklmnpqrstuvwxyz"  # bech32
    return "cosmos1" + "".join(rng.choice(alphabet) for _ in range(38))


class _Builder:
    def __init__(self, catalogue: Catalogue, variant_rate: float) -> None:
        self.catalogue = catalogue
        self.rng = stream(catalogue.seed, "dcl")
        items = [Item.of(r) for r in truth_records(catalogue, variant_rate)]
        items.reverse()  # oldest first
        self.items = items
        self.used_certificates = {e.certificate_id for e in catalogue.newest_first()}
        self.used_certificates |= {e.certificate_id for e in catalogue.removed}
        self.findings: list[Finding] = []
        self.vendors: dict[bytes, dict[str, Any]] = {}
        self.models: dict[bytes, dict[str, Any]] = {}
        self.versions: dict[tuple[int, int, int], dict[str, Any]] = {}
        self.compliance: dict[bytes, dict[str, Any]] = {}
        self.indexes: dict[str, dict[bytes, dict[str, Any]]] = {
            "certified": {},
            "provisional": {},
            "revoked": {},
        }
        self.owner = _address(self.rng)

    # --- seeding decisions ----------------------------------------------------

    def plan(self) -> tuple[dict[int, str], dict[int, str]]:
        """(product index -> class or field, vendor id -> the ledger's vendor name)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, item in enumerate(self.items):
            groups.setdefault((item.vid, item.pid), []).append(i)
        grouped = {i for members in groups.values() if len(members) > 1 for i in members}
        by_vendor: dict[int, list[int]] = {}
        for i, item in enumerate(self.items):
            by_vendor.setdefault(item.vid, []).append(i)
        count = len(self.items)
        per_class, per_field = max(1, count // 200), max(1, count // 300)
        # vendor_name: the vendors with the fewest products, preferably none sharing a VID/PID
        smallest = sorted(
            by_vendor,
            key=lambda vid: (bool(grouped.intersection(by_vendor[vid])), len(by_vendor[vid]), vid),
        )
        renamed = {
            vid: self._renamed_vendor(self.items[by_vendor[vid][0]].manufacturer)
            for vid in smallest[: max(1, count // 20000)]
        }
        taken = {i for vid in renamed for i in by_vendor[vid]}
        pool = [i for i in range(count) if i not in grouped and i not in taken]
        self.rng.shuffle(pool)
        picks: dict[int, str] = {}

        def pick(label: str, wanted: int, fits: Any = lambda item: True) -> None:
            for i in [i for i in pool if i not in picks and fits(self.items[i])][:wanted]:
                picks[i] = label

        pick("missing_on_dcl", per_class)
        pick("revoked_but_listed", per_class)
        pick("certificate_id", per_field)
        pick("certification_date", per_field)
        pick("software_version", per_field, lambda item: item.version is not None)
        pick("family_id", per_field, lambda item: item.family_id is not None)
        pick("transport", per_field, lambda item: bool(item.transports))
        pick("product_name", per_field)
        return picks, renamed

    @staticmethod
    def _renamed_vendor(name: str) -> str:
        return f"{name} International"[:128]

    def fresh_certificate(self, year: int) -> str:
        while True:
            rng = self.rng
            certificate = (
                f"CSA{year % 100:02d}{rng.randrange(0x1000):03X}"
                f"MAT{rng.randint(40000, 99999)}-{rng.choice((0, 1, 24)):02d}"
            )
            if certificate not in self.used_certificates:
                self.used_certificates.add(certificate)
                return certificate

    # --- records --------------------------------------------------------------

    def add_vendors(self, renamed: dict[int, str]) -> None:
        for vendor in self.catalogue.vendors:
            host = slugify(vendor.brand) or "vendor"
            self.vendors[vendor_key(vendor.vid)] = {
                "vendorID": vendor.vid,
                "vendorName": renamed.get(vendor.vid, vendor.name),
                "companyLegalName": vendor.name,
                "companyPreferredName": vendor.brand,
                "vendorLandingPageURL": f"https://www.{host}.example",
                "creator": self.owner,
            }

    def add_model(self, vid: int, pid: int, name: str, device_type: int, part: str) -> None:
        self.models[model_key(vid, pid)] = {
            "vid": vid,
            "pid": pid,
            "deviceTypeId": device_type,
            "productName": name,
            "partNumber": part[:32],
            "commissioningCustomFlow": 0,
            "commissioningModeInitialStepsHint": 1,
            "creator": self.owner,
            "discoveryCapabilitiesBitmask": 4,
        }

    def new_software_version(self, vid: int, pid: int) -> int:
        while True:
            version = self.rng.randrange(1, 2**32)
            if (vid, pid, version) not in self.versions:
                return version

    def add_version(self, vid: int, pid: int, version: int, text: str, spec: str) -> None:
        self.versions[(vid, pid, version)] = {
            "vid": vid,
            "pid": pid,
            "softwareVersion": version,
            "softwareVersionString": text,
            "cdVersionNumber": self.rng.randint(1, 65535),
            "softwareVersionValid": True,
            "otaFileSize": self.rng.randint(2**31, 2**33),  # uint64: a JSON string
            "minApplicableSoftwareVersion": version,
            "maxApplicableSoftwareVersion": version,
            "creator": self.owner,
            "specificationVersion": spec_number(spec),
        }

    def add_compliance(self, record: dict[str, Any], status: int, day: date) -> None:
        vid, pid, version = record["vid"], record["pid"], record["softwareVersion"]
        key = compliance_key(vid, pid, version)
        index = {"vid": vid, "pid": pid, "softwareVersion": version, "certificationType": MATTER}
        stamp = f"{day.isoformat()}T00:00:00Z"
        record |= {
            "certificationType": MATTER,
            "cDVersionNumber": self.rng.randint(1, 65535),
            "softwareVersionCertificationStatus": status,
            "date": stamp,
            "owner": self.owner,
            "certificationRoute": self.rng.choice(_ROUTES),
            "programType": "endProduct",
            "programTypeVersion": "1.0",
            "parentChild": "parent" if record.get("familyId") else "child",
        }
        if status == REVOKED:  # revoked after certification, as MsgRevokeModel leaves it
            revoked_on = day + timedelta(days=self.rng.randint(30, 300))
            record["history"] = [
                {
                    "softwareVersionCertificationStatus": CERTIFIED,
                    "date": stamp,
                    "cDVersionNumber": record["cDVersionNumber"],
                }
            ]
            record["date"] = f"{revoked_on.isoformat()}T00:00:00Z"
            record["reason"] = "Revoked by the certification centre"
            self.indexes["certified"][key] = index | {"value": False}
            self.indexes["provisional"][key] = index | {"value": False}
            self.indexes["revoked"][key] = index | {"value": True}
        elif status == PROVISIONAL:
            self.indexes["provisional"][key] = index | {"value": True}
        else:
            self.indexes["certified"][key] = index | {"value": True}
        self.compliance[key] = record

    def add_products(self, picks: dict[int, str], renamed: dict[int, str]) -> int:
        """The catalogue's products; returns how many have no finding."""
        named: dict[tuple[int, int], str] = {}
        missing_seen = 0
        flagged: set[int] = set()
        for i, item in enumerate(self.items):
            label = picks.get(i)
            vid, pid, cert = item.vid, item.pid, item.certificate_id
            text = item.version or "1.0"
            day = date.fromisoformat(item.certified)
            if label == "missing_on_dcl":
                self.findings.append(Finding("missing_on_dcl", vid, pid, cert))
                flagged.add(i)
                missing_seen += 1
                if missing_seen % 2 == 0:  # half: not even a model on the ledger
                    continue
            first = (vid, pid) not in named
            if first:
                name = item.model
                if label == "product_name":
                    name = f"{item.model} Gen 2"[:128]
                named[(vid, pid)] = name
                self.add_model(vid, pid, name, item.device_type_id, item.family_sku or "")
            name = named[(vid, pid)]
            if name != item.model:
                self.findings.append(
                    Finding("field_mismatch", vid, pid, cert, "product_name", item.model, name)
                )
                flagged.add(i)
            if label == "software_version":
                text = f"{item.version}.1"
            version = self.new_software_version(vid, pid)
            self.add_version(vid, pid, version, text, item.spec)
            if label == "missing_on_dcl":
                continue
            kinds = [t.lower() for t in item.transports]  # "Wi-Fi" -> "wi-fi"
            if label == "transport":  # one transport fewer, or another one
                kinds = kinds[:-1] if len(kinds) > 1 else [_OTHER_TRANSPORT[kinds[0]]]
            transport = ",".join(kinds)
            family = item.family_id or ""
            if label == "family_id":
                family = f"FAM{self.rng.randint(300000, 399999)}"
            certificate = cert
            if label == "certificate_id":
                certificate = self.fresh_certificate(day.year)
            if label == "certification_date":
                day += timedelta(days=self.rng.randint(1, 60))
            record = {
                "vid": vid,
                "pid": pid,
                "softwareVersion": version,
                "softwareVersionString": text,
                "cDCertificateId": certificate,
                "transport": transport,
                "familyId": family,
                "specificationVersion": spec_number(item.spec),
            }
            status = REVOKED if label == "revoked_but_listed" else CERTIFIED
            self.add_compliance(record, status, day)
            dcl_value = {
                "certificate_id": certificate,
                "certification_date": f"{day.isoformat()}T00:00:00Z",
                "software_version": text,
                "family_id": family,
                "transport": transport,
            }
            if label == "revoked_but_listed":
                self.findings.append(Finding("revoked_but_listed", vid, pid, cert))
                flagged.add(i)
            elif label in dcl_value:
                catalogue_value = {
                    "certificate_id": cert,
                    "certification_date": item.certified,
                    "software_version": item.version,
                    "family_id": item.family_id,
                    "transport": item.transports,
                }[label]
                self.findings.append(
                    Finding(
                        "field_mismatch", vid, pid, cert, label, catalogue_value, dcl_value[label]
                    )
                )
                flagged.add(i)
            if vid in renamed:
                self.findings.append(
                    Finding(
                        "field_mismatch",
                        vid,
                        pid,
                        cert,
                        "vendor_name",
                        item.manufacturer,
                        renamed[vid],
                    )
                )
                flagged.add(i)
        return len(self.items) - len(flagged)

    def add_ledger_only(self, count: int, status: int) -> None:
        """Models the catalogue lacks, certified (findings) or provisional (not)."""
        taken = {(item.vid, item.pid) for item in self.items}
        vendors = self.catalogue.vendors
        for n in range(count):
            vendor = vendors[self.rng.randrange(len(vendors))]
            pid = self.rng.randint(1, 0xFFFE)
            while (vendor.vid, pid) in taken:
                pid = self.rng.randint(1, 0xFFFE)
            taken.add((vendor.vid, pid))
            day = date(2026, 11, 20) - timedelta(days=self.rng.randint(0, 900))
            name = f"{vendor.brand} Ledger Device {n + 1}"
            self.add_model(vendor.vid, pid, name, 0x0100, "")
            version = self.new_software_version(vendor.vid, pid)
            text = f"{self.rng.randint(1, 9)}.{self.rng.randint(0, 9)}.{self.rng.randint(0, 99)}"
            self.add_version(vendor.vid, pid, version, text, "1.4")
            certificate = self.fresh_certificate(day.year)
            record = {
                "vid": vendor.vid,
                "pid": pid,
                "softwareVersion": version,
                "softwareVersionString": text,
                "cDCertificateId": certificate,
                "transport": "thread",
                "specificationVersion": spec_number("1.4"),
            }
            self.add_compliance(record, status, day)
            if status == CERTIFIED:
                self.findings.append(Finding("absent_from_catalogue", vendor.vid, pid, certificate))


def build(catalogue: Catalogue, variant_rate: float) -> Ledger:
    """The ledger for the catalogue as it is now (same seed: same ledger)."""
    builder = _Builder(catalogue, variant_rate)
    picks, renamed = builder.plan()
    builder.add_vendors(renamed)
    consistent = builder.add_products(picks, renamed)
    extra = max(1, len(builder.items) // 200)
    builder.add_ledger_only(extra, CERTIFIED)
    builder.add_ledger_only(extra, PROVISIONAL)
    findings = sorted(builder.findings, key=order)
    return Ledger(
        vendors=Store(builder.vendors),
        models=Store(builder.models),
        versions=builder.versions,
        compliance=Store(builder.compliance),
        certified=Store(builder.indexes["certified"]),
        provisional=Store(builder.indexes["provisional"]),
        revoked=Store(builder.indexes["revoked"]),
        findings=findings,
        consistent=consistent,
        products=len(builder.items),
        mutations=catalogue.mutations,
    )
