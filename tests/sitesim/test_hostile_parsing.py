"""--hostile-parsing: pages built to break parsers, rendered by the site's own code."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from parsel import Selector

from sitesim import hostile_parsing
from sitesim.process import SimulatedSite

from .webclient import fetch

PRODUCTS = 40


@pytest.fixture(scope="module")
def hostile_site() -> Iterator[SimulatedSite]:
    with SimulatedSite(products=PRODUCTS, seed=3, hostile_parsing=True) as running:
        yield running


def by_kind(site: SimulatedSite) -> dict[str, dict]:
    return {entry["kind"]: entry for entry in site.hostile()}


def test_account_and_truth_agree(hostile_site):
    entries = by_kind(hostile_site)
    assert {kind: entry["expect"] for kind, entry in entries.items()} == {
        **hostile_parsing.KINDS,
        "bad_page_number": "ignored",
    }
    truth = {record["url"]: record for record in hostile_site.truth()}
    dead = [e for e in entries.values() if e["expect"] == "dead_letter"]
    assert len(truth) == PRODUCTS - len(dead)
    for kind, entry in entries.items():
        if kind != "bad_page_number":
            assert (entry["url"] in truth) == (entry["expect"] == "stored"), kind
    # the card kinds say where their card is: listing page 2
    assert (entries["malformed_link"]["listing_page"], entries["malformed_link"]["card"]) == (2, 4)
    # the control characters are in the name the site shows, not in what a browser shows
    control = truth[entries["control_chars"]["url"]]
    assert "\x1b" not in control["model"]
    assert "\x07" not in control["model"]
    assert "\x9b" not in control["model"]
    assert control["model"].endswith(" [31mRed[0m \u202eevil\u202c 2J]0;title")


def test_both_groups_at_once_do_not_collide():
    with SimulatedSite(products=PRODUCTS, seed=3, hostile=True, hostile_parsing=True) as both:
        entries = both.hostile()
        products = [e["url"] for e in entries if e["url"].startswith("/csa_product/")]
        assert len(products) == len(set(products)) == 5 + len(hostile_parsing.KINDS)
        # the truth leaves out what a correct crawler cannot store: 4 of the first group's
        lettered = sum(1 for expect in hostile_parsing.KINDS.values() if expect != "stored")
        assert lettered == 5
        assert len(both.truth()) == PRODUCTS - 4 - lettered


def test_without_the_flag_nothing_is_hostile_for_the_parsers():
    with SimulatedSite(products=20, seed=3) as plain:
        assert plain.hostile() == []
        assert b"hostile" not in fetch(plain.listing_url(1)).body


def test_product_pages(hostile_site):
    entries = by_kind(hostile_site)
    base = hostile_site.base_url

    markers = fetch(base + entries["script_markers"]["url"], timeout=30)
    assert markers.status == 200
    assert len(markers.body) > hostile_parsing.SCRIPT_MARKERS_BYTES
    head = markers.body[: markers.body.index(b"</head>")]
    assert head.count(b"entry-product-details") > 100_000
    assert markers.body.rstrip().endswith(b"</html>")

    deep = fetch(base + entries["deep_nesting"]["url"]).body
    assert deep.count(b"<div>" * hostile_parsing.NESTING_DEPTH) == 1
    assert b"entry-product-details" in deep

    many = fetch(base + entries["many_attributes"]["url"]).body
    assert many.count(b" data-a") == hostile_parsing.ATTRIBUTE_COUNT  # not parsed: minutes
    assert b'<main id="main" class="site-main" data-a0="a > b < c" data-a1 ' in many
    assert b"entry-product-details" in many

    charset = fetch(base + entries["unknown_charset"]["url"])
    assert charset.headers["content-type"] == "text/html; charset=cp858"
    text = charset.body.decode("cp858")
    assert '<meta charset="cp858" />' in text
    record = next(r for r in hostile_site.truth() if r["url"] == entries["unknown_charset"]["url"])
    assert Selector(text=text).css("h1.entry-title::text").get() == record["model"]

    long_values = fetch(base + entries["over_long_values"]["url"]).text
    certificate = re.search(r"CSA7+-24", long_values)
    assert certificate
    assert len(certificate.group()) == hostile_parsing.LONG_CERTIFICATE_CHARS

    control = fetch(base + entries["control_chars"]["url"]).text
    assert "\x1b[31mRed\x1b[0m\x07" in control


def test_bad_retry_after_then_the_page(hostile_site):
    url = hostile_site.url(by_kind(hostile_site)["bad_retry_after"]["url"])
    answers = [fetch(url) for _ in range(hostile_parsing.BAD_RETRY_AFTER_ANSWERS + 1)]
    assert [a.status for a in answers] == [429] * hostile_parsing.BAD_RETRY_AFTER_ANSWERS + [200]
    # http.client reads header values as latin-1: the byte 0xB2 is "²"
    assert answers[0].headers["retry-after"] == "²"


def test_listing_pages(hostile_site):
    entries = by_kind(hostile_site)
    base = hostile_site.base_url
    page2 = fetch(hostile_site.listing_url(2)).text
    articles = Selector(text=page2).css("article.product")

    def card(kind: str):
        return articles[by_kind(hostile_site)[kind]["card"] - 1]

    assert card("malformed_link").css("a::attr(href)").get() == (
        "http://[x" + entries["malformed_link"]["url"]
    )
    post_class = card("bad_post_id").attrib["class"].split()[0]
    assert post_class == "post-" + "9" * hostile_parsing.POST_ID_DIGITS
    variant = card("url_variants").css("a::attr(href)").get()
    path = entries["url_variants"]["url"]
    assert variant == f"{base}{path.rstrip('/')}?utm_source=hostile&ref=card#specs"

    page1 = fetch(hostile_site.listing_url(1)).text
    links = Selector(text=page1).css("article.product > a::attr(href)").getall()
    assert len(links) == 13  # 12 cards and the extra one
    assert links[-1] == f"https://{base.split('://')[1]}{path}?ref=extra"
    labels = Selector(text=page1).css("nav.hostile a.page-numbers")
    assert labels.css("::text").get() == "²"
    assert "9" * hostile_parsing.POST_ID_DIGITS in labels.attrib["href"]
