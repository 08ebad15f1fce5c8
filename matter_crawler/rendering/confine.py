"""What a rendered page may reach: the crawled site's origin and ``RENDERING_ALLOWED_ORIGINS``.

:func:`confine_page` is every rendered request's ``playwright_page_init_callback``
(docs/security.md); :func:`skip_resource` is ``PLAYWRIGHT_ABORT_REQUEST``. Both are
loaded by scrapy-playwright by their dotted path, only when a page is rendered; the
origin helpers are read by the add-on and the retry too, so this module imports
Playwright only inside the one function that needs it at run time.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Route, WebSocketRoute
    from playwright.async_api import Request as PlaywrightRequest
    from scrapy.http import Request
    from scrapy.settings import BaseSettings

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Context options of every rendering context: no service worker (its requests bypass
#: page routes), no downloads.
CONFINED_CONTEXT = {"service_workers": "block", "accept_downloads": False}
#: Resource types a render never needs: the content check and the parsers read the DOM.
#: Scripts still load (they build the page); the rest would only cost the site and us.
SKIPPED_RESOURCE_TYPES = frozenset({"stylesheet", "image", "font", "media"})
#: Contexts whose popups are already routed (a popup may not outlive its first requests).
_confined_contexts: weakref.WeakSet[BrowserContext] = weakref.WeakSet()


def skip_resource(request: PlaywrightRequest) -> bool:
    """``PLAYWRIGHT_ABORT_REQUEST``: abort the browser's fetches of styles, images and fonts."""
    return request.resource_type in SKIPPED_RESOURCE_TYPES


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of an http(s) or ws(s) URL (ws as http), None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def rendering_origins(settings: BaseSettings) -> list[str]:
    """The origins the browser may reach: ``CSA_BASE_URL``'s and ``RENDERING_ALLOWED_ORIGINS``."""
    origins = []
    for url in [settings.get("CSA_BASE_URL") or "", *settings.getlist("RENDERING_ALLOWED_ORIGINS")]:
        origin = origin_of(url)
        if origin is None:
            if url:
                raise ValueError(f"RENDERING_ALLOWED_ORIGINS: {url!r} is not an http(s) origin")
            continue
        if origin not in origins:
            origins.append(origin)
    return origins


async def confine_page(page: Page, request: Request) -> None:
    """``playwright_page_init_callback``: the page reaches only the allowed origins.

    Registered after scrapy-playwright's own route, so it runs first: a request
    to an allowed origin falls back to scrapy-playwright's handler (headers,
    ``PLAYWRIGHT_ABORT_REQUEST``), any other is aborted and noted in
    ``meta["rendering_blocked"]`` for the stats and the log.
    """
    allowed = set(request.meta.get("rendering_origins") or ())
    own = origin_of(request.url)
    if own is not None:
        allowed.add(own)
    blocked: list[tuple[str, str, str]] = request.meta.setdefault("rendering_blocked", [])

    async def route_request(route: Route, browser_request: PlaywrightRequest) -> None:
        if origin_of(browser_request.url) in allowed:
            await route.fallback()
            return
        blocked.append((browser_request.method, browser_request.url, browser_request.resource_type))
        await _abort(route, browser_request, page)

    async def route_websocket(websocket: WebSocketRoute) -> None:
        if origin_of(websocket.url) in allowed:
            websocket.connect_to_server()
            return
        blocked.append(("GET", websocket.url, "websocket"))
        await websocket.close()

    async def close_popup(popup: Page) -> None:
        await popup.close()

    await page.route("**", route_request)
    await page.route_web_socket("**", route_websocket)
    page.on("popup", close_popup)
    context = page.context
    if context not in _confined_contexts:  # popups' first requests, before they are closed
        _confined_contexts.add(context)
        await context.route("**", _refuse_unless(allowed))


async def _abort(route: Route, browser_request: PlaywrightRequest, page: Page | None) -> None:
    """Abort a request the page may not make.

    The page's own navigation is aborted as ``aborted``, which leaves the page as
    it was (any other error would put Chromium's error page in its place, and
    the render would take that); everything else as ``blockedbyclient``, which
    ends it at once (an ``aborted`` frame would hold the page's load event for ever).
    """
    # here, not at the top: the add-on and the retry import this module's origin helpers
    from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415

    main_navigation = False
    if page is not None and browser_request.is_navigation_request():
        try:
            main_navigation = browser_request.frame == page.main_frame
        except PlaywrightError:  # a popup's navigation, before its frame exists
            main_navigation = False
    await route.abort("aborted" if main_navigation else "blockedbyclient")


def _refuse_unless(allowed: set[str]) -> Any:
    async def route_request(route: Route, browser_request: PlaywrightRequest) -> None:
        if origin_of(browser_request.url) in allowed:
            await route.fallback()
        else:
            await _abort(route, browser_request, None)

    return route_request
