"""Tasks in flight: one id per download attempt, and exactly one end for each.

A task is one request from the moment it reaches the downloader
(:meth:`TaskTracker.start`, from ``request_reached_downloader``) until what came of it
is known (:meth:`TaskTracker.end`): its callback ran (``done``), its item was stored
or refused (``done`` / ``invalid``), it is retried (``retry``: the retry is a new
task), it failed for good (``failed``), a downloader middleware replaced it by
another request (``redirected``), that request was then dropped by the dupefilter
(``dropped``), or the crawl closed first (``cancelled``, :meth:`TaskTracker.close`).

The id is kept in ``request.meta[TASK_ID]``, with a mark of this tracker (a request
resumed from a JOBDIR disk queue carries an id of an earlier process, which means
nothing here). Copies of a request (a retry, a redirect) carry it; only an id still
in flight means anything, so each task ends
once: the first end wins and later ones are ignored, and a copy that reaches the
downloader or the dupefilter while its original is still in flight ends the
original (a redirect: the original never reaches a callback). Requests a callback
yields lose the id (:class:`~matter_crawler.extensions.task_events.TaskEventsMiddleware`),
so a spider copying ``response.meta`` into a new request does not end its own page.

Per request: a dict insert, a dict pop and a monotonic clock read; the events
themselves go to :meth:`~matter_crawler.monitoring.events.EventHub.task`, which
encodes nothing unless someone listens.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from itertools import count
from time import monotonic, time, time_ns
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

#: request.meta key: the id of the request's current task.
TASK_ID = "task_id"

#: (outcome, stage, url, fields): a task event for the hub.
Emit = Callable[..., None]

_per_crawler: weakref.WeakKeyDictionary[Crawler, TaskTracker] = weakref.WeakKeyDictionary()


class TaskTracker:
    """Ids and start times of the tasks in flight; sends their start and their one end."""

    __slots__ = ("__weakref__", "_ids", "_mark", "emit", "in_flight")

    def __init__(self, emit: Emit | None = None) -> None:
        self.emit = emit  # None: tracking is off (no ids, no events)
        #: task id -> (monotonic start, epoch start, stage, url, request)
        self.in_flight: dict[int, tuple[float, float, str | None, str, Request]] = {}
        self._ids = count(1)
        self._mark = time_ns()  # tells this tracker's ids from a resumed JOBDIR's

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TaskTracker:
        """The crawl's tracker, shared by the progress extension and the spider middleware."""
        tracker = _per_crawler.get(crawler)
        if tracker is None:
            tracker = _per_crawler[crawler] = cls()
        return tracker

    @property
    def enabled(self) -> bool:
        return self.emit is not None

    def start(self, request: Request) -> None:
        """The request reached the downloader: a new task (ending the one it replaces)."""
        emit = self.emit
        if emit is None:
            return
        meta = request.meta
        previous = self._current(meta.get(TASK_ID))
        if previous is not None:
            entry = self.in_flight.get(previous)
            if entry is not None and entry[4] is not request:
                self._end(previous, "redirected", to=request.url)
        task_id = next(self._ids)
        meta[TASK_ID] = (self._mark, task_id)
        stage = meta.get("stage")
        now = time()
        self.in_flight[task_id] = (monotonic(), now, stage, request.url, request)
        emit("started", stage, request.url, id=task_id)

    def end(
        self, request: Request | None, outcome: str, url: str | None = None, **fields: Any
    ) -> bool:
        """End the request's task with ``outcome``; False if it has none in flight."""
        if request is None or self.emit is None:
            return False
        task_id = self._current(request.meta.get(TASK_ID))
        if task_id is None or task_id not in self.in_flight:
            return False
        self._end(task_id, outcome, url, **fields)
        return True

    def dropped(self, request: Request) -> None:
        """The scheduler dropped a copy of a task in flight (a redirect to a page seen)."""
        self.end(request, "dropped", to=request.url)

    def close(self) -> None:
        """The crawl closed: every task still in flight ends ``cancelled``."""
        for task_id in list(self.in_flight):
            self._end(task_id, "cancelled")

    def ages(self, now: float | None = None) -> Iterator[tuple[int, float, str | None, str]]:
        """(id, seconds in flight, stage, url) of each task in flight, oldest first."""
        now = monotonic() if now is None else now
        for task_id, (started, _, stage, url, _request) in self.in_flight.items():
            yield task_id, now - started, stage, url

    def started_events(self) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
        """A ``started`` event for each task in flight (for a page that opens mid-crawl)."""
        for task_id, (_, epoch, stage, url, _request) in self.in_flight.items():
            yield stage, url, {"id": task_id, "t": round(epoch, 3)}

    def _current(self, key: Any) -> int | None:
        """The task id in a ``request.meta[TASK_ID]`` value, if this tracker gave it."""
        if isinstance(key, tuple) and len(key) == 2 and key[0] == self._mark:
            return key[1]
        return None

    def _end(self, task_id: int, outcome: str, url: str | None = None, **fields: Any) -> None:
        started, _, stage, task_url, _request = self.in_flight.pop(task_id)
        duration_ms = round((monotonic() - started) * 1000, 1)
        assert self.emit is not None
        self.emit(outcome, stage, url or task_url, id=task_id, duration_ms=duration_ms, **fields)
