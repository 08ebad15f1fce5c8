"""Markup drift (``--drift``): the site's theme changes while a crawler reads it.

A real catalogue can be redesigned at any moment: the class names a crawler
looks for disappear, and every page then fails to parse or parses to empty
fields. These functions turn a rendered page into its redesigned form, the way a
new theme would render the same content:

- ``list``: the product cards lose the classes of the old theme
  (``article.product`` becomes ``article.catalog-card``, ``p.entry-company``,
  ``.entry-title`` and the certificate line get new names). The card container
  stays, so the page still looks like a listing, but no card is found on it.
- ``detail``: the product page's field list is renamed
  (``div.entry-product-details`` -> ``div.product-specs``, ``li.item`` ->
  ``li.spec``, ``table.product-certificates-table`` -> ``table.product-specs-table``);
  the title and company stay.
- ``labels``: the field labels are reworded (``Certificate ID`` ->
  ``Certification Number``, ``Vendor ID`` -> ``VID``...) and ``p.entry-company``
  becomes ``p.product-vendor``: the page parses, but to a product without its
  certificate id, vendor id or manufacturer.

The ground truth does not change: drift changes how pages look, not what the
catalogue holds.
"""

from __future__ import annotations

import re

KINDS = ("none", "list", "detail", "labels")

_CARD = re.compile(rb'<article class="post-(\d+) product type-product[^"]*">')
_LIST_RENAMES = (
    (b'<p class="entry-company notranslate">', b'<p class="card-vendor">'),
    (b'<h3 class="entry-title">', b'<h3 class="card-name">'),
    (b'<p class="entry-certificate-id">', b'<p class="card-certificate">'),
    (b'<span class="entry-cert-id">', b'<span class="card-certificate">'),
)
_DETAIL_RENAMES = (
    (b'<div class="entry-product-details">', b'<div class="product-specs">'),
    (b'<li class="item">', b'<li class="spec">'),
    (b'<table class="product-certificates-table">', b'<table class="product-specs-table">'),
)
_LABEL_WORDS = (
    (rb"certificate id", b"Certification Number"),
    (rb"certified date", b"Date of Certification"),
    (rb"vendor id", b"VID"),
    (rb"product id", b"PID"),
)
_LABEL_CELL = re.compile(rb'(<span class="label">|<tr><td>)([^<]*)(</span>|</td>)')
_COMPANY = (b'<p class="entry-company notranslate">', b'<p class="product-vendor">')


def listing(page: bytes, kind: str) -> bytes:
    """A listing page as the redesigned site renders it."""
    if kind != "list":
        return page
    page = _CARD.sub(rb'<article class="catalog-card card-\1">', page)
    for old, new in _LIST_RENAMES:
        page = page.replace(old, new)
    return page


def detail(page: bytes, kind: str) -> bytes:
    """A product page as the redesigned site renders it."""
    if kind == "detail":
        for old, new in _DETAIL_RENAMES:
            page = page.replace(old, new)
    elif kind == "labels":
        page = _LABEL_CELL.sub(_reword, page).replace(*_COMPANY)
    return page


def _reword(match: re.Match[bytes]) -> bytes:
    label = match.group(2)
    plain = label.rstrip(b":").strip().lower()
    for old, new in _LABEL_WORDS:
        if re.fullmatch(old, plain):
            label = new
            break
    return match.group(1) + label + match.group(3)
