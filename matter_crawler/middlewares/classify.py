"""Failure classes: what went wrong with a download, decided once for every component.

Besides its class, a failure has a ``kind`` (:func:`exception_kind`): whether it was
an answer, no answer in time, or a broken connection, which the adaptive
controller reacts to differently.

The classified-retry middleware picks its policy by class, the circuit breaker
counts only classes that say the server is in trouble, and stats, dead letters
and events name the class.

==============  ===========================================================
``transient``   network trouble: timeouts, resets, refused connections, DNS,
                lost data, 408; Playwright's errors and timeouts while a
                browser renders a page
``server``      500, 502, 503, 504, 522, 524 and other 5xx
``throttled``   429, or 503 with a Retry-After header
``permanent``   400, 401, 403, 404, 410 and other 4xx, unexpected redirects,
                a page over DOWNLOAD_MAXSIZE: asking again gives the same answer
``content``     a 200 page without the expected markup: truncated, empty, an
                empty shell that JavaScript fills in
``config``      errors of our own making: unsupported scheme, bad URL,
                missing download handler, a browser that does not start
                (:class:`~matter_crawler.rendering.browser.BrowserLaunchError`)
==============  ===========================================================

Every crawl loads this module, rendering or not, so it does not import
Playwright: its errors are recognised once the rendering handler has loaded
Playwright (:func:`playwright_errors`), and before that no download can raise one.
"""

from __future__ import annotations

import builtins
import sys
from enum import StrEnum

from scrapy.core.downloader.handlers.http11 import TunnelError
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    NotConfigured,
    NotSupported,
    ResponseDataLossError,
    UnsupportedURLSchemeError,
)
from scrapy.http import Response
from twisted.internet import defer
from twisted.internet.error import (
    ConnectError,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from ..rendering.browser import BrowserLaunchError


class FailureClass(StrEnum):
    TRANSIENT = "transient"
    SERVER = "server"
    THROTTLED = "throttled"
    PERMANENT = "permanent"
    CONTENT = "content"
    CONFIG = "config"


TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    defer.TimeoutError,
    TimeoutError,
    TCPTimedOutError,
    DNSLookupError,
    ConnectionRefusedError,
    ConnectionDone,
    ConnectError,
    ConnectionLost,
    ResponseFailed,
    ResponseNeverReceived,
    TunnelError,
    ResponseDataLossError,
    OSError,
)
CONFIG_EXCEPTIONS: tuple[type[BaseException], ...] = (
    UnsupportedURLSchemeError,
    NotSupported,
    NotConfigured,
    # a broken or missing browser executable: every render fails the same way until fixed
    BrowserLaunchError,
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
)
SERVER_STATUSES = frozenset({500, 502, 503, 504, 522, 524})
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 410})


#: The module holding Playwright's public errors, loaded by the rendering handler.
PLAYWRIGHT_API = "playwright.async_api"


def playwright_errors() -> tuple[type[BaseException], type[BaseException]] | None:
    """Playwright's ``Error`` and ``TimeoutError``, or None while Playwright is not loaded.

    Read from ``sys.modules``, never imported: an exception of Playwright's exists
    only once the rendering handler has imported it.
    """
    api = sys.modules.get(PLAYWRIGHT_API)
    return None if api is None else (api.Error, api.TimeoutError)


#: ``kind`` of a failure that is an answer (a status, or a page's content).
RESPONSE_KIND = "response"
#: Exceptions that mean no answer came in time (Twisted's ``TimeoutError`` and
#: the builtin one, which asyncio's is, are two classes).
TIMEOUT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    DownloadTimeoutError,
    TimeoutError,  # Twisted's
    builtins.TimeoutError,  # asyncio's
    TCPTimedOutError,
    defer.TimeoutError,
)


def exception_kind(exception: BaseException) -> str:
    """The ``kind`` a download exception is signalled with: timeout, connection or other."""
    playwright = playwright_errors()
    if isinstance(exception, TIMEOUT_EXCEPTIONS) or (
        playwright is not None and isinstance(exception, playwright[1])
    ):
        return "timeout"
    if isinstance(exception, TRANSIENT_EXCEPTIONS):
        return "connection"
    return "other"


def classify_exception(exception: BaseException) -> FailureClass:
    """Class of a download exception; unknown exceptions count as transient (retry, then report)."""
    if isinstance(exception, DownloadCancelledError):
        return FailureClass.PERMANENT  # DOWNLOAD_MAXSIZE: the same page is as big next time
    # Playwright's errors and timeouts of a render (a page that crashed, a navigation that
    # failed or timed out) can go away: network trouble too. A browser that does not
    # start is not among them: the browser provider raises BrowserLaunchError instead.
    playwright = playwright_errors()
    transient = (
        TRANSIENT_EXCEPTIONS if playwright is None else (*TRANSIENT_EXCEPTIONS, playwright[0])
    )
    if isinstance(exception, CONFIG_EXCEPTIONS) and not isinstance(exception, transient):
        return FailureClass.CONFIG
    return FailureClass.TRANSIENT


def classify_status(response: Response) -> FailureClass | None:
    """Class of a non-2xx response, or None for a success."""
    return status_class(response.status, retry_after=b"Retry-After" in response.headers)


def status_class(status: int, *, retry_after: bool) -> FailureClass | None:
    """Class of an HTTP status (``retry_after``: the answer has a Retry-After header).

    For clients other than Scrapy's downloader too (``scrapy record-site``'s requests).
    """
    if 200 <= status < 300:
        return None
    if status == 429 or (status == 503 and retry_after):
        return FailureClass.THROTTLED
    if status == 408:
        return FailureClass.TRANSIENT
    if status in SERVER_STATUSES or status >= 500:
        return FailureClass.SERVER
    return FailureClass.PERMANENT  # 4xx, and redirects nobody follows
