"""Mutations between crawls: visible in pages and in the truth at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sitesim.process import SimulatedSite

from .pageparse import cards, detail_record
from .webclient import fetch


@pytest.fixture(scope="module")
def mutable_site() -> Iterator[SimulatedSite]:
    with SimulatedSite(products=100, seed=11) as running:
        yield running


def test_add_remove_change(mutable_site: SimulatedSite) -> None:
    site = mutable_site
    before = site.truth()
    page_two_before = [c["url"] for c in cards(fetch(site.listing_url(2)).text)]
    result = site.mutate(add=3, remove=2, change=2)
    assert len(result["added"]) == 3
    assert len(result["removed"]) == 2
    assert len(result["changed"]) == 2
    after = site.truth()
    assert len(after) == len(before) + 1

    # Added: at the front, newest, certified after every earlier product.
    assert [r["url"] for r in after[:3]] == result["added"]
    assert min(r["certification_date"] for r in after[:3]) > before[0]["certification_date"]
    assert [c["url"] for c in cards(fetch(site.listing_url(1)).text)][:3] == result["added"]
    for path in result["added"]:
        record = next(r for r in after if r["url"] == path)
        assert detail_record(fetch(site.url(path)).text, path) == record

    # Every page shifted: page 2 now starts with what was further up.
    remaining = [r["url"] for r in after]
    assert [c["url"] for c in cards(fetch(site.listing_url(2)).text)] == remaining[12:24]
    assert page_two_before != remaining[12:24]

    # Removed: gone from the truth, the listing and the detail URL.
    listed = {c["url"] for n in range(1, 10) for c in cards(fetch(site.listing_url(n)).text)}
    for path in result["removed"]:
        assert path not in remaining
        assert path not in listed
        assert fetch(site.url(path)).status == 404
    assert len(listed) == len(after)

    # Changed: detail fields only, in truth and on the page; cards unchanged.
    old = {r["url"]: r for r in before}
    for path, fields in result["changed"].items():
        new = next(r for r in after if r["url"] == path)
        assert "firmware_version" in fields
        for field in fields:
            assert new[field] != old[path][field]
        unchanged = set(new) - set(fields)
        assert {k: new[k] for k in unchanged} == {k: old[path][k] for k in unchanged}
        assert detail_record(fetch(site.url(path)).text, path) == new


def test_mutations_are_deterministic() -> None:
    results = []
    for _ in range(2):
        with SimulatedSite(products=50, seed=4) as site:
            results.append((site.mutate(add=2, remove=1, change=3), site.mutate(add=1)))
    assert results[0] == results[1]
    assert results[0][0]["added"] != results[0][1]["added"]


def test_bad_mutations_are_rejected(mutable_site: SimulatedSite) -> None:
    count = len(mutable_site.truth())
    for bad in ({"remove": count}, {"add": -1}):
        with pytest.raises(ValueError, match="HTTP 400"):
            mutable_site.mutate(**bad)
    assert len(mutable_site.truth()) == count
