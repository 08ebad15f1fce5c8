"""``LazyBrowserProvider``: Playwright starts at the first render, and a broken browser for good.

scrapy-playwright's handler hands the browser's life to a provider
(``PLAYWRIGHT_BROWSER_PROVIDER``, its documented extension point): ``start()`` at
engine start, ``launch_browser()`` the first time a page needs a browser (behind the
handler's lock, and again after a disconnection), ``close()`` at the end. The stock
provider starts Playwright's Node.js driver in ``start()``, so every crawl with the
handler installed would pay for it (docs/rendering.md: 4-11 % more CPU on a crawl
that renders nothing). This one:

- starts the driver at the first ``launch_browser()`` (or persistent context), so a
  crawl that never renders never starts Node.js nor Chromium;
- turns a browser that does not start (missing libraries, a broken or missing
  executable) into :class:`~matter_crawler.rendering.browser.BrowserLaunchError`,
  for that render and every later one without starting it again: the retry
  classifies it ``config`` and dead-letters the page at once, with a reason that
  says what the browser printed. A launch that times out (a busy machine) stays a
  Playwright timeout: transient, the next render tries again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy_playwright.provider import PlaywrightBrowserProvider

from .browser import BrowserLaunchError, launch_failure

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext
    from scrapy_playwright.handler import Config

logger = logging.getLogger(__name__)


class LazyBrowserProvider(PlaywrightBrowserProvider):
    """scrapy-playwright's default provider, started lazily and failing for good (module doc)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.started = False
        self.launch_failure: str | None = None  # why the browser did not start, once it failed
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Awaited by the handler at engine start: Playwright waits for the first render."""

    async def launch_browser(self) -> Browser:
        if self.launch_failure is not None:
            raise BrowserLaunchError(self.launch_failure)
        await self._start_playwright()
        try:
            return await super().launch_browser()
        except PlaywrightTimeoutError:
            raise  # a slow start on a busy machine: transient, the next render tries again
        except PlaywrightError as error:
            executable = self.config.launch_options.get("executable_path", "the browser")
            self.launch_failure = launch_failure(str(executable), error)
            logger.error("%s. Pages built by JavaScript are dead-lettered", self.launch_failure)
            raise BrowserLaunchError(self.launch_failure) from error

    async def launch_persistent_context(self, context_kwargs: dict) -> BrowserContext:
        await self._start_playwright()
        return await super().launch_persistent_context(context_kwargs)

    async def _start_playwright(self) -> None:
        async with self._start_lock:  # persistent contexts are not behind the handler's lock
            if not self.started:
                logger.info("Starting Playwright for the first page to render")
                await super().start()
                self.started = True
