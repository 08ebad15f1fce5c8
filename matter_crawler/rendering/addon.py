"""The ``Rendering`` add-on: install scrapy-playwright when a browser is there.

Loaded by every crawl (``ADDONS``), so it names the handler and the browser
provider by dotted path and never imports them: without a browser, or with
``RENDERING_ENABLED=False``, the crawl never loads Playwright.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .browser import (
    CHROMIUM_ARGS,
    CONFINED_CHROMIUM_ARGS,
    NO_BROWSER,
    browser_environment,
    find_browser,
    proxy_args,
    sandbox_wanted,
)
from .confine import rendering_origins

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

HANDLER_PATH = f"{__package__}.handler.LazyPlaywrightDownloadHandler"
#: ``PLAYWRIGHT_BROWSER_PROVIDER``: starts Playwright at the first render, and turns a
#: browser that does not start into BrowserLaunchError (:mod:`.provider`).
PROVIDER_PATH = f"{__package__}.provider.LazyBrowserProvider"
SKIP_RESOURCE_PATH = f"{__package__}.confine.skip_resource"


class Rendering:
    """Scrapy add-on: install scrapy-playwright when a browser is there (see the package doc).

    Everything is set at add-on priority, so a value given with ``-s``, in
    ``settings.py`` or per scrapyd job wins.
    """

    def update_settings(self, settings: BaseSettings) -> None:
        if not settings.getbool("RENDERING_ENABLED"):
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
            "headless": settings.getbool("RENDERING_HEADLESS"),
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
                "PLAYWRIGHT_BROWSER_PROVIDER": PROVIDER_PATH,
                "PLAYWRIGHT_LAUNCH_OPTIONS": launch_options,
                # a page is a Chromium renderer (~0.3 CPU s each here): few, whatever the profile
                "PLAYWRIGHT_MAX_CONTEXTS": 1,
                "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 4,
                "PLAYWRIGHT_ABORT_REQUEST": SKIP_RESOURCE_PATH,
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
