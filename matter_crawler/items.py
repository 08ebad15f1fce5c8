"""Items the spider yields. Plain dataclasses: itemadapter-compatible, cheap to build.

``ProductItem`` carries the fields of the catalogue record (field names as in
docs/site-markup.md); ``ListingSighting`` says a product card was seen on a
listing page, so the store can keep ``last_seen_at`` current without fetching
the detail page again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Product fields stored as columns, in the order of the catalogue record.
PRODUCT_FIELDS: tuple[str, ...] = (
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
    "vid_int",
    "pid",
    "pid_int",
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


@dataclass(slots=True)
class ProductItem:
    """One product as its detail page shows it, normalised."""

    url: str
    manufacturer: str | None = None
    model: str | None = None
    device_type: str | None = None
    certificate_id: str | None = None
    certification_date: str | None = None  # ISO 8601 date
    software_version: str | None = None
    hardware_version: str | None = None
    firmware_version: str | None = None
    vid: str | None = None  # "0x1552"
    vid_int: int | None = None
    pid: str | None = None
    pid_int: int | None = None
    family_id: str | None = None
    family_sku: str | None = None
    family_variant_sku: str | None = None
    tis_trp_tested: bool | None = None
    specification_version: str | None = None
    transport_interface: list[str] = field(default_factory=list)
    primary_device_type_id: str | None = None
    application_categories: list[str] = field(default_factory=list)
    description: str | None = None
    compliance_document_url: str | None = None
    extra_fields: dict[str, str | None] = field(default_factory=dict)
    #: Values the normaliser could not read; a non-empty list makes the item invalid.
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ListingSighting:
    """A product card seen on a listing page."""

    url: str
    manufacturer: str | None
    model: str | None
    certificate_id: str | None
    page: int
