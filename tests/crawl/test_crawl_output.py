"""End to end: what a crawl's feed export holds (``scrapy crawl matter_products -O``).

Sightings (stored products a listing page showed) go to the store with a signal,
not as items: the feed holds products only, and ``item_scraped_count`` counts them.
"""

from __future__ import annotations

import json
from pathlib import Path

from itemadapter import ItemAdapter

from matter_crawler.items import ProductItem

from ..helpers import crawl_command, crawl_runs, query, run_crawl_command

PRODUCT_FIELDS = set(ItemAdapter.get_field_names_from_class(ProductItem))


def crawl_to_feed(base_url: str, database_url: str, feed: Path, **args: str) -> list[dict]:
    command = [*crawl_command(base_url, database_url, args=args), "-O", f"{feed}:jsonlines"]
    run_crawl_command(command, database_url, timeout=300).check()
    lines = feed.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_the_feed_holds_products_only_and_the_item_count_counts_them(
    simulated_site, database_url, tmp_path
):
    site = simulated_site(products=60, seed=5)
    truth = site.truth()

    # a first run with a product cap: the cards it does not fetch are sighted
    records = crawl_to_feed(
        site.base_url, database_url, tmp_path / "first.jsonl", mode="full", max_products="20"
    )
    first = crawl_runs(database_url)[-1]
    assert all(set(record) == PRODUCT_FIELDS for record in records)
    assert len(records) == 20
    assert first["stats"]["item_scraped_count"] == 20
    assert first["stats"]["sightings/count"] == len(truth) - 20

    # a full run over stored products: every card is a sighting of a stored product
    records = crawl_to_feed(site.base_url, database_url, tmp_path / "second.jsonl", mode="full")
    second = crawl_runs(database_url)[-1]
    assert all(set(record) == PRODUCT_FIELDS for record in records)
    assert second["stats"]["item_scraped_count"] == len(records)
    assert len(records) == len(truth) - 20 + second["stats"].get("refresh/pages", 0)
    # the sightings still reach the store: every product is seen by the second run
    assert second["stats"]["sightings/count"] == 20
    assert second["stats"]["store/sightings"] == 20
    assert query(
        database_url,
        f"select count(*) from products where last_seen_run_id = {second['id']} "
        "and delisted_at is null",
    ) == [(len(truth),)]
