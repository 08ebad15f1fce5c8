"""What the parsers look for, and what a page that failed them did not have.

When a site changes its markup, every page fails the same way: a container,
a class or a label the parsers rely on is no longer there. These pure
functions name it, from what the parsers returned (a :class:`ListingPage` or
:class:`DetailPage`), from the validation pipeline's reasons, or from the content
check's reason, so a crawl stopped for markup drift can say which selectors and
labels stopped matching (:mod:`matter_crawler.extensions.drift`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .detail import DetailPage
from .listing import ListingPage

CARD_CONTAINER = "card container (div.post-feed or .wp-block-crown-blocks-product-index)"
CARDS = "product cards (article.product with a[href*='/csa_product/'])"
FIELD_LIST = (
    "field list (div.entry-product-details li.item span.label/span.value "
    "or table.product-certificates-table tr)"
)
#: Where the parsers find each field: a selector, or the label of the field list.
FIELD_SOURCES: dict[str, str] = {
    "model": "h1.entry-title",
    "manufacturer": "p.entry-company",
    "device_type": "h6.entry-category",
    "certificate_id": "label 'Certificate ID'",
    "certification_date": "label 'Certified Date'",
    "vid": "label 'Vendor ID'",
    "pid": "label 'Product ID'",
    "firmware_version": "label 'Firmware Version'",
    "hardware_version": "label 'Hardware Version'",
    "software_version": "label 'Software Version'",
    "specification_version": "label 'Specification Version'",
    "transport_interface": "label 'Transport Interface'",
    "primary_device_type_id": "label 'Primary Device Type ID'",
}
#: The content check's reason for a page without the catalogue's markup
#: (matter_crawler.parsing.content): "no list markup on the page", "no detail markup...".
_CONTENT_REASON = re.compile(r"^no (list|detail) markup\b")
_MISSING = re.compile(r"^(\w+) is missing$")


def listing_not_found(page: ListingPage) -> list[str]:
    """What a listing page without cards lacks: the container, or the cards in it."""
    if page.layout == "none":
        return [CARD_CONTAINER]
    return [] if page.cards else [CARDS]


def detail_not_found(page: DetailPage) -> list[str]:
    """What a product page lacks of the markup every product page has."""
    missing = [] if page.fields else [FIELD_LIST]
    if page.model is None:
        missing.append(FIELD_SOURCES["model"])
    if page.manufacturer is None:
        missing.append(FIELD_SOURCES["manufacturer"])
    return missing


def invalid_item_not_found(reasons: Iterable[str], unknown_labels: Iterable[str]) -> list[str]:
    """What the validation reasons of an item say its page lacked.

    ``"certificate_id is missing"`` becomes ``"label 'Certificate ID'"``; labels the
    parser did not know (the item's ``extra_fields``) are named too, since after a
    redesign they are usually the old labels under new names.
    """
    found: list[str] = []
    for reason in reasons:
        match = _MISSING.match(reason)
        if match:
            found.append(FIELD_SOURCES.get(match.group(1), match.group(1)))
        else:
            found.append(reason)
    found += [f"unknown label {label!r}" for label in unknown_labels]
    return found


def content_not_found(stage: str | None, reason: str) -> list[str] | None:
    """What a page the content check refused lacked, or None if the refusal was not
    about markup (a truncated body, an empty shell that needs JavaScript...)."""
    match = _CONTENT_REASON.match(reason)
    if match is None:
        return None
    return [CARD_CONTAINER if (stage or match.group(1)) == "list" else FIELD_LIST]
