"""No page lost to an exception: a spider middleware that dead-letters a page whose code raised.

A spider callback that raises (a parser meeting input it cannot read, a bug)
would leave its page neither stored, nor failed, nor dead-lettered: Scrapy
logs the error and drops the page. ``process_spider_exception`` turns the
exception into a dead letter for the page instead: keyed by the URL the
spider asked for (:func:`~matter_crawler.request_url.requested_url`), failure
class ``parse``, the stage from the request's meta, the exception as its
reason. It covers plain and generator callbacks and ``async def`` callbacks
(coroutines and async generators) alike, and an exception raised after part of
the callback's output was produced: what was produced stays, the page still
counts as failed.

Then the spider is told (its ``page_failed(request)``, when it has one) and its
output replaces the callback's: a listing page counts as failed, so a full
run's listing is incomplete (nothing is delisted) and an incremental walk goes
on with the next page.

Errbacks are not run through spider middlewares, so an exception an errback
raises is caught from Scrapy's ``spider_error`` signal: the request is
dead-lettered (class ``errback``) unless the failure the errback was handling
already was (:class:`~matter_crawler.exceptions.DeadLettered`), and the
spider's ``page_failed`` requests are scheduled. The same signal catches a
callback exception that escaped this middleware (raised in the output
processing of a middleware closer to the engine).

``HttpError`` (HttpErrorMiddleware's) and ``CloseSpider`` are left to Scrapy.

Enabled in ``SPIDER_MIDDLEWARES`` closest to the spider, so it sees a callback's
exception first. Stats: ``callback_errors/count``, ``callback_errors/<stage>``,
``callback_errors/errback``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Self

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from ..exceptions import DeadLettered
from ..request_url import requested_url
from ..signals import send_dead_letter

logger = logging.getLogger(__name__)

#: request.meta key set once the page's exception is handled (never twice).
HANDLED = "callback_error_handled"
PASSED_ON = (HttpError, CloseSpider)


class CallbackErrorMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        middleware = cls(crawler)
        crawler.signals.connect(middleware.spider_error, signal=signals.spider_error)
        return middleware

    def process_spider_exception(
        self, response: Response, exception: Exception
    ) -> Iterable[Any] | None:
        if isinstance(exception, PASSED_ON):
            return None
        request = response.request
        if request is None:
            return None
        self._dead_letter(request, "parse", exception, exc_info=exception)
        return self._spider_output(request, counted=False)

    def spider_error(self, failure: Failure, response: Response | Failure, **_: Any) -> None:
        """An exception Scrapy logged as a spider error: from an errback, or escaped above."""
        exception = failure.value
        if isinstance(exception, PASSED_ON):
            return
        if isinstance(response, Failure):  # an errback raised while handling a download failure
            request = getattr(response, "request", None)
            if request is None or request.meta.get(HANDLED):
                return
            self.crawler.stats.inc_value("callback_errors/errback")
            if response.check(DeadLettered):
                request.meta[HANDLED] = True  # its letter is written: only tell the spider
                logger.error(
                    "The errback of %s raised %s: %s (the page was dead-lettered already)",
                    requested_url(request),
                    type(exception).__name__,
                    exception,
                )
            else:
                reason = f"{response.getErrorMessage()}; then the errback raised"
                self._dead_letter(request, "errback", exception, context=reason)
            counted = True
        else:
            request = response.request
            if request is None or request.meta.get(HANDLED):
                return
            self._dead_letter(request, "parse", exception)
            counted = False
        for output in self._spider_output(request, counted=counted):
            if isinstance(output, Request):
                self.crawler.engine.crawl(output)

    def _dead_letter(
        self,
        request: Request,
        failure_class: str,
        exception: BaseException,
        *,
        context: str | None = None,
        exc_info: BaseException | None = None,
    ) -> None:
        request.meta[HANDLED] = True
        url = requested_url(request)
        stage = request.meta.get("stage")
        reason = f"{type(exception).__name__}: {exception}".rstrip(": ")
        if context:
            reason = f"{context} {reason}"
        stats = self.crawler.stats
        stats.inc_value("callback_errors/count")
        stats.inc_value(f"callback_errors/{stage or 'other'}")
        # the traceback is for whoever fixes the code; the letter keeps the reason
        logger.error(
            "%s of %s (%s) raised %s; dead-lettered",
            "The callback" if failure_class == "parse" else "The errback",
            url,
            stage or "no stage",
            reason,
            exc_info=exc_info,
        )
        send_dead_letter(
            self.crawler,
            request=request,
            url=url,
            stage=stage,
            failure_class=failure_class,
            reason=reason,
            attempts=request.meta.get("retry_times", 0) + 1,
        )

    def _spider_output(self, request: Request, *, counted: bool) -> list[Any]:
        page_failed = getattr(self.crawler.spider, "page_failed", None)
        if not callable(page_failed):
            return []
        return list(page_failed(request, counted=counted))
