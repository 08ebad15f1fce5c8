"""Rendering JavaScript-only pages in the system's Chromium, through scrapy-playwright.

Some answers of a site hold no content, only a script that builds it (a bot
check, a client-side rendered listing). The content check
(:mod:`matter_crawler.parsing.content`) reports such a page as an "empty
shell"; the classified retry (:mod:`matter_crawler.middlewares.retry`) then asks
:func:`render_or_explain` for a copy of the request that scrapy-playwright
renders in a browser, or, when no browser can render it, for the reason the
dead letter will carry.

Pieces, each off or free when not needed:

- :class:`Rendering`, a Scrapy add-on (``ADDONS``): finds the browser
  (:func:`find_browser`) and, when there is one, installs the download handler
  and scrapy-playwright's settings, at add-on priority so ``-s`` still wins.
  Without a browser the crawl runs unchanged, and pages that needed one are
  dead-lettered at once (fetching them again brings back the same shell) with a
  reason that says so.
- :class:`LazyPlaywrightDownloadHandler`: scrapy-playwright's handler, with three
  changes. Playwright (a Node.js driver, and later Chromium) starts at the first
  request that asks for a browser, not when the engine starts: a crawl that never
  renders pays for neither (``bench/rendering_overhead.py``, 3,251 pages: the
  stock handler, which starts the driver with the engine, cost 4-11 % more CPU
  than bare Scrapy; the lazy one stayed within noise of it). And a request with
  ``dont_redirect`` gets the redirect the server answered, as from Scrapy's own
  handler, instead of the page the browser followed it to (a listing page past
  the end redirects to page 1). And a browser that does not start (missing
  libraries, a broken or missing executable) raises :class:`BrowserLaunchError`
  for that render and every later one, without starting it again: the retry
  classifies it ``config`` and dead-letters the page at once, with a reason that
  says the browser is broken and what it printed.
- :class:`ForcedRenderingMiddleware`: with ``RENDERING_FORCE``, every listing and
  product page goes through the browser (for a site that builds every page with
  JavaScript); otherwise not loaded at all.

The browser runs the target's JavaScript, so it is confined (docs/security.md):

- its network: every request a page makes (fetch, XHR, forms, navigations,
  frames, images, scripts, beacons, event sources, popups) goes through
  :func:`confine_page`'s routes (``playwright_page_init_callback``), which abort
  it unless its origin is the crawled site's (``CSA_BASE_URL``) or one of
  ``RENDERING_ALLOWED_ORIGINS``; WebSockets likewise (``route_web_socket``);
  service workers are blocked. Underneath, what the routes never see (a
  redirect the browser follows, WebRTC) meets Chromium's own proxy settings:
  every host but the allowed origins goes to a proxy port that refuses
  connections (loopback included: ``<-loopback>``), and WebRTC may not use UDP
  outside that proxy. Stats ``render/blocked``, ``render/blocked/<type>``;
- its environment: only ``RENDERING_BROWSER_ENV`` variables reach it, so no
  ``SCRAPYD_PASSWORD`` or database credentials;
- its sandbox: on (``RENDERING_SANDBOX``), except as root where Chromium cannot
  run it (``auto`` then turns it off and says so).

Why the browser is waited on with a function, not ``wait_for_selector``: the
content selector never appears on an error page (a 404 past the end, a 503), so
a plain selector wait would time out on every such page. The function returns
as soon as the content is there *or* the page's own navigation answered with an
error or redirect status, and the status then reaches the retry as usual.

Settings:

====================================  ============================================================
``RENDERING_ENABLED``                 ``True``: render JavaScript-only pages when a browser is
                                      found; ``False``: never (no handler installed)
``RENDERING_FORCE``                   ``False``; ``True`` renders every listing and product page
                                      (fails at start when no browser is found)
``PLAYWRIGHT_BROWSER_PATH``           the Chromium executable; else the environment variable of
                                      the same name; else ``/usr/bin/chromium``. A path that does
                                      not exist means "no browser" (no fallback)
``RENDERING_HEADLESS``                ``True``
``RENDERING_WAIT_TIMEOUT``            15.0 s: longest wait for the content after the load event
``PLAYWRIGHT_MAX_CONTEXTS``           1 (scrapy-playwright's setting, set by the add-on)
``PLAYWRIGHT_MAX_PAGES_PER_CONTEXT``  4 pages open at once (likewise)
``PLAYWRIGHT_ABORT_REQUEST``          :func:`skip_resource`: no stylesheets, images, fonts
``RENDERING_SANDBOX``                 ``auto``: Chromium's sandbox on, except as root; ``True``,
                                      ``False``
``RENDERING_ALLOWED_ORIGINS``         ``[]``: origins the browser may reach besides
                                      ``CSA_BASE_URL``'s
``RENDERING_BROWSER_ENV``             the environment variables the browser gets (``*`` at the
                                      end: a prefix)
====================================  ============================================================

Stats: ``render/requested``, ``render/requested/<stage>``, ``render/forced``,
``render/unavailable``, ``render/blocked``, ``render/blocked/<resource type>``, plus
scrapy-playwright's ``playwright/...``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import shutil
import socket
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy.exceptions import NotConfigured
from scrapy.http import HtmlResponse, Request, Response
from scrapy.utils.misc import load_object
from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler
from scrapy_playwright.page import PageMethod

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Route, WebSocketRoute
    from playwright.async_api import Request as PlaywrightRequest
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

BROWSER_PATH_SETTING = "PLAYWRIGHT_BROWSER_PATH"
#: Where Debian's ``chromium`` package puts the browser (``scripts/setup.sh`` installs it).
DEFAULT_BROWSER_PATHS = ("/usr/bin/chromium",)
HANDLER_PATH = f"{__name__}.LazyPlaywrightDownloadHandler"
NO_BROWSER = f"no browser to render it (install chromium or set {BROWSER_PATH_SETTING})"
BROKEN_BROWSER_FIX = f"repair or reinstall chromium, or set {BROWSER_PATH_SETTING} to a working one"
#: A failed launch's message: the browser's own stderr lines, and how its process ended.
BROWSER_STDERR_LINE = re.compile(r"^(?:\s*- )?\[pid=\d+\]\[err\] (.*\S)", re.MULTILINE)
BROWSER_EXIT = re.compile(r"<process did exit: exitCode=(-?\d+|null), signal=(\w+)>")
#: What Chromium says when asked for its sandbox as root, and what to do about it.
SANDBOX_AS_ROOT = "Running as root without --no-sandbox is not supported"
SANDBOX_AS_ROOT_FIX = (
    "Chromium's sandbox cannot run as root: run the crawl as a normal user, or set "
    "RENDERING_SANDBOX=auto (off as root)"
)
#: How much of the browser's stderr a dead-letter reason quotes.
BROWSER_STDERR_SHOWN = (3, 300)  # lines, characters

#: What a rendered page must show before its HTML is taken, per ``meta["stage"]``.
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
#: Keep Chromium off the network it would otherwise try at start (updates, sync,
#: field trials): here every such connection is refused, and elsewhere it is noise.
#: Playwright passes some of these itself; listing them says what we rely on.
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
)


#: WebRTC may not send UDP outside the proxy (which refuses everything): no STUN to loopback.
CONFINED_CHROMIUM_ARGS = ("--webrtc-ip-handling-policy=disable_non_proxied_udp",)
#: Context options of every rendering context: no service worker (its requests bypass
#: page routes), no downloads.
CONFINED_CONTEXT = {"service_workers": "block", "accept_downloads": False}
#: How many blocked requests of one page the log line names.
BLOCKED_SHOWN = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Pages a popup may not outlive; contexts whose popups are already routed.
_confined_contexts: weakref.WeakSet[BrowserContext] = weakref.WeakSet()


#: Resource types a render never needs: the content check and the parsers read the DOM.
#: Scripts still load (they build the page); the rest would only cost the site and us.
SKIPPED_RESOURCE_TYPES = frozenset({"stylesheet", "image", "font", "media"})


def skip_resource(request: PlaywrightRequest) -> bool:
    """``PLAYWRIGHT_ABORT_REQUEST``: abort the browser's fetches of styles, images and fonts."""
    return request.resource_type in SKIPPED_RESOURCE_TYPES


# -- confinement: what the browser may reach, know and do ---------------------------------


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


def browser_environment(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` named in ``names`` (``LC_*``: a prefix): nothing else."""
    patterns = [name.strip() for name in names if name.strip()]
    return {
        name: value
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }


def sandbox_wanted(setting: Any, euid: int) -> bool:
    """``RENDERING_SANDBOX``: ``auto`` means on, except as root (Chromium refuses it there)."""
    if str(setting).strip().lower() == "auto":
        return euid != 0
    return str(setting).strip().lower() in ("1", "true", "yes", "on")


_refusing_socket: socket.socket | None = None


def refusing_port() -> int:
    """A loopback port that refuses every connection, for as long as this process runs.

    The socket is bound but never listens: no other program can listen there,
    and a connection attempt gets a reset at once.
    """
    global _refusing_socket  # noqa: PLW0603 - one per process, kept open on purpose
    if _refusing_socket is None:
        _refusing_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _refusing_socket.bind(("127.0.0.1", 0))
    return _refusing_socket.getsockname()[1]


def proxy_args(origins: Iterable[str]) -> list[str]:
    """Chromium flags: every host but ``origins`` (loopback too) through a proxy that refuses."""
    bypass = ["<-loopback>"]  # loopback is not exempt from the proxy
    for origin in origins:
        bypass.append(origin.split("://", 1)[1])  # host:port
    return [
        f"--proxy-server=http://127.0.0.1:{refusing_port()}",
        f"--proxy-bypass-list={';'.join(bypass)}",
    ]


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


class BrowserLaunchError(Exception):
    """The browser did not start: missing libraries, a broken or missing executable.

    Retrying cannot mend it, so the failure class is ``config``
    (:mod:`matter_crawler.middlewares.classify`): the page is dead-lettered at
    once, and the message, which becomes the dead-letter reason, says so.
    """


def launch_failure(executable: str, error: PlaywrightError) -> str:
    """Why the browser did not start, briefly: how its process ended and what it printed."""
    message = error.message
    exited = BROWSER_EXIT.search(message)
    if exited is None:  # e.g. "Failed to launch chromium because executable doesn't exist at ..."
        detail = message.split("\n", 1)[0].removeprefix("BrowserType.launch: ")
    elif exited[1] == "null":
        detail = f"{executable} was killed by {exited[2]} at start"
    else:
        detail = f"{executable} exited with code {exited[1]} at start"
    browser_log = message.split("\nCall log:", 1)[0]  # the call log repeats the browser's lines
    lines, characters = BROWSER_STDERR_SHOWN
    # (when Playwright summarises the failure instead, the browser's lines are in the call log)
    found = BROWSER_STDERR_LINE.findall(browser_log) or BROWSER_STDERR_LINE.findall(message)
    printed = list(dict.fromkeys(found))[:lines]
    if printed:
        detail += ": " + " | ".join(printed)[:characters]
    if SANDBOX_AS_ROOT in message:
        return f"the browser cannot start: {detail}; {SANDBOX_AS_ROOT_FIX}"
    return f"the browser is broken: {detail}; {BROKEN_BROWSER_FIX}"


def find_browser(settings: BaseSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The Chromium executable to use, or None.

    ``PLAYWRIGHT_BROWSER_PATH`` (setting, then environment variable) wins when
    set, even when it names nothing: pointing it at a missing path is how a
    crawl says "no browser" on a machine that has one.
    """
    environ = os.environ if environ is None else environ
    configured = settings.get(BROWSER_PATH_SETTING) or environ.get(BROWSER_PATH_SETTING)
    candidates = (configured,) if configured else DEFAULT_BROWSER_PATHS
    for candidate in candidates:
        path = shutil.which(candidate) if os.sep not in candidate else candidate
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def rendering_available(settings: BaseSettings) -> bool:
    """Whether ``meta["playwright"]`` renders: a scrapy-playwright handler serves http(s)."""
    handlers = settings.getwithbase("DOWNLOAD_HANDLERS")
    for scheme in ("http", "https"):
        path = handlers.get(scheme)
        if path is None:
            continue
        handler = load_object(path) if isinstance(path, str) else path
        if isinstance(handler, type) and issubclass(handler, ScrapyPlaywrightDownloadHandler):
            return True
    return False


def render_meta(stage: str | None, wait_timeout: float, origins: list[str]) -> dict[str, Any]:
    """The meta that makes scrapy-playwright render a page of ``stage`` and wait for its content.

    The page is not included in the response (no ``playwright_include_page``), so
    scrapy-playwright closes it once the HTML is taken, also on failure. It is
    confined to ``origins`` (:func:`confine_page`); all of it is plain data, so
    it pickles into JOBDIR.
    """
    meta: dict[str, Any] = {
        "playwright": True,
        "playwright_page_init_callback": f"{__name__}.confine_page",
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
        # "content" is FailureClass.CONTENT (classify imports this module, not the reverse)
        policies["content"] = {**policies.get("content", {}), "attempts": 1}
        request.meta["retry_policies"] = policies
        if not settings.getbool("RENDERING_ENABLED", True):
            return f"{reason}; rendering is off (RENDERING_ENABLED=False)"
        return f"{reason}; {NO_BROWSER}"
    stage = request.meta.get("stage")
    rendered = request.replace(dont_filter=True)
    rendered.meta.update(
        render_meta(
            stage, settings.getfloat("RENDERING_WAIT_TIMEOUT", 15.0), rendering_origins(settings)
        )
    )
    crawler.stats.inc_value("render/requested")
    crawler.stats.inc_value(f"render/requested/{stage}")
    logger.debug("Rendering %s in the browser: %s", request.url, reason)
    return rendered


class Rendering:
    """Scrapy add-on: install scrapy-playwright when a browser is there (see the module doc)."""

    def update_settings(self, settings: BaseSettings) -> None:
        if not settings.getbool("RENDERING_ENABLED", True):
            if settings.getbool("RENDERING_FORCE"):
                raise ValueError("RENDERING_FORCE needs RENDERING_ENABLED")
            return
        browser = find_browser(settings)
        if browser is None:
            if settings.getbool("RENDERING_FORCE"):
                raise ValueError(f"RENDERING_FORCE is on but there is {NO_BROWSER}")
            logger.info("No browser found: pages built by JavaScript will be dead-lettered")
            return
        for scheme in ("http", "https"):
            settings["DOWNLOAD_HANDLERS"].set(scheme, HANDLER_PATH, "addon")
        sandbox = sandbox_wanted(settings.get("RENDERING_SANDBOX"), os.geteuid())
        if not sandbox:
            logger.warning(
                "Rendering with Chromium's sandbox off (%s): a page's script that broke out "
                "of the renderer would run with this user's rights",
                "RENDERING_SANDBOX=False"
                if os.geteuid() != 0
                else "running as root, where Chromium cannot run it; run the crawl as a "
                "normal user to have it",
            )
        launch_options = {
            "executable_path": browser,
            "headless": settings.getbool("RENDERING_HEADLESS", True),
            "chromium_sandbox": sandbox,
            "env": browser_environment(settings.getlist("RENDERING_BROWSER_ENV"), os.environ),
            "args": [
                *CHROMIUM_ARGS,
                *CONFINED_CHROMIUM_ARGS,
                *proxy_args(rendering_origins(settings)),
            ],
        }
        settings.setdict(
            {
                "PLAYWRIGHT_BROWSER_TYPE": "chromium",
                "PLAYWRIGHT_LAUNCH_OPTIONS": launch_options,
                # a page is a Chromium renderer (~0.3 CPU s each here): few, whatever the profile
                "PLAYWRIGHT_MAX_CONTEXTS": 1,
                "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 4,
                "PLAYWRIGHT_ABORT_REQUEST": f"{__name__}.skip_resource",
                # Scrapy's DOWNLOAD_TIMEOUT does not reach into the browser
                "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": settings.getfloat("DOWNLOAD_TIMEOUT")
                * 1000,
            },
            priority="addon",
        )
        logger.info(
            "Rendering %s in %s",
            "every page" if settings.getbool("RENDERING_FORCE") else "JavaScript-only pages",
            browser,
        )


class LazyPlaywrightDownloadHandler(ScrapyPlaywrightDownloadHandler):
    """scrapy-playwright's handler, starting Playwright only when a request needs a browser.

    Requests without ``meta["playwright"]`` take the parent's plain HTTP path
    (Scrapy's HTTP/1.1 handler) and never start the driver.
    """

    lazy = True

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.crawl_stats = crawler.stats
        self._start_lock = asyncio.Lock()
        self._playwright_started = False
        self._launch_failure: str | None = None  # why the browser did not start, once it failed

    async def _maybe_launch_in_thread(self) -> None:
        """``engine_started``: the parent starts Playwright here; we wait for a render."""

    async def _maybe_launch_browser(self) -> None:
        """The parent's, but a browser that fails to start raises BrowserLaunchError, for good.

        Callers are serialised by the parent's ``context_launch_lock``, so after
        a failure no other render starts the browser again.
        """
        if self._launch_failure is not None:
            raise BrowserLaunchError(self._launch_failure)
        try:
            await super()._maybe_launch_browser()
        except PlaywrightTimeoutError:
            raise  # a slow start on a busy machine: transient, the next render tries again
        except PlaywrightError as error:
            executable = self.config.launch_options.get("executable_path", "the browser")
            self._launch_failure = launch_failure(str(executable), error)
            logger.error("%s. Pages built by JavaScript are dead-lettered", self._launch_failure)
            raise BrowserLaunchError(self._launch_failure) from error

    async def _download_request(self, request: Request, spider: Spider | None = None) -> Response:
        async with self._start_lock:
            if not self._playwright_started:
                await self._launch()
                self._playwright_started = True
        try:
            response = await super()._download_request(request, spider)
        finally:
            self._report_blocked(request)
        if request.meta.get("dont_redirect") and request.meta.get("redirect_urls"):
            return self._redirect_not_followed(request, response)
        return response

    def _report_blocked(self, request: Request) -> None:
        """Count and log what :func:`confine_page` kept the page from reaching."""
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
    def _redirect_not_followed(request: Request, response: Response) -> Response:
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


class ForcedRenderingMiddleware:
    """With ``RENDERING_FORCE``, send every listing and product page through the browser."""

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
        return cls(crawler, settings.getfloat("RENDERING_WAIT_TIMEOUT", 15.0))

    def process_request(self, request: Request) -> None:
        stage = request.meta.get("stage")
        if stage in CONTENT_SELECTORS and not request.meta.get("playwright"):
            request.meta.update(render_meta(stage, self.wait_timeout, self.origins))
            self.crawler.stats.inc_value("render/forced")
