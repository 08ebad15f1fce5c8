"""Detail pages: markup per docs/site-markup.md, variants, escaping, agreement with the truth."""

from __future__ import annotations

import re

from parsel import Selector

from sitesim.process import SimulatedSite

from .pageparse import detail_record, detail_rows, text_of
from .webclient import fetch

ALL_LABELS = [
    "Certificate ID", "Certified Date", "Vendor ID", "Product ID", "Firmware Version",
    "Hardware Version", "Software Version", "Family ID", "Family SKU", "Family Variant SKU",
    "TIS/TRP Tested", "Specification Version", "Transport Interface", "Primary Device Type ID",
]  # fmt: skip


def test_detail_markup_matches_the_documented_selectors(
    site: SimulatedSite, truth: list[dict]
) -> None:
    record = next(r for r in truth if r["family_variant_sku"] and r["tis_trp_tested"] is not None)
    reply = fetch(site.url(record["url"]))
    assert reply.status == 200
    assert 20_000 <= len(reply.body) <= 40_000
    page = Selector(text=reply.text)
    assert text_of(page.css("h1.entry-title")[0]) == record["model"]
    assert text_of(page.css("p.entry-company")[0]) == record["manufacturer"]
    assert text_of(page.css("h6.entry-category")[0]) == record["device_type"]
    items = page.css("div.entry-product-details > div > ul > li.item")
    labels = [text_of(li.css("span.label")[0]) for li in items]
    shown = [label for label in ALL_LABELS if label in labels]
    assert labels == shown, "documented labels, in the documented order"
    values = {text_of(li.css("span.label")[0]): text_of(li.css("span.value")[0]) for li in items}
    year, month, day = record["certification_date"].split("-")
    assert values["Certified Date"] == f"{month}/{day}/{year}"
    assert re.fullmatch(r"0x[0-9A-F]{4}", values["Vendor ID"])
    assert values["TIS/TRP Tested"] in ("Yes", "No")
    heading = page.xpath("//h3[normalize-space()='Application Categories']")
    assert (
        heading.xpath("following-sibling::ul[1]/li/text()").getall()
        == record["application_categories"]
    )
    if record["compliance_document_url"]:
        href = page.css("a[href$='.zip']::attr(href)").get()
        assert href == site.url(record["compliance_document_url"])
    more = page.xpath("//h3[starts-with(normalize-space(), 'More by ')]")
    assert text_of(more[0]) == f"More by {record['manufacturer']}"
    links = page.css("a::attr(href)").getall()
    assert all(h.startswith((site.base_url, "#")) for h in links), "links stay on the site"
    canonical = page.css('link[rel="canonical"]::attr(href)').get()
    assert canonical == site.url(record["url"])


def test_truth_agrees_with_the_pages(site: SimulatedSite, truth: list[dict]) -> None:
    for record in truth[:40] + truth[-10:]:
        reply = fetch(site.url(record["url"]))
        assert detail_record(reply.text, record["url"]) == record


def test_truth_agrees_with_pages_in_every_variant(variant_site: SimulatedSite) -> None:
    truth = variant_site.truth()
    for record in truth[:60]:
        reply = fetch(variant_site.url(record["url"]))
        assert detail_record(reply.text, record["url"]) == record, record["url"]


def test_detail_variants_all_occur(variant_site: SimulatedSite) -> None:
    seen: set[str] = set()
    for record in variant_site.truth()[:60]:
        page = Selector(text=fetch(variant_site.url(record["url"])).text)
        layout, rows = detail_rows(page)
        labels = [label for label, _ in rows]
        values = {label.rstrip(":").lower(): node for label, node in rows}
        if layout == "table":
            assert not page.css("li.item")
            seen.add("legacy-table")
        if any(label.endswith(":") for label in labels):
            seen.add("colon")
        if any(label.isupper() or label.islower() for label in labels):
            seen.add("other-case")
        if text_of(values["product id"]).isdigit():
            seen.add("decimal-pid")
        if values["certificate id"].css("a") or (
            "family id" in values and values["family id"] and values["family id"].css("a")
        ):
            seen.add("linked-value")
        if record["extra_fields"]:
            seen.add("extra-label")
        if any(node is not None and not text_of(node) for node in values.values()):
            seen.add("empty-value")
    assert seen == {
        "legacy-table", "colon", "other-case", "decimal-pid", "linked-value", "extra-label",
        "empty-value",
    }  # fmt: skip


def test_escaping_and_non_ascii(site: SimulatedSite, truth: list[dict]) -> None:
    specials = {
        "quote-company": next(r for r in truth if r["manufacturer"].startswith("O'Reilly")),
        "script-model": next(r for r in truth if r["model"] == "<script>alert(1)</script>"),
        "sql-description": next(
            r for r in truth if (r["description"] or "").startswith("Robert')")
        ),
        "korean": next(r for r in truth if re.search("[\uac00-\ud7a3]", r["manufacturer"])),
        "chinese": next(r for r in truth if re.search("[\u4e00-\u9fff]", r["manufacturer"])),
        "german": next(r for r in truth if "ö" in r["manufacturer"]),
    }
    for name, record in specials.items():
        reply = fetch(site.url(record["url"]))
        assert reply.headers["content-type"] == "text/html; charset=UTF-8"
        raw = reply.text
        assert "<script>alert(1)</script>" not in raw, name
        assert "<Labs>" not in raw, name
        assert detail_record(raw, record["url"]) == record, name
    raw = fetch(site.url(specials["quote-company"]["url"])).text
    assert "O&#x27;Reilly &quot;Smart&quot; Home &lt;Labs&gt; &amp; Co." in raw
    raw = fetch(site.url(specials["script-model"]["url"])).text
    assert '<h1 class="entry-title">&lt;script&gt;alert(1)&lt;/script&gt;</h1>' in raw
    listing = fetch(site.listing_url(1)).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    assert "<script>alert(1)</script>" not in listing


def test_unknown_and_removed_detail_pages_404(site: SimulatedSite, truth: list[dict]) -> None:
    assert fetch(site.url("/csa_product/no-such-product/")).status == 404
    path = truth[0]["url"]
    moved = fetch(site.url(path.rstrip("/")))
    assert moved.status == 301
    assert moved.headers["location"] == site.url(path)
    assert fetch(site.url("/wp-content/uploads/compliance/x.zip")).status == 404
