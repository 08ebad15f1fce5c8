"""Ground truth: the exact records a correct crawler of the simulated site stores.

Computed from the catalogue model (plus the per-page variant decision that
adds an unknown label), never by parsing the site's own HTML, so the tests that
compare a crawl with it check the crawler against an independent account.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from . import hostile_parsing
from .catalogue import Catalogue
from .products import Product
from .variants import shows_extra_label

# Exactly these keys, in this order, in every record.
TRUTH_KEYS = (
    "url",
    "manufacturer",
    "model",
    "device_type",
    "certificate_id",
    "certification_date",
    "software_version",
    "hardware_version",
    "firmware_version",
    "vid",
    "pid",
    "family_id",
    "family_sku",
    "family_variant_sku",
    "tis_trp_tested",
    "specification_version",
    "transport_interface",
    "primary_device_type_id",
    "application_categories",
    "description",
    "compliance_document_url",
    "extra_fields",
)


def hex_id(value: int) -> str:
    """A Matter id as the site shows it: ``0x`` and four uppercase hex digits."""
    return f"0x{value:04X}"


def record(product: Product, extra_label_shown: bool) -> dict[str, Any]:
    """The ground-truth record of one product."""
    label, value = product.extra_field
    return {
        "url": product.path,
        "manufacturer": product.manufacturer,
        "model": product.model,
        "device_type": product.device_type,
        "certificate_id": product.certificate_id,
        "certification_date": product.certified.isoformat(),
        "software_version": product.software_version,
        "hardware_version": product.hardware_version,
        "firmware_version": product.firmware_version,
        "vid": hex_id(product.vid),
        "pid": hex_id(product.pid),
        "family_id": product.family_id,
        "family_sku": product.family_sku,
        "family_variant_sku": product.family_variant_sku,
        "tis_trp_tested": product.tis_trp_tested,
        "specification_version": product.specification_version,
        "transport_interface": list(product.transports),
        "primary_device_type_id": hex_id(product.device_type_id),
        "application_categories": list(product.application_categories),
        "description": product.description,
        "compliance_document_url": product.compliance_document,
        "extra_fields": {label: value} if extra_label_shown else {},
    }


def records(catalogue: Catalogue, variant_rate: float) -> Iterator[dict[str, Any]]:
    """Every listed product's record, newest first (the listing's order).

    Hostile products a correct crawler cannot store (``--hostile``) are left out.
    """
    for entry in catalogue.newest_first():
        if not catalogue.stores_fine(entry):
            continue
        shown = shows_extra_label(catalogue.seed, entry.slug, variant_rate)
        kind = catalogue.hostile_parsing.get(entry.slug)
        yield hostile_parsing.truth_record(kind, record(catalogue.product(entry), shown))


def removed_records(catalogue: Catalogue, variant_rate: float) -> Iterator[dict[str, Any]]:
    """The record of every product mutations removed, as it was when removed.

    A crawler that stored such a product must end with it marked delisted; the
    records say what its row then holds (unless the crawl never fetched it).
    """
    for entry in catalogue.removed:
        shown = shows_extra_label(catalogue.seed, entry.slug, variant_rate)
        yield record(catalogue.product(entry), shown)


def removed_json_lines(catalogue: Catalogue, variant_rate: float) -> Iterator[str]:
    """The removed products' records as JSON lines, in removal order."""
    for item in removed_records(catalogue, variant_rate):
        yield json.dumps(item, ensure_ascii=False) + "\n"


def json_lines(catalogue: Catalogue, variant_rate: float) -> Iterator[str]:
    """The truth as JSON lines (UTF-8 text, one record a line)."""
    for item in records(catalogue, variant_rate):
        yield json.dumps(item, ensure_ascii=False) + "\n"


def dump(catalogue: Catalogue, variant_rate: float, out: TextIO) -> int:
    """Write the truth to ``out``; returns the number of records."""
    count = 0
    for line in json_lines(catalogue, variant_rate):
        out.write(line)
        count += 1
    return count
