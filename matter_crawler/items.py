"""The spider's items, and the sightings it sends beside them. Plain dataclasses.

``ProductItem`` carries the fields of the catalogue record (field names as in
docs/site-markup.md); its field list is read from the class with
:class:`itemadapter.ItemAdapter` (:data:`PRODUCT_FIELDS`, :data:`RECORD_FIELDS`),
never restated. ``ListingSighting`` says a product card was seen on a listing
page, so the store can keep ``last_seen_at`` current without fetching the detail
page again: it is not an item but the payload of the ``listing_sighted`` signal.

Field metadata (``dataclasses.field(metadata=...)``, read with
``ItemAdapter.get_field_meta_from_class``): ``stored=False``, not a column of
``products``; ``derived=True``, a column computed from another field, not part of
the catalogue record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from itemadapter import ItemAdapter


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
    vid_int: int | None = field(default=None, metadata={"derived": True})  # from vid
    pid: str | None = None
    pid_int: int | None = field(default=None, metadata={"derived": True})  # from pid
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
    problems: list[str] = field(default_factory=list, metadata={"stored": False})


def _stored_fields(*, with_derived: bool) -> tuple[str, ...]:
    """ProductItem's column fields, in order (``with_derived``: the computed ones too)."""
    names = []
    for name in ItemAdapter.get_field_names_from_class(ProductItem) or ():
        meta = ItemAdapter.get_field_meta_from_class(ProductItem, name)
        if meta.get("stored", True) and (with_derived or not meta.get("derived", False)):
            names.append(name)
    return tuple(names)


#: Product fields stored as columns, in the order of the catalogue record.
PRODUCT_FIELDS: tuple[str, ...] = _stored_fields(with_derived=True)
#: The catalogue record's fields (a ground-truth record's, see :mod:`matter_crawler.verify`).
RECORD_FIELDS: tuple[str, ...] = _stored_fields(with_derived=False)


@dataclass(slots=True)
class ListingSighting:
    """A product card seen on a listing page (sent with ``listing_sighted``, not an item)."""

    url: str
    manufacturer: str | None
    model: str | None
    certificate_id: str | None
    page: int
