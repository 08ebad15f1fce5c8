"""End to end: real crawls of the simulated site into real SQLite files."""

from __future__ import annotations

import pytest

from ..helpers import (
    crawl_command,
    crawl_runs,
    database_differences,
    from_a_large_process,
    query,
    run_crawl,
    run_crawl_command,
)


@pytest.mark.slow
def test_full_crawl_equals_ground_truth_and_a_second_crawl_adds_nothing(
    simulated_site, database_url
):
    site = simulated_site(products=420, seed=7, variant_rate=0.08)
    truth = site.truth()

    run_crawl(site.base_url, database_url).check()
    assert database_differences(database_url, truth) == []
    (run,) = crawl_runs(database_url)
    assert run["status"] == "finished"
    assert run["mode"] == "full"
    assert run["stage"] == "done"
    assert run["products_new"] == len(truth)
    assert run["pages_crawled"] == (len(truth) + 11) // 12
    assert run["pages_planned"] == (len(truth) + 11) // 12
    assert run["dead_letters"] == 0
    assert run["settings"]["CSA_BASE_URL"] == site.base_url
    stats = site.stats()
    assert stats["by_kind"]["detail"] == len(truth)  # each product page fetched once

    # the database now holds products: the default mode is incremental and finds nothing new
    site.reset_stats()
    run_crawl(site.base_url, database_url).check()
    second = crawl_runs(database_url)[-1]
    assert second["mode"] == "incremental"
    assert second["products_new"] == 0
    # no product page but the one REFRESH_MAX_AGE_DAYS reads again (a run fetches at least
    # one of the oldest when anything is stored: seconds since the previous run, rounded up)
    assert second["stats"]["refresh/pages"] == 1
    assert site.stats()["by_kind"].get("detail", 0) == 1

    # a full refresh fetches every page again: same rows, no duplicates, no changes
    run_crawl(site.base_url, database_url, args={"mode": "full", "refresh": "all"}).check()
    assert database_differences(database_url, truth) == []
    assert query(database_url, "select count(*), count(distinct url) from products") == [
        (len(truth), len(truth))
    ]
    assert query(database_url, "select count(*) from product_changes") == [(0,)]
    assert crawl_runs(database_url)[-1]["products_changed"] == 0


def test_page_limits(simulated_site, database_url):
    site = simulated_site(products=120, seed=3)
    truth = site.truth()  # newest first, as listed
    run_crawl(site.base_url, database_url, args={"start_page": 2, "max_pages": 2}).check()
    expected = {record["url"] for record in truth[12:36]}
    stored = {
        url.split(site.base_url, 1)[1] for (url,) in query(database_url, "select url from products")
    }
    assert stored == expected
    assert site.stats()["by_kind"]["list"] == 3  # page 1 (for the page count), 2 and 3

    run_crawl(site.base_url, database_url, args={"mode": "full", "max_products": 5}).check()
    assert query(database_url, "select count(*) from products where delisted_at is not null") == [
        (0,)
    ]
    assert crawl_runs(database_url)[-1]["products_new"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"mode": "quick"}, "mode must be one of auto, full, incremental"),
        ({"max_pages": "ten"}, "max_pages must be a whole number"),
        ({"start_page": 5, "end_page": 2}, "end_page (2) is before start_page (5)"),
    ],
)
def test_bad_spider_arguments_fail_clearly(args, message, tmp_path):
    result = run_crawl("http://127.0.0.1:9", f"sqlite:///{tmp_path}/x.sqlite3", args=args)
    assert result.returncode != 0
    assert message in result.output


@pytest.mark.slow
def test_per_domain_concurrency_holds_at_the_server(simulated_site, database_url):
    site = simulated_site(products=240, seed=5, latency_ms=40)
    settings = {
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "DOWNLOAD_DELAY": 0,
        "ADAPTIVE_CONCURRENCY_ENABLED": False,
    }
    run_crawl(site.base_url, database_url, settings=settings).check()
    assert site.stats()["max_concurrency"] == 2

    # control: Scrapy's own Downloader lets the domain exceed its limit (scrapy#6982);
    # if this fails, upstream fixed it and SlotConcurrencyDownloader can go
    site.reset_stats()
    stock = {**settings, "DOWNLOADER": "scrapy.core.downloader.Downloader"}
    run_crawl(
        site.base_url, database_url, settings=stock, args={"mode": "full", "refresh": "all"}
    ).check()
    assert site.stats()["max_concurrency"] > 2


def test_a_crawl_started_by_a_large_process_is_not_charged_its_memory(simulated_site, database_url):
    # Linux carries the peak of the image an exec replaces into the new program's
    # ru_maxrss, which Scrapy's MemoryUsage reads: its first check stopped this crawl
    # (memusage_exceeded) before its first request, under a limit the crawl never nears
    site = simulated_site(products=24, seed=2)
    limit_mb = 250
    command = crawl_command(site.base_url, database_url, settings={"MEMUSAGE_LIMIT_MB": limit_mb})
    result = run_crawl_command(from_a_large_process(command), database_url, 120)
    result.check()
    assert "Memory usage exceeded" not in result.output
    assert database_differences(database_url, site.truth()) == []
    (run,) = crawl_runs(database_url)
    assert run["status"] == "finished"
    assert 0 < run["stats"]["memusage/max"] < limit_mb * 2**20
