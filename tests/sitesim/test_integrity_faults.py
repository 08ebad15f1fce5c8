"""What the integrity tests need of the site: mutations at a moment of a crawl, the removed
products' truth, markup drift, listing pages that answer as past the end, a lying pagination."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from sitesim.process import SimulatedSite

from .pageparse import cards, detail_record
from .webclient import fetch


@pytest.fixture
def site() -> Iterator[SimulatedSite]:
    with SimulatedSite(products=120, seed=5) as running:
        yield running


def test_a_mutation_waits_for_its_listing_page(site: SimulatedSite) -> None:
    answer = site.mutate(remove=2, after_list_page=3)
    assert answer["scheduled"] == {
        "id": 1,
        "add": 0,
        "remove": 2,
        "change": 0,
        "after_list_page": 3,
    }
    before = [card["url"] for card in cards(fetch(site.listing_url(3)).text)]
    # page 3 shows the catalogue as it was; everything after it, the mutated one
    mutations = site.mutations()
    assert mutations["pending"] == []
    (applied,) = mutations["applied"]
    assert (applied["after_list_page"], applied["after_page_requests"]) == (3, 1)
    removed = applied["removed"]
    assert len(removed) == 2
    listed = [record["url"] for record in site.truth()]
    assert not set(removed) & set(listed)
    assert before == [path for path in before if path in listed or path in removed]
    for path in removed:
        assert fetch(site.url(path)).status == 404


def test_a_mutation_after_a_number_of_page_requests(site: SimulatedSite) -> None:
    site.mutate(add=5, after_requests=3)
    fetch(site.listing_url(1))
    fetch(site.listing_url(2))
    fetch(site.url("/robots.txt"))  # not a page: not counted
    assert site.mutations()["applied"] == []
    first = [card["url"] for card in cards(fetch(site.listing_url(5)).text)]
    (applied,) = site.mutations()["applied"]
    assert len(applied["added"]) == 5
    assert [card["url"] for card in cards(fetch(site.listing_url(1)).text)][:5] == applied["added"]
    assert first != [card["url"] for card in cards(fetch(site.listing_url(5)).text)]


def test_bad_mutation_triggers_are_refused(site: SimulatedSite) -> None:
    for body in ({"remove": 1, "after_list_page": 0}, {"add": 1, "after_requests": "x"}):
        with pytest.raises(ValueError, match="400"):
            site._api("/__sim__/mutate", body)
    with pytest.raises(ValueError, match="at most one"):
        site._api("/__sim__/mutate", {"add": 1, "after_requests": 1, "after_list_page": 1})


def test_the_removed_products_truth(site: SimulatedSite) -> None:
    before = {record["url"]: record for record in site.truth()}
    removed = site.mutate(remove=3)["removed"]
    site.mutate(change=50)
    records = site.removed()
    assert [record["url"] for record in records] == removed
    # as they were when removed (a later change does not touch them)
    assert records == [before[path] for path in removed]


def test_markup_drift_renames_what_the_real_site_uses(site: SimulatedSite) -> None:
    path = site.truth()[0]["url"]
    assert len(cards(fetch(site.listing_url(1)).text)) == 12
    site.set_faults(drift="list")
    page = fetch(site.listing_url(1)).text
    assert cards(page) == []  # no article.product any more
    assert page.count('class="catalog-card') == 12
    assert "post-feed" in page  # the container stays: the page still looks like a listing
    normal = detail_record(fetch(site.url(path)).text, path)

    site.set_faults(drift="detail")
    page = fetch(site.url(path)).text
    assert "entry-product-details" not in page
    assert "product-certificates-table" not in page
    assert 'class="product-specs"' in page or 'class="product-specs-table"' in page
    assert "entry-title" in page

    site.set_faults(drift="labels")
    page = fetch(site.url(path)).text
    labels = re.findall(r'<span class="label">([^<]*)</span>|<tr><td>([^<]*)</td>', page)
    shown = {label or cell for label, cell in labels}
    assert {"Certification Number", "VID", "PID"} <= shown
    assert "entry-company" not in page
    site.set_faults(drift="none")
    assert detail_record(fetch(site.url(path)).text, path) == normal


@pytest.mark.parametrize(("past_end", "status"), [("404", 404), ("redirect", 302)])
def test_hidden_listing_pages_answer_as_past_the_end(
    site: SimulatedSite, past_end: str, status: int
) -> None:
    site.set_faults(hide_pages="3-4", past_end=past_end)
    assert site.faults()["hide_pages"] == "3-4"
    assert [fetch(site.listing_url(n)).status for n in (2, 3, 4, 5)] == [200, status, status, 200]
    site.set_faults(hide_pages=None)
    assert fetch(site.listing_url(3)).status == 200


def test_a_pagination_that_claims_a_billion_pages(site: SimulatedSite) -> None:
    site.set_faults(claim_last_page=999_999_999)
    page = fetch(site.listing_url(1)).text
    assert "/page/999999999/" in page
    assert len(cards(page)) == 12
    assert fetch(site.listing_url(11)).status == 404  # the catalogue did not change
