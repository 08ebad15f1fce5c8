"""Parse a catalogue listing page: its product cards and its pagination.

Pure functions over HTML. Every markup variant met on csa-iot.org is accepted:
the ``div.post-feed`` and the ``.wp-block-crown-blocks-product-index`` card
containers, the certificate id in ``p.entry-certificate-id`` or
``span.entry-cert-id`` (or absent), WordPress ``.page-numbers`` pagination and
the older ``div.pagination-wrapper`` one, ``/page/N/`` and ``&paged=N`` links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

from ._html import clean_text, css, first, node_text, parse_document

_post_feed = css("div.post-feed")
_block_index = css(".wp-block-crown-blocks-product-index")
_cards_in_container = css("article.product")
_card_link = css("a[href*='/csa_product/']")
_card_company = css("p.entry-company")
_card_title = css(".entry-title")
_card_certificate = css("p.entry-certificate-id, span.entry-cert-id, .entry-certificate-id")
_canonical = css("link[rel=canonical]")
_page_number_links = css("a.page-numbers")
_page_number_current = css("span.page-numbers.current, a.page-numbers.current")
_next_link = css("a.next.page-numbers")
_legacy_pagination_links = css("div.pagination-wrapper nav div a")

_page_in_path = re.compile(r"/page/(\d+)/?")
_page_in_query = re.compile(r"[?&](?:amp;)?paged=(\d+)")
_post_id_class = re.compile(r"\bpost-(\d+)\b")
_certificate_prefix = re.compile(r"^\s*certificate\s*id\s*:?\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ListingCard:
    """One product card as the listing shows it."""

    url: str
    manufacturer: str | None
    model: str | None
    certificate_id: str | None
    post_id: int | None


@dataclass(frozen=True, slots=True)
class ListingPage:
    """What a listing page tells: its cards and where it sits in the pagination."""

    cards: tuple[ListingCard, ...]
    current_page: int | None
    last_page: int | None
    has_next: bool
    canonical_url: str | None
    layout: str  # "post-feed", "block-index" or "none" (no known card container)


def page_number_from_url(url: str) -> int | None:
    """The page a listing URL points at: ``/page/N/`` or ``paged=N``; page 1 has neither."""
    if match := _page_in_path.search(url):
        return int(match.group(1))
    if match := _page_in_query.search(url):
        return int(match.group(1))
    return None


def parse_listing(source: str | bytes, base_url: str, encoding: str | None = None) -> ListingPage:
    """Parse a listing page. ``base_url`` resolves relative links."""
    doc = parse_document(source, encoding)
    containers = _post_feed(doc)
    layout = "post-feed"
    if not containers:
        containers = _block_index(doc)
        layout = "block-index" if containers else "none"
    cards: list[ListingCard] = []
    seen: set[str] = set()
    for container in containers:
        for article in _cards_in_container(container):
            card = _parse_card(article, base_url)
            if card is not None and card.url not in seen:
                seen.add(card.url)
                cards.append(card)

    current, last, has_next = _parse_pagination(doc)
    canonical = first(_canonical(doc))
    canonical_url = canonical.get("href") if canonical is not None else None
    return ListingPage(
        cards=tuple(cards),
        current_page=current,
        last_page=last,
        has_next=has_next,
        canonical_url=urljoin(base_url, canonical_url) if canonical_url else None,
        layout=layout,
    )


def _parse_card(article, base_url: str) -> ListingCard | None:
    link = first(_card_link(article))
    if link is None:
        return None
    certificate = node_text(first(_card_certificate(article)))
    if certificate is not None:
        certificate = clean_text(_certificate_prefix.sub("", certificate))
    post_id = _post_id_class.search(article.get("class", ""))
    return ListingCard(
        url=urljoin(base_url, link.get("href", "").strip()),
        manufacturer=node_text(first(_card_company(article))),
        model=node_text(first(_card_title(article))),
        certificate_id=certificate,
        post_id=int(post_id.group(1)) if post_id else None,
    )


def _parse_pagination(doc) -> tuple[int | None, int | None, bool]:
    """Return (current page, highest page number shown, whether a next link exists)."""
    numbers: set[int] = set()
    current: int | None = None
    has_next = bool(_next_link(doc))

    for link in _page_number_links(doc):
        numbers.update(_numbers_of_link(link))
    for span in _page_number_current(doc):
        text = node_text(span)
        if text and text.isdigit():
            current = int(text)
            numbers.add(current)

    for link in _legacy_pagination_links(doc):
        text = (node_text(link) or "").lower()
        if "current" in link.get("class", "").split() and text.isdigit():
            current = int(text)
        if text.startswith("next"):
            has_next = True
            continue
        if text.startswith("prev"):
            continue
        numbers.update(_numbers_of_link(link))

    return current, (max(numbers) if numbers else current), has_next


def _numbers_of_link(link) -> set[int]:
    """Page numbers a pagination link names, from its text and from its href."""
    found: set[int] = set()
    text = node_text(link)
    if text and text.isdigit():
        found.add(int(text))
    href = link.get("href")
    classes = link.get("class", "").split()
    if href and "next" not in classes and "prev" not in classes:
        number = page_number_from_url(href)
        if number is not None:
            found.add(number)
    return found
