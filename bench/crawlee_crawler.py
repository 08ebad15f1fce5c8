"""The same crawl in Crawlee for Python: its ParselCrawler, matter-crawler's parse functions.

Same plan as ``matter_products`` on an empty database: listing page 1, whose
pagination gives the page count, then every listing page, then every product
page the listings link. Each response body goes through
:mod:`matter_crawler.parsing` (``parse_listing``, ``parse_detail``,
``build_product``) and every product is pushed to Crawlee's default dataset.
Everything else is Crawlee's stock configuration (its default HTTP client,
session pool, retries, file-system storage under ``--storage-dir``), except the
concurrency, fixed at ``--concurrency`` (min = max = desired) so that every
crawler of the benchmark runs the same number of requests at once::

    python bench/crawlee_crawler.py --base-url http://127.0.0.1:8800 \\
        --concurrency 16 --storage-dir /tmp/crawlee-storage

The products end up as one JSON file each in
``STORAGE_DIR/datasets/default/`` (Crawlee's file-system dataset);
:func:`common.read_dataset` reads them back.

``--crawler http`` uses Crawlee's ``HttpCrawler`` instead, which does not build
a parsel ``Selector`` of every page before the handler runs (the handler only
needs the body): Crawlee at its cheapest, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

from crawlee import ConcurrencySettings, Request, service_locator
from crawlee.configuration import Configuration
from crawlee.crawlers import BasicCrawlingContext, HttpCrawler, ParselCrawler

from matter_crawler.parsing import build_product, parse_detail, parse_listing
from matter_crawler.settings import CSA_LISTING_QUERY

_charset = re.compile(r"charset=([\w-]+)", re.IGNORECASE)


def listing_url(base_url: str, page: int) -> str:
    path = "/csa-iot_products/" if page == 1 else f"/csa-iot_products/page/{page}/"
    return f"{base_url}{path}?{CSA_LISTING_QUERY}"


def _encoding(context: BasicCrawlingContext) -> str | None:
    content_type = context.http_response.headers.get("content-type") or ""  # type: ignore[attr-defined]
    match = _charset.search(content_type)
    return match.group(1) if match else None


def build_crawler(base_url: str, concurrency: int, storage_dir: Path, kind: str) -> Any:
    # set globally first: the storage client and event manager Crawlee creates read it
    service_locator.set_configuration(
        Configuration(storage_dir=str(storage_dir), purge_on_start=True)
    )
    crawler_class = ParselCrawler if kind == "parsel" else HttpCrawler
    crawler = crawler_class(
        concurrency_settings=ConcurrencySettings(
            min_concurrency=concurrency,
            max_concurrency=concurrency,
            desired_concurrency=concurrency,
        ),
    )

    async def details(context: BasicCrawlingContext, cards: tuple[Any, ...]) -> None:
        await context.add_requests([Request.from_url(card.url, label="detail") for card in cards])

    @crawler.router.handler("first_listing")
    async def first_listing(context: BasicCrawlingContext) -> None:
        body = await context.http_response.read()  # type: ignore[attr-defined]
        listing = parse_listing(body, context.request.url, _encoding(context))
        await context.add_requests(
            [
                Request.from_url(listing_url(base_url, page), label="listing")
                for page in range(2, (listing.last_page or 1) + 1)
            ]
        )
        await details(context, listing.cards)

    @crawler.router.handler("listing")
    async def listing(context: BasicCrawlingContext) -> None:
        body = await context.http_response.read()  # type: ignore[attr-defined]
        page = parse_listing(body, context.request.url, _encoding(context))
        await details(context, page.cards)

    @crawler.router.handler("detail")
    async def detail(context: BasicCrawlingContext) -> None:
        body = await context.http_response.read()  # type: ignore[attr-defined]
        page = parse_detail(body, context.request.url, _encoding(context))
        item = build_product(page, context.request.url)
        await context.push_data(dataclasses.asdict(item))

    return crawler


async def crawl(options: argparse.Namespace) -> None:
    base_url = options.base_url.rstrip("/")
    crawler = build_crawler(base_url, options.concurrency, options.storage_dir, options.crawler)
    await crawler.run([Request.from_url(listing_url(base_url, 1), label="first_listing")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--storage-dir", type=Path, required=True)
    parser.add_argument("--crawler", choices=("parsel", "http"), default="parsel")
    options = parser.parse_args()
    asyncio.run(crawl(options))


if __name__ == "__main__":
    main()
