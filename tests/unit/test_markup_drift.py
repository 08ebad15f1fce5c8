"""Markup drift, without a crawl: what the parsers did not find, and when the crawl stops."""

from __future__ import annotations

from pathlib import Path

import pytest
from scrapy.utils.test import get_crawler

from matter_crawler import settings as project_settings
from matter_crawler.extensions.drift import MarkupDriftMonitor
from matter_crawler.items import ProductItem
from matter_crawler.parsing import parse_detail, parse_listing
from matter_crawler.parsing.markup import (
    CARD_CONTAINER,
    CARDS,
    FIELD_LIST,
    content_not_found,
    detail_not_found,
    invalid_item_not_found,
    listing_not_found,
)

PAGES = Path(__file__).parent.parent / "fixtures" / "pages"
BASE = "https://csa-iot.org/"


def page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def test_what_a_listing_without_cards_lacks():
    normal = page("listing_page1.html")
    assert listing_not_found(parse_listing(normal, BASE)) == []
    renamed_cards = normal.replace(" product type-product ", " catalog-card ")
    assert listing_not_found(parse_listing(renamed_cards, BASE)) == [CARDS]
    no_container = normal.replace("post-feed", "product-grid")
    assert listing_not_found(parse_listing(no_container, BASE)) == [CARD_CONTAINER]


def test_what_a_product_page_lacks():
    normal = page("detail_standard.html")
    assert detail_not_found(parse_detail(normal, BASE)) == []
    drifted = normal.replace("entry-product-details", "product-specs").replace(
        "entry-title", "product-title"
    )
    assert detail_not_found(parse_detail(drifted, BASE)) == [FIELD_LIST, "h1.entry-title"]


def test_reasons_name_the_selectors_and_labels():
    assert invalid_item_not_found(
        ["certificate_id is missing", "manufacturer is missing", "Vendor ID: not an id"],
        ["Certification Number"],
    ) == [
        "label 'Certificate ID'",
        "p.entry-company",
        "Vendor ID: not an id",
        "unknown label 'Certification Number'",
    ]
    assert content_not_found("detail", "no detail markup on the page") == [FIELD_LIST]
    assert content_not_found("list", "no list markup on the page") == [CARD_CONTAINER]
    # not about markup: a cut body, a page JavaScript builds
    assert content_not_found("detail", "truncated body: no closing </html>") is None
    assert content_not_found("detail", "empty shell: no detail markup, the page is built") is None


@pytest.fixture
def monitor() -> MarkupDriftMonitor:
    crawler = get_crawler(
        settings_dict={
            "DRIFT_MAX_SHARE": project_settings.DRIFT_MAX_SHARE,
            "DRIFT_MIN_PAGES": project_settings.DRIFT_MIN_PAGES,
        }
    )
    crawler.stats.open_spider()
    return MarkupDriftMonitor.from_crawler(crawler)


def test_the_crawl_stops_past_the_share_once_enough_pages_are_read(monitor):
    stats = monitor.crawler.stats
    for _ in range(5):  # 5 of the first 23 pages fail: too few pages to judge
        monitor.item_invalid(item=ProductItem(url="u"), reasons=["certificate_id is missing"])
    for _ in range(18):
        monitor.item_scraped(item=ProductItem(url="u"))
    assert not monitor.tripped
    monitor.markup_checked(not_found=[])  # 24 pages, 5 failed: 20.8% > 20%
    assert monitor.tripped
    assert stats.get_value("drift/detected") == 1
    assert stats.get_value("drift/not_found") == {"label 'Certificate ID'": 5}
    assert (stats.get_value("drift/pages_checked"), stats.get_value("drift/pages_failed")) == (
        24,
        5,
    )


def test_a_share_within_the_limit_and_other_failures_do_not_stop_it(monitor):
    for _ in range(4):
        monitor.dead_lettered(
            stage="detail", failure_class="content", reason="no detail markup (after 3 attempts)"
        )
    for _ in range(20):
        monitor.item_scraped(item=ProductItem(url="u"))
    # not markup: a truncated body, an error status, a listing sighting
    monitor.dead_lettered(stage="detail", failure_class="content", reason="truncated body")
    monitor.dead_lettered(stage="detail", failure_class="server", reason="HTTP 503")
    monitor.item_scraped(item=object())
    assert (monitor.checked, monitor.failed) == (24, 4)
    assert not monitor.tripped
