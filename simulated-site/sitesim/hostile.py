"""Hostile pages (``--hostile``): the bad input a crawler must survive without losing anything.

A handful of products, chosen by position among the newest certifications so
they are on the first listing page, are served badly:

- ``malformed_html``: the detail page with unclosed and stray tags, unquoted
  attributes, upper-case tags and no ``</body>``. A correct crawler stores it,
  every field right.
- ``missing_fields``: the detail page without its Certificate ID and Vendor ID.
  A correct crawler dead-letters it.
- ``oversized``: the detail page padded to :data:`OVERSIZED_BYTES`. A correct
  crawler with a 1 MiB page limit dead-letters it.
- ``redirect_loop``: the detail URL redirects to itself with ``?moved=1``,
  which redirects back. A correct crawler dead-letters it.
- ``offsite_link``: the listing card links the product on another host. A
  correct crawler dead-letters it.

The ground truth leaves out the products a correct crawler cannot store;
``GET /__sim__/hostile`` lists every hostile product with its kind and the
expected outcome. Products whose texts look like script or SQL are part of
every catalogue (see catalogue.py) and are stored verbatim.
"""

from __future__ import annotations

import re
from typing import Any

HOSTILE_KINDS: dict[str, str] = {
    "malformed_html": "stored",
    "missing_fields": "dead_letter",
    "oversized": "dead_letter",
    "redirect_loop": "dead_letter",
    "offsite_link": "dead_letter",
}
OFFSITE_BASE = "http://offsite.invalid"
OVERSIZED_BYTES = 2 * 1024 * 1024
# Positions counted from the newest product: page 1, clear of the showcase products.
_POSITIONS = (6, 7, 8, 9, 10)

_FIELD_ITEM = re.compile(
    rb"<li class=\"item\"><span class=\"label\">(?:certificate id|vendor id):?</span>.*?</li>"
    rb"|<tr><td>(?:certificate id|vendor id):?</td>.*?</tr>",
    re.IGNORECASE | re.DOTALL,
)


def choose(slugs_newest_first: list[str]) -> dict[str, str]:
    """Which product (slug) gets which hostile treatment."""
    chosen = {}
    for kind, position in zip(HOSTILE_KINDS, _POSITIONS, strict=True):
        if position < len(slugs_newest_first):
            chosen[slugs_newest_first[position]] = kind
    return chosen


def malformed(page: bytes) -> bytes:
    """Markup a browser (and lxml) still reads, but no validator would pass."""
    page = page.replace(b"</li>", b"").replace(b"</p>", b"")
    page = page.replace(b'class="item"', b"class=item").replace(b"<li ", b"<LI ")
    page = page.replace(
        b'<div class="entry-header">', b'</span></div><div class="entry-header">', 1
    )
    return page.replace(b"</body>", b"")


def without_required_fields(page: bytes) -> bytes:
    return _FIELD_ITEM.sub(b"", page)


def oversized(page: bytes) -> bytes:
    padding = b"<!-- " + b"x" * OVERSIZED_BYTES + b" -->"
    return page.replace(b"</body>", padding + b"</body>", 1)


def describe(hostile: dict[str, str]) -> list[dict[str, Any]]:
    """The ``/__sim__/hostile`` account: each product's path, kind and expected outcome."""
    return [
        {"url": f"/csa_product/{slug}/", "kind": kind, "expect": HOSTILE_KINDS[kind]}
        for slug, kind in hostile.items()
    ]
