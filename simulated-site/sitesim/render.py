"""HTML of the simulated site: listing pages, detail pages, 404 and error pages.

Markup follows docs/site-markup.md (WordPress theme of csa-iot.org), with the
seeded variants of :mod:`.variants`, and realistic WordPress noise around it
(:mod:`.chrome`) so pages weigh 20-40 KB like the real ones. Links are absolute
and point at the site's own base URL. Everything is rendered on demand from the
catalogue: the chrome is built once per base URL, the content per request
(a few tens of microseconds), which keeps startup instant at 100,000 products.
"""

from __future__ import annotations

import hashlib
from html import escape

from . import hostile, hostile_parsing
from .catalogue import Catalogue
from .chrome import Chrome
from .products import Entry, Product
from .variants import (
    DetailVariants,
    card_without_certificate,
    detail_variants,
    listing_variants,
)

LISTING_QUERY = (
    "p_keywords=&p_type%5B0%5D=14&p_program_type%5B0%5D=1049"
    "&p_certificate=&p_family=&p_firmware_ver="
)
LISTING_PATH = "/csa-iot_products/"
SITE_NAME = "CSA-IOT"
ROBOTS_TXT = b"User-agent: *\nDisallow: /wp-admin/\nAllow: /wp-admin/admin-ajax.php\n"

_FEED_ID = hashlib.md5(b"csa-iot_products").hexdigest()  # an id, not security


class Renderer:
    """Renders every page of the site for one base URL (``http://host:port``)."""

    def __init__(self, catalogue: Catalogue, base_url: str) -> None:
        self.catalogue = catalogue
        self.base = base_url
        self._chrome = Chrome(base_url)
        self._not_found = self._chrome.page(
            title=f"Page not found - {SITE_NAME}",
            canonical=None,
            head_extra="",
            body_class="error404",
            content=(
                '<section class="error-404 not-found"><header class="page-header">'
                '<h1 class="page-title">Oops! That page can&rsquo;t be found.</h1></header>'
                '<div class="page-content"><p>It looks like nothing was found at this '
                "location. Maybe try a search?</p></div></section>"
            ),
            js_only=False,
        )

    # --- URLs ---------------------------------------------------------------

    def listing_url(self, page: int) -> str:
        """Absolute URL of listing page ``page`` in its canonical form."""
        if page <= 1:
            return f"{self.base}{LISTING_PATH}?{LISTING_QUERY}"
        return f"{self.base}{LISTING_PATH}page/{page}/?{LISTING_QUERY}"

    # --- pages --------------------------------------------------------------

    def not_found(self) -> bytes:
        """The WordPress 404 page (full chrome, like the real site)."""
        return self._not_found

    def listing(
        self, page: int, variant_rate: float, js_only: bool, *, claimed_last_page: int = 0
    ) -> bytes:
        """Listing page ``page`` (1..page_count), 12 cards newest first.

        ``claimed_last_page`` (``--claim-last-page``): the pagination names that page
        as the last, whatever the catalogue holds (a hostile or broken pagination).
        """
        catalogue = self.catalogue
        total = catalogue.page_count()
        shown_total = claimed_last_page or total
        variants = listing_variants(catalogue.seed, page, variant_rate)
        cards = []
        for entry in catalogue.page(page):
            cards.append(self._card(entry, variants.cert_span, variant_rate))
        if page == 1:
            cards += self._hostile_parsing_cards(variants.cert_span, variant_rate)
        if variants.block_container:
            container = (
                '<div class="wp-block-crown-blocks-product-index product-index">'
                '<div class="product-index-items">\n' + "\n".join(cards) + "\n</div></div>"
            )
        else:
            container = (
                f'<div id="post-feed-block-{_FEED_ID}" class="post-feed item-count-12" '
                'data-item-count="12"><div class="inner">\n' + "\n".join(cards) + "\n</div></div>"
            )
        pagination = (
            self._old_pagination(page, shown_total)
            if variants.old_pagination
            else self._pagination(page, shown_total)
        )
        if page == 1 and catalogue.hostile_parsing:
            pagination += hostile_parsing.bad_page_numbers(self.base)
        content = (
            '<div class="page-header"><h1 class="page-title">Certified Products</h1>'
            f'<p class="results-count">Page {page} of {total}</p></div>\n'
            f"{self._search_form()}\n{container}\n{pagination}"
        )
        head_extra = ""
        if page > 1:
            head_extra += f'<link rel="prev" href="{escape(self.listing_url(page - 1))}" />\n'
        if page < total:
            head_extra += f'<link rel="next" href="{escape(self.listing_url(page + 1))}" />\n'
        title = "Certified Products" + (f" - Page {page} of {total}" if page > 1 else "")
        return self._chrome.page(
            title=f"{title} - {SITE_NAME}",
            canonical=self.listing_url(page),
            head_extra=head_extra,
            body_class="archive post-type-archive post-type-archive-product",
            content=content,
            js_only=js_only,
        )

    def detail(self, entry: Entry, variant_rate: float, js_only: bool) -> bytes:
        """The detail page of ``entry``."""
        catalogue = self.catalogue
        product = catalogue.product(entry)
        variants = detail_variants(catalogue.seed, entry.slug, variant_rate)
        base = self.base
        company = escape(product.manufacturer)
        details = self._details(product, variants)
        categories = "".join(f"<li>{escape(c)}</li>" for c in product.application_categories)
        description = (
            f'<p class="entry-description">{escape(product.description)}</p>'
            if product.description
            else ""
        )
        documents = ""
        if product.compliance_document:
            documents = (
                '<div class="entry-documents"><h3>Documents</h3><ul><li>'
                f'<a class="compliance-document" href="{base}{product.compliance_document}">'
                "Compliance Document (ZIP)</a></li></ul></div>\n"
            )
        more = "".join(
            f'<li><a href="{base}{other.path}">{escape(other.model)}</a></li>'
            for other in catalogue.more_by(entry)
        )
        more_by = (
            f'<div class="entry-more-by"><h3>More by {company}</h3><ul>{more}</ul></div>\n'
            if more
            else ""
        )
        content = (
            f'<article id="post-{product.wp_id}" class="post-{product.wp_id} csa_product '
            'type-csa_product status-publish hentry">\n'
            '<div class="entry-header">'
            f'<h6 class="entry-category">{escape(product.device_type)}</h6>'
            f'<h1 class="entry-title">{escape(product.model)}</h1>'
            f'<p class="entry-company notranslate">{company}</p></div>\n'
            f"{details}\n"
            f'<div class="entry-content">{description}</div>\n'
            '<div class="entry-application-categories"><h3>Application Categories</h3>'
            f"<ul>{categories}</ul></div>\n"
            f"{documents}{more_by}</article>"
        )
        return self._chrome.page(
            title=f"{escape(product.model)} - {SITE_NAME}",
            canonical=f"{base}{product.path}",
            head_extra="",
            body_class=f"csa_product-template-default single single-csa_product postid-"
            f"{product.wp_id}",
            content=content,
            js_only=js_only,
        )

    # --- pieces -------------------------------------------------------------

    def _hostile_parsing_cards(self, cert_span: bool, variant_rate: float) -> list[str]:
        """Page 1's extra card linking the url_variants product another way (hostile_parsing)."""
        for slug, kind in self.catalogue.hostile_parsing.items():
            entry = self.catalogue.entry(slug)
            if kind == "url_variants" and entry is not None:
                href = hostile_parsing.extra_card_href(self.base, entry.path)
                return [self._card(entry, cert_span, variant_rate, href_override=href)]
        return []

    def _card(
        self,
        entry: Entry,
        cert_span: bool,
        variant_rate: float,
        href_override: str | None = None,
    ) -> str:
        seed = self.catalogue.seed
        if card_without_certificate(seed, entry.slug, variant_rate):
            certificate = ""
        elif cert_span:
            certificate = f'<span class="entry-cert-id">{entry.certificate_id}</span>'
        else:
            certificate = (
                f'<p class="entry-certificate-id">Certificate ID: {entry.certificate_id}</p>'
            )
        company = escape(self.catalogue.vendors[entry.vendor].name)
        offsite = self.catalogue.hostile.get(entry.slug) == "offsite_link"
        base = hostile.OFFSITE_BASE if offsite else self.base
        href, post = f"{base}{entry.path}", f"post-{entry.wp_id}"
        if kind := self.catalogue.hostile_parsing.get(entry.slug):  # hostile_parsing.py
            href, post = hostile_parsing.card_link(kind, base, entry.path, post)
        if href_override is not None:
            href = href_override
        return (
            f'<article class="{post} product type-product status-publish hentry">'
            f'<a href="{href}"><div class="inner"><div class="contents">'
            f'<p class="entry-company notranslate">{company}</p>'
            f'<h3 class="entry-title">{escape(entry.model)}</h3>'
            f"{certificate}</div></div></a></article>"
        )

    def _details(self, product: Product, variants: DetailVariants) -> str:
        base = self.base
        day = product.certified
        certificate = escape(product.certificate_id)
        if variants.linked_values and product.compliance_document:
            certificate = f'<a href="{base}{product.compliance_document}">{certificate}</a>'
        family = escape(product.family_id) if product.family_id else None
        if variants.linked_values and product.family_id:
            family = f'<a href="{base}/csa_family/{product.family_id.lower()}/">{family}</a>'
        tis = (
            None if product.tis_trp_tested is None else ("Yes" if product.tis_trp_tested else "No")
        )
        rows: list[tuple[str, str | None]] = [
            ("Certificate ID", certificate),
            ("Certified Date", f"{day.month:02d}/{day.day:02d}/{day.year}"),
            ("Vendor ID", f"0x{product.vid:04X}"),
            ("Product ID", str(product.pid) if variants.decimal_pid else f"0x{product.pid:04X}"),
            ("Firmware Version", _text(product.firmware_version)),
            ("Hardware Version", _text(product.hardware_version)),
            ("Software Version", _text(product.software_version)),
            ("Family ID", family),
            ("Family SKU", _text(product.family_sku)),
            ("Family Variant SKU", _text(product.family_variant_sku)),
            ("TIS/TRP Tested", tis),
            ("Specification Version", product.specification_version),
            ("Transport Interface", ", ".join(product.transports) or None),
            ("Primary Device Type ID", f"0x{product.device_type_id:04X}"),
        ]
        style = variants.label_style
        shown = [
            (_label(label, style), value)
            for label, value in rows
            if value is not None or variants.empty_values
        ]
        if variants.extra_label:
            # Shown exactly as the truth's extra_fields key (no case or colon variant).
            label, value = product.extra_field
            shown.append((escape(label), escape(value)))
        if variants.legacy_table:
            cells = "\n".join(
                f"<tr><td>{label}</td><td>{value or ''}</td></tr>" for label, value in shown
            )
            return (
                '<div class="product-certificates"><table class="product-certificates-table">'
                f"<tbody>\n{cells}\n</tbody></table></div>"
            )
        items = "\n".join(
            f'<li class="item"><span class="label">{label}</span>'
            f'<span class="value">{value or ""}</span></li>'
            for label, value in shown
        )
        return (
            '<div class="entry-product-details"><div class="details"><ul>\n'
            f"{items}\n</ul></div></div>"
        )

    def _pagination(self, page: int, total: int) -> str:
        parts = ['<nav class="navigation pagination" aria-label="Products"><div class="nav-links">']
        if page > 1:
            parts.append(
                f'<a class="prev page-numbers" href="{escape(self.listing_url(page - 1))}">'
                "&laquo; Previous</a>"
            )
        previous = 0
        for number in _window(page, total):
            if number > previous + 1:
                parts.append('<span class="page-numbers dots">&hellip;</span>')
            if number == page:
                parts.append(
                    f'<span aria-current="page" class="page-numbers current">{number}</span>'
                )
            else:
                href = escape(self.listing_url(number))
                parts.append(f'<a class="page-numbers" href="{href}">{number}</a>')
            previous = number
        if page < total:
            parts.append(
                f'<a class="next page-numbers" href="{escape(self.listing_url(page + 1))}">'
                "Next &raquo;</a>"
            )
        parts.append("</div></nav>")
        return "\n".join(parts)

    def _old_pagination(self, page: int, total: int) -> str:
        parts = [
            '<div class="pagination-wrapper"><nav aria-label="Pagination">'
            '<div class="pagination-links">'
        ]
        if page > 1:
            parts.append(
                f'<a class="prev" href="{escape(self.listing_url(page - 1))}">'
                "<span>&laquo; Prev</span></a>"
            )
        previous = 0
        for number in _window(page, total):
            if number > previous + 1:
                parts.append('<span class="dots">&hellip;</span>')
            current = ' class="current" aria-current="page"' if number == page else ""
            parts.append(
                f'<a{current} href="{escape(self.listing_url(number))}"><span>{number}</span></a>'
            )
            previous = number
        if page < total:
            parts.append(
                f'<a class="next" href="{escape(self.listing_url(page + 1))}">'
                "<span>Next &raquo;</span></a>"
            )
        parts.append("</div></nav></div>")
        return "\n".join(parts)

    def _search_form(self) -> str:
        options = "".join(
            f'<option value="{654 + i}">{escape(name)}</option>'
            for i, name in enumerate(_DEVICE_TYPE_NAMES)
        )
        specs = "".join(
            f'<option value="{v}">{v}</option>' for v in ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
        )
        return (
            f'<form class="product-search" method="get" action="{self.base}{LISTING_PATH}">'
            '<input type="hidden" name="p_type[0]" value="14" />'
            '<input type="hidden" name="p_program_type[0]" value="1049" />'
            '<label>Keywords <input type="text" name="p_keywords" value="" /></label>'
            '<label>Certificate ID <input type="text" name="p_certificate" value="" /></label>'
            '<label>Family ID <input type="text" name="p_family" value="" /></label>'
            '<label>Firmware Version <input type="text" name="p_firmware_ver" value="" /></label>'
            f'<label>Device Type <select name="p_device_type[0]"><option value="">Any</option>'
            f"{options}</select></label>"
            f'<label>Specification <select name="p_spec_ver[0]"><option value="">Any</option>'
            f"{specs}</select></label>"
            '<button type="submit" class="wp-block-button__link">Search</button></form>'
        )


def _window(page: int, total: int) -> list[int]:
    """Page numbers WordPress shows: the first, the current one +-2, the last."""
    return sorted({1, total} | set(range(max(1, page - 2), min(total, page + 2) + 1)))


def _label(label: str, style: str | None) -> str:
    if style == "upper-colon":
        return f"{label.upper()}:"
    if style == "lower":
        return label.lower()
    if style == "colon":
        return f"{label}:"
    return label


def _text(value: str | None) -> str | None:
    return None if value is None else escape(value)


_DEVICE_TYPE_NAMES = (
    "Light Bulb", "Smart Plug", "Door Lock", "Bridge", "Thermostat", "Sensor",
    "Window Covering", "Switch", "Speaker", "Appliance", "Matter Device",
    "Robotic Vacuum Cleaner", "Smoke & CO Alarm", "Energy Management",
)  # fmt: skip
