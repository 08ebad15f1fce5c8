"""Incremental refresh, change history and delisting against a mutating simulated site."""

from __future__ import annotations

import json

import pytest

from ..helpers import crawl_runs, database_differences, query, run_crawl


@pytest.mark.slow
def test_incremental_full_refresh_and_delisting(simulated_site, database_url):
    site = simulated_site(products=240, seed=21)
    run_crawl(site.base_url, database_url).check()
    assert database_differences(database_url, site.truth()) == []

    # 10 new certifications at the front push every product back 10 slots
    added = site.mutate(add=10)["added"]
    site.reset_stats()
    run_crawl(site.base_url, database_url).check()
    account = site.stats()["by_kind"]
    assert account.get("list", 0) <= 3
    # the new products' pages, and the one oldest page REFRESH_MAX_AGE_DAYS reads again
    assert account.get("detail", 0) == 10 + 1
    assert database_differences(database_url, site.truth()) == []
    run = crawl_runs(database_url)[-1]
    assert (run["mode"], run["products_new"]) == ("incremental", 10)
    newest = {
        url
        for (url,) in query(
            database_url, f"select url from products where first_seen_run_id = {run['id']}"
        )
    }
    assert {url.split(site.base_url, 1)[1] for url in newest} == set(added)

    # 5 products change on their detail pages only: a full refresh records exactly those changes
    changed = site.mutate(change=5)["changed"]
    run_crawl(site.base_url, database_url, args={"mode": "full", "refresh": "all"}).check()
    refresh = crawl_runs(database_url)[-1]
    recorded = query(
        database_url,
        f"select product_url, field, old_value, new_value from product_changes where run_id = {refresh['id']}",
    )
    assert {(url.split(site.base_url, 1)[1], field) for url, field, _, _ in recorded} == {
        (path, field) for path, fields in changed.items() for field in fields
    }
    truth = {record["url"]: record for record in site.truth()}
    for url, field, old, new in recorded:
        assert json.loads(new) == truth[url.split(site.base_url, 1)[1]][field]
        assert old != new
    assert refresh["products_changed"] == 5
    assert database_differences(database_url, site.truth()) == []

    # products the listing no longer shows are marked delisted by a full run, not deleted
    removed = site.mutate(remove=3)["removed"]
    run_crawl(site.base_url, database_url, args={"mode": "full"}).check()
    delisted = query(database_url, "select url from products where delisted_at is not null")
    assert {url.split(site.base_url, 1)[1] for (url,) in delisted} == set(removed)
    assert crawl_runs(database_url)[-1]["products_delisted"] == 3
    assert query(database_url, "select count(*) from products") == [(250,)]
    assert database_differences(database_url, site.truth()) == []  # compares listed products

    # an incremental run never delists (it does not see the whole listing)
    site.mutate(remove=2)
    run_crawl(site.base_url, database_url).check()
    assert len(query(database_url, "select url from products where delisted_at is not null")) == 3


def test_a_product_the_listing_shows_is_not_delisted_when_its_page_fails(
    simulated_site, database_url
):
    site = simulated_site(products=60, seed=4)
    run_crawl(site.base_url, database_url).check()
    # every product page now fails for good; the listing still shows every product
    site.set_faults(error_rate=1.0, error_statuses="500", only="detail")
    fail_at_once = {
        "RETRY_POLICIES": {"server": {"attempts": 1}},
        "CIRCUIT_BREAKER_ENABLED": False,
    }
    run_crawl(
        site.base_url, database_url, args={"mode": "full", "refresh": "all"}, settings=fail_at_once
    ).check()
    run = crawl_runs(database_url)[-1]
    assert run["dead_letters"] == 60
    assert query(database_url, "select count(*) from products where delisted_at is null") == [(60,)]
    assert query(
        database_url, f"select count(*) from products where last_seen_run_id = {run['id']}"
    ) == [(60,)]
