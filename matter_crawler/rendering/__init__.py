"""Rendering JavaScript-only pages in the system's Chromium, through scrapy-playwright.

Some answers of a site hold no content, only a script that builds it (a bot
check, a client-side rendered listing). The content check
(:mod:`matter_crawler.parsing.content`) reports such a page as an "empty
shell"; the classified retry (:mod:`matter_crawler.middlewares.retry`) then asks
:func:`~.request_meta.render_or_explain` for a copy of the request that
scrapy-playwright renders in a browser, or, when no browser can render it, for
the reason the dead letter will carry. docs/rendering.md tells the whole story.

One module per component, each off or free when not needed:

==================  ==============================================================
``addon``           :class:`Rendering` (``ADDONS``): finds the browser and, when there
                    is one, installs the handler and scrapy-playwright's settings at
                    add-on priority (``-s`` still wins). Without a browser the crawl
                    runs unchanged and pages that needed one are dead-lettered at once.
``handler``         :class:`LazyPlaywrightDownloadHandler`: scrapy-playwright's
                    handler; answers a ``dont_redirect`` request with the redirect,
                    counts what the confinement blocked.
``provider``        :class:`LazyBrowserProvider` (``PLAYWRIGHT_BROWSER_PROVIDER``):
                    Playwright starts at the first render, not with the engine; a
                    browser that does not start is :class:`BrowserLaunchError` for good.
``middleware``      :class:`ForcedRenderingMiddleware`: with ``RENDERING_FORCE``,
                    every listing and product page goes through the browser.
``request_meta``    what a rendered request carries, :func:`render_or_explain` for
                    the retry, :func:`rendering_available`.
``confine``         what a rendered page may reach (``confine_page``, the origins) and
                    fetch (``skip_resource``).
``browser``         finding Chromium, its arguments, environment and sandbox, and why
                    it did not start.
==================  ==============================================================

Only ``handler`` and ``provider`` import Playwright and scrapy-playwright, and only
scrapy-playwright loads them (the add-on names them by dotted path): the retry,
the classifier and a crawl without rendering never import either
(``tests/crawl/test_rendering_imports.py``).

The browser runs the target's JavaScript, so it is confined (docs/security.md):
its network (``confine_page``'s routes, and underneath Chromium's proxy settings:
every host but the allowed origins goes to a port that refuses connections, and
WebRTC may not use UDP outside it; stats ``render/blocked``,
``render/blocked/<type>``); its environment (only ``RENDERING_BROWSER_ENV``); its
sandbox (``RENDERING_SANDBOX``).

Why the browser is waited on with a function, not ``wait_for_selector``: the
content selector never appears on an error page (a 404 past the end, a 503), so
a plain selector wait would time out on every such page. The function returns
as soon as the content is there *or* the page's own navigation answered with an
error or redirect status, and the status then reaches the retry as usual.

Settings (defaults in ``matter_crawler/settings.py``, table in docs/rendering.md):
``RENDERING_ENABLED``, ``RENDERING_FORCE``, ``PLAYWRIGHT_BROWSER_PATH``,
``RENDERING_HEADLESS``, ``RENDERING_WAIT_TIMEOUT``, ``RENDERING_SANDBOX``,
``RENDERING_ALLOWED_ORIGINS``, ``RENDERING_BROWSER_ENV``; the add-on sets
scrapy-playwright's ``PLAYWRIGHT_BROWSER_TYPE``, ``PLAYWRIGHT_BROWSER_PROVIDER``,
``PLAYWRIGHT_LAUNCH_OPTIONS``, ``PLAYWRIGHT_MAX_CONTEXTS`` (1),
``PLAYWRIGHT_MAX_PAGES_PER_CONTEXT`` (4), ``PLAYWRIGHT_ABORT_REQUEST`` and
``PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT``.

Stats: ``render/requested``, ``render/requested/<stage>``, ``render/forced``,
``render/unavailable``, ``render/blocked``, ``render/blocked/<resource type>``, plus
scrapy-playwright's ``playwright/...``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Dotted paths of the former single module ``matter_crawler.rendering`` that settings
#: and pickled requests name (``ADDONS``, ``DOWNLOADER_MIDDLEWARES``,
#: ``DOWNLOAD_HANDLERS``, ``PLAYWRIGHT_ABORT_REQUEST``, a JOBDIR's
#: ``playwright_page_init_callback``): still loadable, imported only when asked for,
#: so importing this package loads no Playwright.
_MOVED = {
    "Rendering": "addon",
    "ForcedRenderingMiddleware": "middleware",
    "LazyPlaywrightDownloadHandler": "handler",
    "confine_page": "confine",
    "skip_resource": "confine",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__name__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
