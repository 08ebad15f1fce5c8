"""``ForcedRenderingMiddleware``: with ``RENDERING_FORCE``, every page goes through the browser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from scrapy.exceptions import NotConfigured

from .browser import NO_BROWSER
from .confine import rendering_origins
from .request_meta import CONTENT_SELECTORS, render_meta, rendering_available

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request


class ForcedRenderingMiddleware:
    """With ``RENDERING_FORCE``, send every listing and product page through the browser.

    For a site that builds every page with JavaScript; otherwise not loaded at all
    (``NotConfigured``). robots.txt is not sent through it. Stat ``render/forced``.
    """

    def __init__(self, crawler: Crawler, wait_timeout: float) -> None:
        self.crawler = crawler
        self.wait_timeout = wait_timeout
        self.origins = rendering_origins(crawler.settings)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("RENDERING_FORCE"):
            raise NotConfigured
        if not rendering_available(settings):
            raise NotConfigured(f"RENDERING_FORCE is on but there is {NO_BROWSER}")
        return cls(crawler, settings.getfloat("RENDERING_WAIT_TIMEOUT"))

    def process_request(self, request: Request) -> None:
        stage = request.meta.get("stage")
        if stage in CONTENT_SELECTORS and not request.meta.get("playwright"):
            request.meta.update(render_meta(stage, self.wait_timeout, self.origins))
            self.crawler.stats.inc_value("render/forced")
