"""Listing pages: URLs, markup per docs/site-markup.md, order, pagination, variants."""

from __future__ import annotations

from html import escape

from parsel import Selector

from sitesim.process import LISTING_QUERY, SimulatedSite

from .pageparse import cards, text_of
from .webclient import fetch

CARD_PATH = (
    'div.post-feed.item-count-12[data-item-count="12"] > div.inner > '
    "article.product.type-product > a > div.inner > div.contents"
)


def test_listing_markup_matches_the_documented_selectors(
    site: SimulatedSite, truth: list[dict]
) -> None:
    reply = fetch(site.listing_url(1))
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert 20_000 <= len(reply.body) <= 40_000, "about the weight of a real page"
    page = Selector(text=reply.text)
    contents = page.css(CARD_PATH)
    assert len(contents) == 12
    articles = page.css("div.post-feed > div.inner > article")
    for article, record in zip(articles, truth[:12], strict=True):
        classes = article.attrib["class"].split()
        assert any(c.startswith("post-") and c[5:].isdigit() for c in classes)
        assert article.css("a::attr(href)").get() == site.url(record["url"])
        inner = article.css("a > div.inner > div.contents")
        assert text_of(inner.css("p.entry-company.notranslate")[0]) == record["manufacturer"]
        assert text_of(inner.css("h3.entry-title")[0]) == record["model"]
        certificate = inner.css("p.entry-certificate-id")
        if certificate:  # a few cards carry no certificate line
            expected = f"Certificate ID: {record['certificate_id']}"
            assert text_of(certificate[0]) == expected
    assert page.css('link[rel="canonical"]::attr(href)').get() == site.listing_url(1)


def test_pages_hold_12_cards_newest_first_and_the_last_the_rest(
    site: SimulatedSite, truth: list[dict]
) -> None:
    assert len(truth) == 600
    for number in (1, 2, 17, 49, 50):
        shown = cards(fetch(site.listing_url(number)).text)
        expected = truth[(number - 1) * 12 : number * 12]
        assert [c["url"] for c in shown] == [r["url"] for r in expected]
        assert [c["model"] for c in shown] == [r["model"] for r in expected]
    dates = [r["certification_date"] for r in truth]
    assert dates == sorted(dates, reverse=True)


def test_last_page_holds_fewer_cards() -> None:
    with SimulatedSite(products=40, seed=2) as small:
        assert len(cards(fetch(small.listing_url(4)).text)) == 4
        assert fetch(small.listing_url(5)).status == 404


def test_pagination_window_links_and_canonical(site: SimulatedSite) -> None:
    page = Selector(text=fetch(site.listing_url(10)).text)
    numbers = [int(a) for a in page.css("a.page-numbers:not(.prev):not(.next)::text").getall()]
    assert numbers == [1, 8, 9, 11, 12, 50]
    assert page.css("span.page-numbers.current::text").get() == "10"
    assert len(page.css("span.page-numbers.dots")) == 2
    links = page.css("a.page-numbers::attr(href)").getall()
    assert site.listing_url(1) in links, "page 1 links to the page-1 URL, not /page/1/"
    assert page.css("a.next.page-numbers::attr(href)").get() == site.listing_url(11)
    assert page.css("a.prev.page-numbers::attr(href)").get() == site.listing_url(9)
    assert page.css('link[rel="canonical"]::attr(href)').get() == site.listing_url(10)
    assert all(link.startswith(site.base_url) for link in links), "links stay on the site"
    last = Selector(text=fetch(site.listing_url(50)).text)
    assert not last.css("a.next.page-numbers")
    first = Selector(text=fetch(site.listing_url(1)).text)
    assert not first.css("a.prev.page-numbers")


def test_query_string_is_byte_exact_in_links(site: SimulatedSite) -> None:
    assert site.listing_url(3).endswith(f"/csa-iot_products/page/3/?{LISTING_QUERY}")
    raw = fetch(site.listing_url(2)).text
    assert escape(f"{site.base_url}/csa-iot_products/page/3/?{LISTING_QUERY}") in raw


def test_past_the_end_is_404_or_a_redirect(fault_site: SimulatedSite) -> None:
    past = fault_site.listing_url(11)  # 120 products: 10 pages
    assert fetch(fault_site.listing_url(10)).status == 200
    assert fetch(past).status == 404
    fault_site.set_faults(past_end="redirect")
    reply = fetch(past)
    assert reply.status == 302
    assert reply.headers["location"] == fault_site.listing_url(1)


def test_older_url_forms_and_extra_parameters(site: SimulatedSite, truth: list[dict]) -> None:
    third = [r["url"] for r in truth[24:36]]
    base = site.base_url
    forms = (
        f"{base}/csa-iot_products/page/3/?p_keywords=&p_type%5B%5D=14&p_program_type%5B%5D=1049",
        f"{base}/csa-iot_products/?{LISTING_QUERY}&paged=3",
        f"{base}/csa-iot_products/page/3/?p_device_type%5B0%5D=654&{LISTING_QUERY}",
        f"{base}/csa-iot_products/page/3/?p_firmware_ver=&p_type%5B0%5D=14&p_keywords=",
    )
    for url in forms:
        reply = fetch(url)
        assert reply.status == 200, url
        assert [c["url"] for c in cards(reply.text)] == third, url
    redirect = fetch(f"{base}/csa-iot_products/page/1/?{LISTING_QUERY}")
    assert redirect.status == 301
    assert redirect.headers["location"] == site.listing_url(1)
    assert fetch(f"{base}/csa-iot_products/page/0/").status == 404
    assert fetch(f"{base}/csa-iot_products/page/x/").status == 404


def test_robots_txt(site: SimulatedSite) -> None:
    reply = fetch(site.url("/robots.txt"))
    assert reply.status == 200
    assert reply.text.splitlines() == [
        "User-agent: *",
        "Disallow: /wp-admin/",
        "Allow: /wp-admin/admin-ajax.php",
    ]


def test_listing_variants_all_occur(variant_site: SimulatedSite) -> None:
    seen = set()
    for number in range(1, 21):
        raw = fetch(variant_site.listing_url(number)).text
        page = Selector(text=raw)
        found = cards(raw)
        assert len(found) == 12, number
        if page.css(".wp-block-crown-blocks-product-index article.product"):
            assert not page.css("div.post-feed")
            seen.add("block-container")
        if page.css("article.product span.entry-cert-id"):
            assert not page.css("p.entry-certificate-id")
            seen.add("cert-span")
        if any(card["certificate_id"] is None for card in found):
            seen.add("card-without-certificate")
        old = page.css("div.pagination-wrapper > nav > div > a > span::text").getall()
        if old:
            assert not page.css("a.page-numbers")
            assert "Next »" in old or number == 50
            assert str(number) in old
            seen.add("old-pagination")
    assert seen == {"block-container", "cert-span", "card-without-certificate", "old-pagination"}
