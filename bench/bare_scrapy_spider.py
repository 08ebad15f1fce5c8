"""The baseline: matter-crawler's parsing in a bare Scrapy spider with stock components.

Same plan as ``matter_products`` on an empty database: listing page 1, whose
pagination gives the page count, then every listing page, then every product
page the listings link, each parsed with :mod:`matter_crawler.parsing`
(``parse_listing``, ``parse_detail``, ``build_product``). None of the project's
components: no settings module, no middlewares, pipelines or extensions of
ours, Scrapy's stock scheduler, downloader and retry. Items go to a JSON-lines
feed. Run it where no ``scrapy.cfg`` is found, so that only the settings given
on the command line apply, e.g. from a temporary directory::

    cd "$(mktemp -d)" && /path/to/.venv/bin/scrapy runspider /path/to/bench/bare_scrapy_spider.py \\
        -a base_url=http://127.0.0.1:8800 \\
        -s CONCURRENT_REQUESTS=16 -s CONCURRENT_REQUESTS_PER_DOMAIN=16 -s LOG_LEVEL=INFO \\
        -O products.jsonl:jsonlines

``bench/run_all.py`` runs it exactly this way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy import Request, Spider
from scrapy.http import Response

from matter_crawler.items import ProductItem
from matter_crawler.parsing import build_product, parse_detail, parse_listing
from matter_crawler.settings import CSA_LISTING_QUERY


class BareProductsSpider(Spider):
    name = "bare_products"

    def __init__(self, base_url: str = "http://127.0.0.1:8800", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def listing_url(self, page: int) -> str:
        path = "/csa-iot_products/" if page == 1 else f"/csa-iot_products/page/{page}/"
        return f"{self.base_url}{path}?{CSA_LISTING_QUERY}"

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.listing_url(1), callback=self.parse_first_listing)

    def parse_first_listing(self, response: Response) -> Iterator[Request]:
        listing = parse_listing(response.body, response.url, response.encoding)
        for page in range(2, (listing.last_page or 1) + 1):
            yield Request(self.listing_url(page), callback=self.parse_listing)
        yield from self._details(listing.cards)

    def parse_listing(self, response: Response) -> Iterator[Request]:
        listing = parse_listing(response.body, response.url, response.encoding)
        yield from self._details(listing.cards)

    def _details(self, cards: tuple[Any, ...]) -> Iterator[Request]:
        for card in cards:
            yield Request(card.url, callback=self.parse_detail)

    def parse_detail(self, response: Response) -> Iterator[ProductItem]:
        page = parse_detail(response.body, response.url, response.encoding)
        # the URL asked for (before any redirect) is the product's key, as in matter_products
        yield build_product(page, response.meta.get("redirect_urls", [response.url])[0])
