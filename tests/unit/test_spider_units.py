"""The spider's list-stage decisions, driven with fixture pages (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from matter_crawler import settings as project_settings
from matter_crawler.planner import CrawlPlan
from matter_crawler.signals import listing_sighted
from matter_crawler.spiders.matter_products import MatterProductsSpider
from matter_crawler.storage.products import KnownProduct

PAGES = Path(__file__).parent.parent / "fixtures" / "pages"
BASE = "https://csa-iot.org"


@pytest.fixture
def spider(tmp_path):
    crawler = get_crawler(
        MatterProductsSpider,
        settings_dict={
            "DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
            "CSA_BASE_URL": project_settings.CSA_BASE_URL,
            "CSA_LISTING_QUERY": project_settings.CSA_LISTING_QUERY,
            "LISTING_MAX_PAGES": project_settings.LISTING_MAX_PAGES,
            "DELIST_MAX_SHARE": project_settings.DELIST_MAX_SHARE,
            "REFRESH_MAX_AGE_DAYS": project_settings.REFRESH_MAX_AGE_DAYS,
        },
    )
    crawler.stats.open_spider()
    spider = MatterProductsSpider.from_crawler(crawler)
    spider.plan = CrawlPlan(mode="full", pages_scheduled={1})  # as start() leaves it
    return spider


def listing_response(spider, page: int, fixture: str, *, refetch: bool = False) -> HtmlResponse:
    request = spider.listing_request(page, refetch=refetch)
    return HtmlResponse(request.url, body=(PAGES / fixture).read_bytes(), request=request)


def split(outputs):
    outputs = list(outputs)
    requests = [o for o in outputs if isinstance(o, Request)]
    return requests, [o for o in outputs if not isinstance(o, Request)]


def test_page_one_plans_every_page_and_a_probe_past_the_end(spider):
    requests, _ = split(spider.parse_listing(listing_response(spider, 1, "listing_page1.html")))
    listing = [r for r in requests if r.meta["stage"] == "list"]
    details = [r for r in requests if r.meta["stage"] == "detail"]
    # page 1 shows only 4 cards: fetched again; then 2..498 and 499, past the end
    assert [r.meta["page"] for r in listing] == [*range(2, 500), 1]
    assert listing[-2].meta["handle_httpstatus_list"]  # the probe may answer 404
    assert listing[0].url == (
        f"{BASE}/csa-iot_products/page/2/?p_keywords=&p_type%5B0%5D=14&p_program_type%5B0%5D=1049"
        "&p_certificate=&p_family=&p_firmware_ver="
    )
    assert len(details) == 4
    assert all(r.priority > listing[0].priority for r in details)  # product pages first
    assert spider.plan.site_last_page == 498


def test_a_short_page_that_is_not_the_last_is_fetched_again_before_it_counts(spider):
    spider.plan.site_last_page = 512  # what that page's pagination shows
    # page 250 with 2 cards: suspicious
    requests, _ = split(
        spider.parse_listing(listing_response(spider, 250, "listing_block_variant.html"))
    )
    again = [r for r in requests if r.meta["stage"] == "list"]
    assert len(again) == 1
    assert again[0].meta["page"] == 250
    assert again[0].meta["refetch"]
    assert again[0].dont_filter
    assert 250 not in spider.plan.pages_done
    # still short the second time: accepted, and counted
    list(
        spider.parse_listing(
            listing_response(spider, 250, "listing_block_variant.html", refetch=True)
        )
    )
    assert 250 in spider.plan.pages_done
    assert spider.crawler.stats.get_value("matter/list/short_page_accepted") == 1
    # the last page may be short
    spider.plan.site_last_page = 498
    list(spider.parse_listing(listing_response(spider, 498, "listing_last_page.html")))
    assert 498 in spider.plan.pages_done
    assert spider.crawler.stats.get_value("matter/list/short_page_refetched") == 1


def test_past_the_end_confirms_the_plan_or_shrinks_it(spider):
    spider.plan.site_last_page = 10
    probe = spider.listing_request(11)
    list(spider.parse_listing(HtmlResponse(probe.url, status=404, body=b"", request=probe)))
    assert spider.plan.end_confirmed
    assert spider.plan.site_last_page == 10
    # the catalogue shrank while we crawled: page 9 is already past the end
    gone = spider.listing_request(9)
    list(spider.parse_listing(HtmlResponse(gone.url, status=302, body=b"", request=gone)))
    assert spider.plan.site_last_page == 8


def test_known_cards_become_sightings_and_changed_ones_are_fetched(spider):
    spider.known = {
        f"{BASE}/csa_product/wi-fi-plug-27/": KnownProduct(
            "Shenzhen Example Technology Co., Ltd.", "Wi-Fi Plug", "CSA22059MAT40059-24", 1, False
        ),
        f"{BASE}/csa_product/wiz-led-lamp-dimmable-20/": KnownProduct(
            "WiZ Connected", "WiZ LED Lamp (old name)", "CSA244D4MAT43911-00", 1, False
        ),
    }
    sighted = []

    def received(sightings, page, **_):
        sighted.extend((sighting.url, page) for sighting in sightings)

    spider.crawler.signals.connect(received, signal=listing_sighted)
    requests, items = split(spider.parse_listing(listing_response(spider, 1, "listing_page1.html")))
    assert items == []  # sightings are sent with a signal: they are not items
    fetched = {r.url for r in requests if r.meta["stage"] == "detail"}
    assert f"{BASE}/csa_product/wi-fi-plug-27/" not in fetched  # known, unchanged
    assert f"{BASE}/csa_product/wiz-led-lamp-dimmable-20/" in fetched  # its card changed
    # both stored products are seen, the changed one too: if its fetch fails for good,
    # or the run stops before it is stored, it must not count as delisted
    assert sighted == [
        (f"{BASE}/csa_product/wi-fi-plug-27/", 1),
        (f"{BASE}/csa_product/wiz-led-lamp-dimmable-20/", 1),
    ]
    assert spider.crawler.stats.get_value("sightings/count") == 2
