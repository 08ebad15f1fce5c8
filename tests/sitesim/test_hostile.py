"""--hostile: a few products served badly, left out of the truth when unstorable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from parsel import Selector

from sitesim.hostile import OFFSITE_BASE, OVERSIZED_BYTES
from sitesim.process import SimulatedSite

from .webclient import fetch


@pytest.fixture(scope="module")
def hostile_site() -> Iterator[SimulatedSite]:
    with SimulatedSite(products=60, seed=2, hostile=True) as running:
        yield running


def by_kind(site: SimulatedSite) -> dict[str, str]:
    return {product["kind"]: product["url"] for product in site.hostile()}


def test_account_and_truth(hostile_site):
    hostile = hostile_site.hostile()
    expected = {
        "malformed_html": "stored",
        "missing_fields": "dead_letter",
        "oversized": "dead_letter",
        "redirect_loop": "dead_letter",
        "offsite_link": "dead_letter",
    }
    assert {product["kind"]: product["expect"] for product in hostile} == expected
    truth_urls = {record["url"] for record in hostile_site.truth()}
    assert len(truth_urls) == 60 - 4
    for product in hostile:
        assert (product["url"] in truth_urls) == (product["expect"] == "stored")


def test_without_the_flag_nothing_is_hostile():
    with SimulatedSite(products=20, seed=2) as plain:
        assert plain.hostile() == []
        assert len(plain.truth()) == 20


def test_pages(hostile_site):
    urls = by_kind(hostile_site)
    base = hostile_site.base_url

    malformed = fetch(base + urls["malformed_html"])
    assert malformed.status == 200
    assert b"</li>" not in malformed.body
    assert b"</body>" not in malformed.body
    assert b"<LI class=item>" in malformed.body

    missing = Selector(text=fetch(base + urls["missing_fields"]).text)
    labels = {
        label.strip().rstrip(":").lower()
        for label in missing.css(
            "li.item span.label::text, table.product-certificates-table td:first-child::text"
        ).getall()
    }
    assert "product id" in labels
    assert "certificate id" not in labels
    assert "vendor id" not in labels

    oversized = fetch(base + urls["oversized"])
    assert len(oversized.body) > OVERSIZED_BYTES
    assert oversized.body.rstrip().endswith(b"</html>")

    first = fetch(base + urls["redirect_loop"])
    assert first.status == 302
    assert first.headers["location"] == base + urls["redirect_loop"] + "?moved=1"
    second = fetch(first.headers["location"])
    assert second.status == 302
    assert second.headers["location"] == base + urls["redirect_loop"]

    listing = Selector(text=fetch(hostile_site.listing_url(1)).text)
    hrefs = listing.css("article.product > a::attr(href)").getall()
    assert OFFSITE_BASE + urls["offsite_link"] in hrefs
    assert base + urls["offsite_link"] not in hrefs
