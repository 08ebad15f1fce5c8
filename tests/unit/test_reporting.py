"""The feed and report modules on plain values: hostile catalogue text, ids, axes, options."""

from __future__ import annotations

from datetime import UTC, date, datetime

import feedparser
import lxml.html
import pytest
from scrapy.exceptions import UsageError

from matter_crawler.commands.feed import parse_since
from matter_crawler.reporting.feed import FeedEntry, parse_include, render_atom, tag_uri
from matter_crawler.reporting.report_data import ReportData, device_group, quarters_between
from matter_crawler.reporting.report_html import render_report
from matter_crawler.reporting.svg import nice_ticks, stacked_bars

HOSTILE = "<script>alert(1)</script> \"quoted\" & 'single' \x01\x1b[31m"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def entry(**values) -> FeedEntry:
    defaults = {
        "kind": "new",
        "id": 1,
        "url": "https://csa-iot.org/csa_product/a-b/",
        "updated": NOW,
        "published": NOW,
        "manufacturer": "Acme",
        "model": "Lamp",
        "certificate_id": "CSA12345MAT00001-01",
        "vid": "0x1234",
        "pid": "0x0001",
        "device_type": "Light Bulb",
        "transport": ["Thread"],
        "specification_version": "1.4",
        "certification_date": "2026-11-30",
    }
    return FeedEntry(**{**defaults, **values})


def test_hostile_text_in_the_feed_is_text_and_the_document_parses():
    document = render_atom(
        [entry(manufacturer=HOSTILE, model=HOSTILE, device_type=HOSTILE)],
        site_url="https://csa-iot.org",
    )
    parsed = feedparser.parse(document)
    assert not parsed.bozo, parsed.get("bozo_exception")
    (item,) = parsed.entries
    clean = HOSTILE.replace("\x01", "").replace("\x1b", "")  # XML cannot hold them
    assert item.title == f"{clean} {clean}"
    assert b"<script" not in document
    assert "&lt;script&gt;" in item.content[0].value  # escaped inside the HTML content


def test_ids_are_tag_uris_of_the_canonical_url():
    assert (
        tag_uri("https://csa-iot.org/csa_product/a-b/") == "tag:csa-iot.org,2022:/csa_product/a-b/"
    )
    assert (
        tag_uri("http://127.0.0.1:8800/csa_product/a-b/") == "tag:127.0.0.1,2022:/csa_product/a-b/"
    )


def test_include_and_since_options():
    assert parse_include("delisted, changed") == ("changed", "delisted")
    assert parse_include(["changed"]) == ("changed",)
    with pytest.raises(ValueError, match="unknown kind"):
        parse_include("new,removed")
    assert parse_since("30", NOW) == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert parse_since("2026-11-02", NOW) == datetime(2026, 11, 2, tzinfo=UTC)
    with pytest.raises(UsageError):
        parse_since("last week", NOW)


def test_axes_and_groups():
    assert nice_ticks(27) == [0, 10, 20, 30]
    assert nice_ticks(0) == [0.0, 1.0]
    assert quarters_between(date(2022, 11, 1), date(2023, 4, 1)) == [
        "2022 Q4",
        "2023 Q1",
        "2023 Q2",
    ]
    assert device_group("Light Bulb") == "Lighting"
    assert device_group(HOSTILE) == "Other"


def test_hostile_text_in_the_report_is_text_and_links_only_web_urls():
    data = ReportData(generated_at=NOW, since=None, until=None)
    data.totals = {"listed": 1, "vendors": 1, "delisted": 0, "all_stored": 1,
                   "pending_dead_letters": 0}  # fmt: skip
    data.months, data.quarters, data.quarter_totals = ["2026-11"], ["2026 Q4"], [2]
    data.per_month = {"Other": [2]}
    data.run_totals = {"runs": 0, "duration_seconds": 0, "new": 0, "changed": 0, "delisted": 0}
    data.vendors_all = data.vendors_recent = [(HOSTILE, 2)]
    data.transports = {"Thread": [2]}
    data.specs = {HOSTILE: [2]}
    product = {
        "url": "javascript:alert(1)", "certification_date": date(2026, 11, 30),
        "manufacturer": HOSTILE, "model": HOSTILE, "device_type": HOSTILE,
        "certificate_id": HOSTILE, "vid": None, "pid": None,
        "transport_interface": [HOSTILE], "specification_version": HOSTILE,
        "first_seen_at": NOW,
    }  # fmt: skip
    data.newest = [product, {**product, "url": "https://csa-iot.org/csa_product/x/"}]
    html = render_report(data)
    document = lxml.html.fromstring(html)
    assert document.xpath("//script") == []
    assert [a.get("href") for a in document.xpath("//a")] == ["https://csa-iot.org/csa_product/x/"]
    clean = HOSTILE.replace("\x01", "").replace("\x1b", "")
    cells = document.xpath("//table[@id='table-newest']//tbody/tr[1]/td")
    assert cells[1].text_content() == clean
    assert cells[2].text_content() == clean  # no link: not a web URL
    bars = document.xpath("//*[@id='chart-vendors-all']//*[@data-value]")
    assert bars[0].get("data-category") == clean
    (policy,) = document.xpath("//meta[@http-equiv='Content-Security-Policy']/@content")
    assert policy.startswith("default-src 'none'; style-src 'sha256-")


def test_a_stacked_bar_chart_marks_every_value():
    svg = stacked_bars(["a", "b"], [("x", [1, 0]), ("y", [2, 3])], title="t", desc="d", ident="c")
    document = lxml.html.fromstring(svg)
    values = [
        (mark.get("data-category"), mark.get("data-series"), mark.get("data-value"))
        for mark in document.xpath("//*[@data-value]")
    ]
    assert values == [("a", "x", "1"), ("a", "y", "2"), ("b", "y", "3")]
