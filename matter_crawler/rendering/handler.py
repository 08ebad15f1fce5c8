"""``LazyPlaywrightDownloadHandler``: scrapy-playwright's handler, with our redirects and blocks.

Installed by the add-on for http and https when a browser is found. Requests
without ``meta["playwright"]`` take the parent's plain path (Scrapy's HTTP/1.1
handler). Playwright itself starts at the first render, not with the engine: that
is the browser provider's doing (:mod:`.provider`, ``PLAYWRIGHT_BROWSER_PROVIDER``),
so a crawl that renders nothing never starts Node.js nor Chromium.

Two changes to a render's answer, both around the public ``download_request``:

- a request with ``dont_redirect`` gets the redirect the server answered, as from
  Scrapy's own handler, instead of the page the browser followed it to (a listing
  page past the end redirects to page 1);
- what :func:`~matter_crawler.rendering.confine.confine_page` kept the page from
  reaching is counted (``render/blocked``, ``render/blocked/<resource type>``) and
  logged once per page.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scrapy.http import HtmlResponse, Request, Response
from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

#: How many blocked requests of one page the log line names.
BLOCKED_SHOWN = 5


class LazyPlaywrightDownloadHandler(ScrapyPlaywrightDownloadHandler):
    """scrapy-playwright's handler, answering redirects as Scrapy does and reporting blocks.

    Not ``lazy`` (Scrapy builds it when the downloader starts, as the parent): the
    parent creates its browser provider when the engine starts, and the provider
    (:class:`~matter_crawler.rendering.provider.LazyBrowserProvider`) is what
    waits for the first render.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.crawl_stats = crawler.stats

    async def download_request(self, request: Request) -> Response:
        if not request.meta.get("playwright"):
            return await super().download_request(request)
        try:
            response = await super().download_request(request)
        finally:
            self.report_blocked(request)
        if request.meta.get("dont_redirect") and request.meta.get("redirect_urls"):
            return self.redirect_not_followed(request, response)
        return response

    def report_blocked(self, request: Request) -> None:
        """Count and log what ``confine_page`` kept the page from reaching."""
        blocked = request.meta.pop("rendering_blocked", None)
        if not blocked:
            return
        stats = self.crawl_stats
        for _method, _url, resource_type in blocked:
            stats.inc_value("render/blocked")
            stats.inc_value(f"render/blocked/{resource_type}")
        shown = ", ".join(f"{m} {u} ({t})" for m, u, t in blocked[:BLOCKED_SHOWN])
        more = f" and {len(blocked) - BLOCKED_SHOWN} more" if len(blocked) > BLOCKED_SHOWN else ""
        logger.info(
            "Blocked %d requests of the rendered page %s (not to the crawled site): %s%s",
            len(blocked),
            request.url,
            shown,
            more,
        )

    @staticmethod
    def redirect_not_followed(request: Request, response: Response) -> Response:
        """The first redirect the browser followed, as the answer to ``request``."""
        hops = request.meta.pop("redirect_urls")
        statuses = request.meta.pop("redirect_reasons", None) or [302]
        request.meta.pop("redirect_times", None)
        location = hops[1] if len(hops) > 1 else response.url
        return HtmlResponse(
            url=request.url,
            status=statuses[0] or 302,
            headers={"Location": location},
            body=b"",
            request=request,
            flags=["playwright", "redirect not followed"],
        )
