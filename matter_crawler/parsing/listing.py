"""Parse a catalogue listing page: its product cards and its pagination.

Pure functions over HTML. Every markup variant met on csa-iot.org is accepted:
the ``div.post-feed`` and the ``.wp-block-crown-blocks-product-index`` card
containers, the certificate id in ``p.entry-certificate-id`` or
``span.entry-cert-id`` (or absent), WordPress ``.page-numbers`` pagination and
the older ``div.pagination-wrapper`` one, ``/page/N/`` and ``&paged=N`` links.

One bad card costs that card, not its page: a card whose link cannot be read
(``http://[x/...``, a port that is not a number) or whose post id is not a plain
number comes back in ``bad_cards`` with its position and the reason, and the other
cards are read as usual. A page number in the pagination that is not a plain
number (ASCII digits, at most :data:`MAX_PAGE_DIGITS` of them: not ``²``, ``٣`` or
thousands of digits) is left out and named in ``ignored_page_numbers``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

from ..safe_text import quoted
from ._html import clean_text, css, first, node_text, parse_document
from .urls import check_port

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

# \d (any script's digits) finds what looks like a number; _plain_number then decides
_page_in_path = re.compile(r"/page/(\d+)/?")
_page_in_query = re.compile(r"[?&](?:amp;)?paged=(\d+)")
_post_id_class = re.compile(r"\bpost-(\d+)\b")
#: A page number has at most this many digits (a listing of a billion pages is not real).
MAX_PAGE_DIGITS = 9
#: A WordPress post id fits in a 64-bit integer.
MAX_POST_ID_DIGITS = 18
_certificate_prefix = re.compile(r"^\s*certificate\s*id\s*:?\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ListingCard:
    """One product card as the listing shows it."""

    url: str
    manufacturer: str | None
    model: str | None
    certificate_id: str | None
    post_id: int | None
    position: int = 0  # 1-based among the page's cards (0: not from a page)


@dataclass(frozen=True, slots=True)
class BadCard:
    """A card that cannot be read: its 1-based position on the page, its link if it has a
    readable one, and why."""

    position: int
    url: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ListingPage:
    """What a listing page tells: its cards and where it sits in the pagination."""

    cards: tuple[ListingCard, ...]
    current_page: int | None
    last_page: int | None
    has_next: bool
    canonical_url: str | None
    layout: str  # "post-feed", "block-index" or "none" (no known card container)
    bad_cards: tuple[BadCard, ...] = ()
    ignored_page_numbers: tuple[str, ...] = ()  # as shown (quoted, cut), not plain numbers


def _plain_number(text: str, max_digits: int) -> int:
    """``int`` of ASCII digits, at most ``max_digits`` of them; ValueError otherwise."""
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        raise ValueError(f"{quoted(text)} is not a plain number")
    return int(text)


def _page_number(url: str) -> int | None:
    """The page number a URL names (None: none); ValueError if it names one that is not plain."""
    match = _page_in_path.search(url) or _page_in_query.search(url)
    return _plain_number(match.group(1), MAX_PAGE_DIGITS) if match else None


def page_number_from_url(url: str) -> int | None:
    """The page a listing URL points at: ``/page/N/`` or ``paged=N``; page 1 has neither.

    A number that is not plain (see the module docstring) counts as none.
    """
    try:
        return _page_number(url)
    except ValueError:
        return None


def parse_listing(source: str | bytes, base_url: str, encoding: str | None = None) -> ListingPage:
    """Parse a listing page. ``base_url`` resolves relative links.

    Raises :class:`~matter_crawler.parsing.PageParseError` for a page the HTML parser
    cannot read whole (see :func:`._html.parse_document`).
    """
    doc = parse_document(source, encoding)
    containers = _post_feed(doc)
    layout = "post-feed"
    if not containers:
        containers = _block_index(doc)
        layout = "block-index" if containers else "none"
    cards: list[ListingCard] = []
    bad_cards: list[BadCard] = []
    seen: set[str] = set()
    position = 0
    for container in containers:
        for article in _cards_in_container(container):
            position += 1
            card = _parse_card(article, base_url, position)
            if isinstance(card, BadCard):
                bad_cards.append(card)
            elif card is not None and card.url not in seen:
                seen.add(card.url)
                cards.append(card)

    ignored: list[str] = []
    current, last, has_next = _parse_pagination(doc, ignored)
    canonical = first(_canonical(doc))
    canonical_url = canonical.get("href") if canonical is not None else None
    return ListingPage(
        cards=tuple(cards),
        current_page=current,
        last_page=last,
        has_next=has_next,
        canonical_url=_joined(base_url, canonical_url),
        layout=layout,
        bad_cards=tuple(bad_cards),
        ignored_page_numbers=tuple(ignored),
    )


def _joined(base_url: str, href: str | None) -> str | None:
    """An absolute URL, or None when there is no href or it cannot be read."""
    if not href:
        return None
    try:
        return urljoin(base_url, href)
    except ValueError:
        return None


def _parse_card(article, base_url: str, position: int) -> ListingCard | BadCard | None:
    link = first(_card_link(article))
    if link is None:
        return None
    href = link.get("href", "").strip()
    try:
        url = urljoin(base_url, href)
        check_port(url)
    except ValueError as error:
        return BadCard(position, None, f"malformed link {quoted(href)} ({error})")
    post_id: int | None = None
    if match := _post_id_class.search(article.get("class", "")):
        try:
            post_id = _plain_number(match.group(1), MAX_POST_ID_DIGITS)
        except ValueError as error:
            return BadCard(position, url, f"post id {error}")
    certificate = node_text(first(_card_certificate(article)))
    if certificate is not None:
        certificate = clean_text(_certificate_prefix.sub("", certificate))
    return ListingCard(
        url=url,
        manufacturer=node_text(first(_card_company(article))),
        model=node_text(first(_card_title(article))),
        certificate_id=certificate,
        post_id=post_id,
        position=position,
    )


def _parse_pagination(doc, ignored: list[str]) -> tuple[int | None, int | None, bool]:
    """Return (current page, highest page number shown, whether a next link exists).

    Numbers that are not plain are left out and appended to ``ignored``.
    """
    numbers: set[int] = set()
    current: int | None = None
    has_next = bool(_next_link(doc))

    for link in _page_number_links(doc):
        numbers.update(_numbers_of_link(link, ignored))
    for span in _page_number_current(doc):
        number = _number_of_text(node_text(span), ignored)
        if number is not None:
            current = number
            numbers.add(current)

    for link in _legacy_pagination_links(doc):
        text = (node_text(link) or "").lower()
        if text.startswith("next"):
            has_next = True
            continue
        if text.startswith("prev"):
            continue
        found = _numbers_of_link(link, ignored)
        number = _number_of_text(text, [])
        if "current" in link.get("class", "").split() and number is not None:
            current = number
        numbers.update(found)

    return current, (max(numbers) if numbers else current), has_next


def _number_of_text(text: str | None, ignored: list[str]) -> int | None:
    """The page number a pagination label shows; None for words ("Next", "...")."""
    if not text or not (text.isdigit() or text.isnumeric()):
        return None
    try:
        return _plain_number(text, MAX_PAGE_DIGITS)
    except ValueError:
        ignored.append(quoted(text))
        return None


def _numbers_of_link(link, ignored: list[str]) -> set[int]:
    """Page numbers a pagination link names, from its text and from its href."""
    found: set[int] = set()
    number = _number_of_text(node_text(link), ignored)
    if number is not None:
        found.add(number)
    href = link.get("href")
    classes = link.get("class", "").split()
    if href and "next" not in classes and "prev" not in classes:
        try:
            number = _page_number(href)
        except ValueError:
            ignored.append(quoted(href))
            number = None
        if number is not None:
            found.add(number)
    return found
