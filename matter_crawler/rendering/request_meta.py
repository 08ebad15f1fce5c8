"""What a rendered request asks of scrapy-playwright, and whether anything can render it.

Read by the classified retry (:func:`render_or_explain`) and the forced-rendering
middleware on every crawl, so nothing here imports Playwright or scrapy-playwright
at import time: a crawl without rendering never loads them (PageMethod is imported
where a render is asked for, and then scrapy-playwright's handler is loaded already).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from scrapy.utils.misc import load_object

from .browser import NO_BROWSER
from .confine import CONFINED_CONTEXT, rendering_origins

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

#: Dotted path of :func:`~matter_crawler.rendering.confine.confine_page` (plain data: it
#: pickles into JOBDIR with the request).
PAGE_INIT_CALLBACK = f"{__package__}.confine.confine_page"
#: What a rendered page must show before its HTML is taken, per ``meta["stage"]``
#: (docs/site-markup.md).
CONTENT_SELECTORS = {
    "list": "div.post-feed, .wp-block-crown-blocks-product-index",
    "detail": "div.entry-product-details, table.product-certificates-table",
}
#: True once the content is in the DOM, or the navigation answered an error or
#: redirect status (nothing will build content then; the retry sees the status).
WAIT_FOR_CONTENT = """(selector) => {
  const navigation = performance.getEntriesByType("navigation")[0];
  if (navigation && navigation.responseStatus >= 300) return true;
  return document.querySelector(selector) !== null;
}"""
#: The module of scrapy-playwright's handler class.
PLAYWRIGHT_HANDLER_MODULE = "scrapy_playwright.handler"


def rendering_available(settings: BaseSettings) -> bool:
    """Whether ``meta["playwright"]`` renders: a scrapy-playwright handler serves http(s).

    Loads the configured handler classes (which a crawl loads anyway), not
    scrapy-playwright: a subclass of its handler has imported its module, so while
    that module is not loaded no handler can be one.
    """
    handlers = settings.getwithbase("DOWNLOAD_HANDLERS")
    for scheme in ("http", "https"):
        path = handlers.get(scheme)
        if path is None:
            continue
        handler = load_object(path) if isinstance(path, str) else path
        module = sys.modules.get(PLAYWRIGHT_HANDLER_MODULE)
        if (
            module is not None
            and isinstance(handler, type)
            and issubclass(handler, module.ScrapyPlaywrightDownloadHandler)
        ):
            return True
    return False


def render_meta(stage: str | None, wait_timeout: float, origins: list[str]) -> dict[str, Any]:
    """The meta that makes scrapy-playwright render a page of ``stage`` and wait for its content.

    The page is not included in the response (no ``playwright_include_page``), so
    scrapy-playwright closes it once the HTML is taken, also on failure. It is
    confined to ``origins`` (:func:`~matter_crawler.rendering.confine.confine_page`);
    all of it is plain data, so it pickles into JOBDIR.
    """
    # only asked for once a handler of scrapy-playwright is installed (rendering_available)
    from scrapy_playwright.page import PageMethod  # noqa: PLC0415

    meta: dict[str, Any] = {
        "playwright": True,
        "playwright_page_init_callback": PAGE_INIT_CALLBACK,
        "playwright_context_kwargs": dict(CONFINED_CONTEXT),
        "rendering_origins": list(origins),
    }
    selector = CONTENT_SELECTORS.get(stage or "")
    if selector:
        meta["playwright_page_methods"] = [
            PageMethod(
                "wait_for_function", WAIT_FOR_CONTENT, arg=selector, timeout=wait_timeout * 1000
            )
        ]
    return meta


def render_or_explain(crawler: Crawler, request: Request, reason: str) -> Request | str:
    """For a page only JavaScript fills in: a copy of ``request`` to render, or why not.

    Called by the classified retry. The copy bypasses the duplicate filter and
    the retry's backoff (rendering is the remedy, not a repeat of what failed);
    a string is the dead-letter reason to use for the ordinary content retry.

    When nothing can render the page, fetching it again brings back the same
    shell: the request's ``content`` policy is then capped at one attempt
    (``meta["retry_policies"]``, the retry's per-request override), so the
    retry dead-letters it at once instead of after its backoffs.
    """
    settings = crawler.settings
    if request.meta.get("playwright"):
        return f"{reason}, even rendered in the browser"
    if not rendering_available(settings):
        crawler.stats.inc_value("render/unavailable")
        policies = dict(request.meta.get("retry_policies") or {})
        # "content" is FailureClass.CONTENT (the retry imports this module, not the reverse)
        policies["content"] = {**policies.get("content", {}), "attempts": 1}
        request.meta["retry_policies"] = policies
        if not settings.getbool("RENDERING_ENABLED"):
            return f"{reason}; rendering is off (RENDERING_ENABLED=False)"
        return f"{reason}; {NO_BROWSER}"
    stage = request.meta.get("stage")
    rendered = request.replace(dont_filter=True)
    rendered.meta.update(
        render_meta(stage, settings.getfloat("RENDERING_WAIT_TIMEOUT"), rendering_origins(settings))
    )
    crawler.stats.inc_value("render/requested")
    crawler.stats.inc_value(f"render/requested/{stage}")
    logger.debug("Rendering %s in the browser: %s", request.url, reason)
    return rendered
