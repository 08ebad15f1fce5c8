"""Which markup variant each page uses: seeded decisions shared by render and truth.

The real site serves several generations of its theme at once. Each variant is
decided per page from a hash of (seed, page identity, variant), never from the
request order, so a page always looks the same for a given seed and rate. The
ground truth needs one of these decisions too (the unknown extra label a page
shows), which is why it lives here rather than inside the renderer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .seeding import unit

LABEL_STYLES = ("upper-colon", "lower", "colon")


@dataclass(frozen=True, slots=True)
class ListingVariants:
    """Markup choices of one listing page."""

    cert_span: bool  # certificate id in span.entry-cert-id, not p.entry-certificate-id
    block_container: bool  # .wp-block-crown-blocks-product-index instead of div.post-feed
    old_pagination: bool  # div.pagination-wrapper > nav > div > a > span


@dataclass(frozen=True, slots=True)
class DetailVariants:
    """Markup choices of one detail page."""

    legacy_table: bool  # table.product-certificates-table instead of li.item
    label_style: str | None  # one of LABEL_STYLES, None = "Certificate ID"
    decimal_pid: bool  # Product ID as "3330" instead of "0x0D02"
    linked_values: bool  # Certificate ID and Family ID values wrapped in <a href>
    extra_label: bool  # one label the crawler does not know
    empty_values: bool  # optional fields without value shown empty, not omitted


def listing_variants(seed: int, page: int, rate: float) -> ListingVariants:
    """The variants of listing page ``page`` (each on about ``rate`` of pages)."""
    return ListingVariants(
        cert_span=unit(seed, "list-cert-span", page) < rate,
        block_container=unit(seed, "list-block", page) < rate,
        old_pagination=unit(seed, "list-old-pagination", page) < rate,
    )


def card_without_certificate(seed: int, slug: str, rate: float) -> bool:
    """Whether this product's card omits its certificate line (any page)."""
    return unit(seed, "card-no-cert", slug) < rate / 2


def shows_extra_label(seed: int, slug: str, rate: float) -> bool:
    """Whether the detail page of ``slug`` shows one label the crawler does not know.

    Separate from :func:`detail_variants` because the ground truth needs only
    this decision, for every product.
    """
    return unit(seed, "detail-extra-label", slug) < rate


def detail_variants(seed: int, slug: str, rate: float) -> DetailVariants:
    """The variants of the detail page of ``slug`` (each on about ``rate`` of pages)."""
    style = None
    if unit(seed, "detail-label-style", slug) < rate:
        choice = unit(seed, "detail-label-style-which", slug)
        style = LABEL_STYLES[int(choice * len(LABEL_STYLES))]
    return DetailVariants(
        legacy_table=unit(seed, "detail-table", slug) < rate,
        label_style=style,
        decimal_pid=unit(seed, "detail-decimal-pid", slug) < rate,
        linked_values=unit(seed, "detail-linked", slug) < rate,
        extra_label=shows_extra_label(seed, slug, rate),
        empty_values=unit(seed, "detail-empty-values", slug) < 0.5,
    )
