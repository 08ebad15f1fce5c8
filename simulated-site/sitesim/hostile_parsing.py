"""Hostile pages for the parsers (``--hostile-parsing``): input that broke or froze a crawl.

A second group beside :mod:`.hostile` (``--hostile``), switched on on its own so the
first group's account stays as it is. Products are chosen by position among the
newest certifications, on listing page 2 (positions 12-20), clear of the showcase
products and of ``--hostile``'s positions, so both groups can be on at once:

- ``script_markers``: the product page's head holds one inline script of
  :data:`SCRIPT_MARKERS_BYTES` that names the product-page marker
  (``entry-product-details``) every 24 bytes, the shape that made a backwards
  search from every occurrence quadratic. A correct crawler stores it, quickly.
- ``deep_nesting``: the page's content sits inside :data:`NESTING_DEPTH` nested
  ``div`` elements, past libxml2's limit of 256. A correct crawler dead-letters it,
  saying the markup is nested too deep (not "field missing").
- ``unknown_charset``: the page is served as ``charset=cp858`` (its meta says so too),
  a codec Python knows and libxml2 does not; characters cp858 lacks are character
  references. A correct crawler stores it, every field right.
- ``malformed_link``: the card links ``http://[x/csa_product/<slug>/``, which no URL
  parser reads. A correct crawler dead-letters that card (keyed by listing page 2's
  URL and ``#card-N``) and reads the rest of the page.
- ``bad_post_id``: the card's ``post-<id>`` class holds thousands of digits. A correct
  crawler dead-letters that card (keyed by the product URL) and reads the rest.
- ``over_long_values``: the product page shows a certificate id of
  :data:`LONG_CERTIFICATE_CHARS` characters that still matches ``CSA[0-9A-Z]+-NN`` and
  a description of :data:`LONG_DESCRIPTION_CHARS`. A correct crawler dead-letters it.
- ``many_attributes``: the product page's ``<main>`` element carries
  :data:`ATTRIBUTE_COUNT` attributes, some with ``>`` and ``<`` in their quoted values;
  libxml2 checks each attribute against the earlier ones, which takes minutes. A
  correct crawler dead-letters it at once, saying the element has too many attributes.
- ``control_chars``: the model name (card and page, and every text built from it)
  carries ESC sequences, BEL, a C1 CSI and a bidi override. A correct crawler stores it
  without the C0/C1 controls (a browser does not show them) and keeps the override;
  the truth says exactly that.
- ``url_variants``: the card links the product without its trailing slash, with a
  query and a fragment; listing page 1 carries one extra card linking it with the
  ``https`` scheme and a query. A correct crawler stores one row, at the canonical URL.
- ``bad_retry_after``: the product page answers ``429`` with ``Retry-After: ²``
  (the byte 0xB2) the first :data:`BAD_RETRY_AFTER_ANSWERS` times, then the page. A
  correct crawler ignores the header, backs off and stores it.

And one page-level kind, ``bad_page_number``: listing page 1's pagination holds a
link labelled ``²`` to a page number of thousands of digits. A correct crawler
ignores both and reads the page.

``GET /__sim__/hostile`` lists every one with its kind and expected outcome
(``stored``, ``dead_letter``, or ``ignored`` for the page-level kind); card kinds also
give ``listing_page`` and ``card`` (1-based position). The ground truth leaves out the
products a correct crawler cannot store and shows the others as a browser shows them.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

KINDS: dict[str, str] = {
    "script_markers": "stored",
    "deep_nesting": "dead_letter",
    "unknown_charset": "stored",
    "malformed_link": "dead_letter",
    "bad_post_id": "dead_letter",
    "over_long_values": "dead_letter",
    "many_attributes": "dead_letter",
    "control_chars": "stored",
    "url_variants": "stored",
    "bad_retry_after": "stored",
}
#: Positions counted from the newest product: listing page 2.
POSITIONS = (12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
PAGE_SIZE = 12
SCRIPT_MARKERS_BYTES = 4 * 1024 * 1024
NESTING_DEPTH = 300
CHARSET = "cp858"
LONG_CERTIFICATE_CHARS = 306
LONG_DESCRIPTION_CHARS = 20_000
POST_ID_DIGITS = 5000
BAD_RETRY_AFTER_ANSWERS = 2
ATTRIBUTE_COUNT = 100_000
#: What the control_chars product's model gets after its name.
CONTROL_SUFFIX = " \x1b[31mRed\x1b[0m\x07 \u202eevil\u202c \x9b2J\x1b]0;title\x07"

# C0 (but whitespace), DEL and C1: what a browser does not display
_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_SPACES = re.compile(r"\s+")


def choose(slugs_newest_first: list[str]) -> dict[str, str]:
    """Which product (slug) gets which treatment."""
    return {
        slugs_newest_first[position]: kind
        for kind, position in zip(KINDS, POSITIONS, strict=True)
        if position < len(slugs_newest_first)
    }


def card_position(kind: str) -> tuple[int, int]:
    """(listing page, 1-based position on it) of a kind's card."""
    position = POSITIONS[list(KINDS).index(kind)]
    return position // PAGE_SIZE + 1, position % PAGE_SIZE + 1


def describe(chosen: dict[str, str]) -> list[dict[str, Any]]:
    """The ``/__sim__/hostile`` entries of this group."""
    entries: list[dict[str, Any]] = []
    for slug, kind in chosen.items():
        entry: dict[str, Any] = {
            "url": f"/csa_product/{slug}/",
            "kind": kind,
            "expect": KINDS[kind],
        }
        if kind in ("malformed_link", "bad_post_id", "url_variants"):
            entry["listing_page"], entry["card"] = card_position(kind)
        entries.append(entry)
    if chosen:
        entries.append(
            {"url": "/csa-iot_products/", "kind": "bad_page_number", "expect": "ignored"}
        )
    return entries


# --- the listing ------------------------------------------------------------


def card_link(kind: str | None, base: str, path: str, post_class: str) -> tuple[str, str]:
    """A card's (escaped href, article's post class) for a product of this group."""
    if kind == "malformed_link":
        return escape(f"http://[x{path}"), post_class
    if kind == "bad_post_id":
        return escape(base + path), "post-" + "9" * POST_ID_DIGITS
    if kind == "url_variants":
        return escape(f"{base}{path.rstrip('/')}?utm_source=hostile&ref=card#specs"), post_class
    return escape(base + path), post_class


def extra_card_href(base: str, path: str) -> str:
    """The extra page-1 card's link to the url_variants product: the other scheme, a query."""
    return escape(f"https://{base.split('://', 1)[1]}{path}?ref=extra")


def bad_page_numbers(base: str) -> str:
    """Pagination links on page 1 whose numbers are not plain numbers."""
    huge = "9" * POST_ID_DIGITS
    return (
        '\n<nav class="navigation pagination hostile"><div class="nav-links">'
        f'<a class="page-numbers" href="{base}/csa-iot_products/page/{huge}/">&#178;</a>'
        "</div></nav>"
    )


# --- the product page ---------------------------------------------------------


def detail(kind: str | None, page: bytes, certificate_id: str) -> tuple[bytes, str | None]:
    """The product page as this kind serves it, and its charset if not UTF-8."""
    if kind == "script_markers":
        filler = b'"entry-product-details",' * (SCRIPT_MARKERS_BYTES // 24)
        script = b'<script id="hostile-cache">var cache = [' + filler + b"];</script>\n"
        return page.replace(b"<head>\n", b"<head>\n" + script, 1), None
    if kind == "deep_nesting":
        opening = b'<main id="main" class="site-main">'
        page = page.replace(opening, opening + b"<div>" * NESTING_DEPTH, 1)
        return page.replace(b"</main>", b"</div>" * NESTING_DEPTH + b"</main>", 1), None
    if kind == "many_attributes":
        attributes = " ".join(
            f'data-a{n}="a > b < c"' if n % 100 == 0 else f"data-a{n}"
            for n in range(ATTRIBUTE_COUNT)
        )
        opening = b'<main id="main" class="site-main"'
        return page.replace(opening, opening + b" " + attributes.encode(), 1), None
    if kind == "unknown_charset":
        text = page.decode("utf-8").replace(
            '<meta charset="UTF-8" />', f'<meta charset="{CHARSET}" />'
        )
        return text.encode(CHARSET, "xmlcharrefreplace"), CHARSET
    if kind == "over_long_values":
        long_id = "CSA" + "7" * (LONG_CERTIFICATE_CHARS - 6) + "-24"
        page = page.replace(certificate_id.encode(), long_id.encode())
        description = b'<p class="entry-description">' + b"Lorem ipsum " * (
            LONG_DESCRIPTION_CHARS // 12
        )
        return page.replace(b'<p class="entry-description">', description, 1), None
    return page, None


def retry_after_answer(kind: str | None, count: int) -> bool:
    """Whether this request for the product page gets the 429 with a bad Retry-After."""
    return kind == "bad_retry_after" and count < BAD_RETRY_AFTER_ANSWERS


#: The bad header: latin-1 "²", which str.isdigit() accepts and float() does not.
BAD_RETRY_AFTER = b"\xb2"


# --- the ground truth -----------------------------------------------------------


def visible(value: Any) -> Any:
    """Text as a browser shows it: C0/C1 controls gone, whitespace collapsed."""
    if isinstance(value, str):
        return _SPACES.sub(" ", _INVISIBLE.sub("", value)).strip() or None
    if isinstance(value, list):
        return [visible(item) for item in value]
    return value


def truth_record(kind: str | None, record: dict[str, Any]) -> dict[str, Any]:
    """A stored product's truth record as this kind shows it."""
    if kind == "control_chars":
        return {name: visible(value) for name, value in record.items()}
    return record
