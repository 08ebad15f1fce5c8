"""Test-side parsing of simulated pages with the selectors docs/site-markup.md documents.

Deliberately independent of the crawler's parsers (the site and the crawler
share no code, and these tests check the site): it turns a page into the
ground-truth record shape so the truth can be compared with what pages show.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from parsel import Selector

CARD_CONTAINERS = (
    'div.post-feed.item-count-12[data-item-count="12"] > div.inner > article.product',
    ".wp-block-crown-blocks-product-index article.product",
)
LABELS = {
    "certificate id": "certificate_id",
    "certified date": "certification_date",
    "vendor id": "vid",
    "product id": "pid",
    "firmware version": "firmware_version",
    "hardware version": "hardware_version",
    "software version": "software_version",
    "family id": "family_id",
    "family sku": "family_sku",
    "family variant sku": "family_variant_sku",
    "tis/trp tested": "tis_trp_tested",
    "specification version": "specification_version",
    "transport interface": "transport_interface",
    "primary device type id": "primary_device_type_id",
}


def text_of(selector: Selector | None) -> str:
    """All text under ``selector``, whitespace-trimmed ('' for None)."""
    if selector is None:
        return ""
    return "".join(selector.css("::text").getall()).strip()


def cards(html: str) -> list[dict[str, Any]]:
    """The product cards of a listing page, in page order."""
    page = Selector(text=html)
    found = []
    for container in CARD_CONTAINERS:
        for card in page.css(container):
            link = card.css("a")[0]
            certificate = card.css("p.entry-certificate-id, span.entry-cert-id")
            cert_text = text_of(certificate[0]) if certificate else None
            if cert_text is not None:
                cert_text = cert_text.removeprefix("Certificate ID:").strip()
            found.append(
                {
                    "url": urlsplit(link.attrib["href"]).path,
                    "href": link.attrib["href"],
                    "manufacturer": text_of(card.css("p.entry-company.notranslate")[0]),
                    "model": text_of(card.css("h3.entry-title")[0]),
                    "certificate_id": cert_text,
                }
            )
    return found


def detail_rows(page: Selector) -> tuple[str, list[tuple[str, Selector | None]]]:
    """(layout, [(label as shown, value node)]) from li.item or the legacy table."""
    items = page.css("div.entry-product-details > div > ul > li.item")
    if items:
        return "items", [
            (text_of(li.css("span.label")[0]), li.css("span.value")[0]) for li in items
        ]
    rows = []
    for tr in page.css("table.product-certificates-table tr"):
        cells = tr.css("td")
        rows.append((text_of(cells[0]), cells[1] if len(cells) > 1 else None))
    return "table", rows


def detail_record(html: str, path: str) -> dict[str, Any]:
    """A detail page turned into the ground-truth record shape."""
    page = Selector(text=html)
    record: dict[str, Any] = dict.fromkeys(LABELS.values())
    record["extra_fields"] = {}
    _, rows = detail_rows(page)
    for shown_label, node in rows:
        value = text_of(node) or None
        label = shown_label.rstrip(":").strip().lower()
        key = LABELS.get(label)
        if key is None:
            record["extra_fields"][shown_label.rstrip(":").strip()] = value
            continue
        record[key] = value
    if record["certification_date"]:
        day = datetime.strptime(record["certification_date"], "%m/%d/%Y").date()
        record["certification_date"] = day.isoformat()
    pid = record["pid"]
    if pid and not pid.lower().startswith("0x"):
        record["pid"] = f"0x{int(pid):04X}"
    tested = record["tis_trp_tested"]
    record["tis_trp_tested"] = None if tested is None else tested == "Yes"
    transports = record["transport_interface"]
    record["transport_interface"] = transports.split(", ") if transports else []
    description = page.css("div.entry-content > p.entry-description")
    document = page.css("a.compliance-document::attr(href)").get()
    record.update(
        url=path,
        manufacturer=text_of(page.css("p.entry-company")[0]),
        model=text_of(page.css("h1.entry-title")[0]),
        device_type=text_of(page.css("h6.entry-category")[0]),
        application_categories=[
            text.strip()
            for text in page.xpath(
                "//h3[normalize-space()='Application Categories']/following-sibling::ul[1]/li"
                "//text()"
            ).getall()
        ],
        description=text_of(description[0]) if description else None,
        compliance_document_url=urlsplit(document).path if document else None,
    )
    return record
