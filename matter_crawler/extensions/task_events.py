"""The end of a task whose response reached the spider: a spider middleware.

The spider-side half of the task events of
:class:`~matter_crawler.extensions.progress.ProgressMonitor` (the tracker is
:class:`~matter_crawler.monitoring.tasks.TaskTracker`). Placed closest to the
engine (``SPIDER_MIDDLEWARES`` 10), it sees the whole output of a callback or
errback, whatever the middlewares nearer the spider did with it:

- once that output is exhausted, the page's task ends ``done`` (with the
  response's status, and the listing page's number), unless the callback
  yielded an item: then the item's fate ends it (``item_scraped``: ``done``
  with the product's name; ``item_dropped``: ``invalid``; ``item_error``:
  ``failed``), or a dead letter already did (``failed``, the callback raised);
- an exception no middleware handled ends it ``failed``;
- requests the callback yields lose the task id they may have copied from
  ``response.meta`` (a new request is a new task, not a redirect of this one).

With the task events off (``PROGRESS_TASK_EVENTS = False``) it passes the output
through untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Self

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response

from ..monitoring.tasks import TASK_ID, TaskTracker


class TaskEventsMiddleware:
    def __init__(self, tracker: TaskTracker) -> None:
        self.tracker = tracker

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(TaskTracker.from_crawler(crawler))

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterable[Any]:
        if not self.tracker.enabled:
            return result
        return self._output(response, result)

    async def process_spider_output_async(
        self, response: Response, result: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        if not self.tracker.enabled:
            async for output in result:
                yield output
            return
        item = False
        async for output in result:
            item = self._passed(output) or item
            yield output
        if not item:
            self._done(response)

    def _output(self, response: Response, result: Iterable[Any]) -> Iterator[Any]:
        item = False
        for output in result:
            item = self._passed(output) or item
            yield output
        if not item:
            self._done(response)

    @staticmethod
    def _passed(output: Any) -> bool:
        """Whether ``output`` is an item; a request loses the task id it may have copied."""
        if isinstance(output, Request):
            output.meta.pop(TASK_ID, None)
            return False
        return True

    def _done(self, response: Response) -> None:
        request = response.request
        if request is not None:
            self.tracker.end(
                request, "done", response.url, status=response.status, page=request.meta.get("page")
            )

    def process_spider_exception(self, response: Response, exception: Exception) -> None:
        request = response.request
        if request is not None:
            self.tracker.end(
                request,
                "failed",
                response.url,
                failure_class="spider_error",
                reason=f"{type(exception).__name__}: {exception}".rstrip(": "),
            )
