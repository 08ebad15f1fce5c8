"""Parse a product detail page into its raw, displayed values.

Pure functions over HTML. The field list comes from ``li.item`` label/value
pairs (``div.entry-product-details``) or, on older pages, from
``table.product-certificates-table`` rows; both give (label, value) pairs as
displayed. Turning those into typed fields is :mod:`.normalize`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

from lxml import etree

from ..safe_text import quoted
from ._html import css, first, node_text, parse_document
from .urls import check_port

_model = css("h1.entry-title")
_company = css("p.entry-company")
_category = css("h6.entry-category")
_detail_items = css("div.entry-product-details li.item")
_legacy_rows = css("table.product-certificates-table tr")
_cells = etree.XPath("./td|./th")
# Hand-written where the generic CSS translation scans the whole tree several times.
_description = etree.XPath("(//p|//div)[contains(@class, 'entry-description')]")
_content_paragraphs = css(".entry-content > p")
_zip_links = etree.XPath("//a/@href[contains(., '.zip') or contains(., '.ZIP')]")
_headings = etree.XPath("//h2|//h3|//h4")
_list_items = etree.XPath("./li")


@dataclass(frozen=True, slots=True)
class DetailPage:
    """A product page's values as displayed, before normalisation."""

    model: str | None
    manufacturer: str | None
    device_type: str | None
    fields: tuple[tuple[str, str | None], ...]  # (label without trailing colon, value)
    application_categories: tuple[str, ...]
    description: str | None
    compliance_document_url: str | None
    layout: str  # "items", "table" or "none" (no field list found)
    problems: tuple[str, ...] = ()  # values that cannot be read (a malformed link)


def parse_detail(source: str | bytes, base_url: str, encoding: str | None = None) -> DetailPage:
    """Parse a detail page. ``base_url`` resolves the compliance-document link.

    Raises :class:`~matter_crawler.parsing.PageParseError` for a page the HTML parser
    cannot read whole (see :func:`._html.parse_document`).
    """
    doc = parse_document(source, encoding)

    fields: list[tuple[str, str | None]] = []
    layout = "none"
    for item in _detail_items(doc):
        label, value = _label_and_value(item)
        if label:
            fields.append((_strip_colon(label), value))
    if fields:
        layout = "items"
    else:
        for row in _legacy_rows(doc):
            cells = _cells(row)
            label = node_text(cells[0]) if cells else None
            if label:
                value = node_text(cells[1]) if len(cells) > 1 else None
                fields.append((_strip_colon(label), value))
        if fields:
            layout = "table"

    compliance_document_url = None
    problems: list[str] = []
    if zip_links := _zip_links(doc):
        href = zip_links[0].strip()
        try:
            compliance_document_url = urljoin(base_url, href)
            check_port(compliance_document_url)
        except ValueError as error:
            compliance_document_url = None
            problems.append(f"compliance document link {quoted(href)} is malformed ({error})")
    return DetailPage(
        model=node_text(first(_model(doc))),
        manufacturer=node_text(first(_company(doc))),
        device_type=node_text(first(_category(doc))),
        fields=tuple(fields),
        application_categories=_application_categories(doc),
        description=node_text(first(_description(doc) or _content_paragraphs(doc))),
        compliance_document_url=compliance_document_url,
        layout=layout,
        problems=tuple(problems),
    )


def _label_and_value(item) -> tuple[str | None, str | None]:
    """``span.label`` and ``span.value`` of an ``li.item`` (a direct walk: cheaper than XPath)."""
    label = value = None
    for span in item.iter("span"):
        classes = span.get("class", "").split()
        if label is None and "label" in classes:
            label = node_text(span)
        elif value is None and "value" in classes:
            value = node_text(span)
    return label, value


def _application_categories(doc) -> tuple[str, ...]:
    """The ``li`` texts of the first ``ul`` after the "Application Categories" heading."""
    for heading in _headings(doc):
        title = (node_text(heading) or "").lower()
        if title.startswith("application categor"):
            for sibling in heading.itersiblings("ul"):
                return tuple(text for li in _list_items(sibling) if (text := node_text(li)))
            return ()
    return ()


def _strip_colon(label: str) -> str:
    return label.rstrip(":").rstrip()
