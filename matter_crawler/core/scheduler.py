"""A scheduler that holds requests until their not-before time.

The classified-retry middleware and the circuit breaker do not wait for a
retry or a cool-down inside the downloader, where a waiting request would keep
a concurrency slot: they hand back a copy of the request carrying
``meta["not_before"]`` (epoch seconds). This scheduler keeps such requests in a
time-ordered heap outside the queues and hands them out, ahead of everything
else, once they are due. Waiting costs a heap entry, nothing more.

A due request wakes the engine at once instead of at its next 5-second
heartbeat. Scrapy's one public call that wakes the engine is ``engine.crawl()``,
so the due request goes through it: it comes back to ``enqueue_request``, which
puts it at the head of the heap, and the woken engine takes it first (the
``request_scheduled`` signal fires for it a second time).

With JOBDIR, waiting requests are written to the disk queue at close with
their ``not_before`` in meta, and go back to the heap when they come out of the
queue early after a resume. Created first, the scheduler also asks the crawl
session to recover a JOBDIR left by a killed process before the dupefilter
reads its fingerprints (see :mod:`matter_crawler.core.session`).

It also counts the requests it holds per stage (``meta["stage"]``; ``None`` for
requests without one) for the progress snapshot's queues (:meth:`stage_counts`).

Stats: ``scheduler/delayed/held`` (every request put in the heap),
``scheduler/delayed/held_again`` (those among them that came back from a
resumed disk queue before their time) and ``scheduler/delayed/released``.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from time import time
from typing import TYPE_CHECKING, Any, Self

from scrapy import Request
from scrapy.core.scheduler import Scheduler
from scrapy.utils.asyncio import call_later

from .session import CrawlSession

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

#: Request meta key: do not download before this time (epoch seconds).
NOT_BEFORE = "not_before"


class DelayedRequestScheduler(Scheduler):
    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        CrawlSession.from_crawler(crawler)  # recover a killed JOBDIR before the dupefilter loads it
        return super().from_crawler(crawler)

    def open(self, spider: Any) -> Any:
        self._waiting: list[tuple[float, int, Request]] = []
        self._order = itertools.count()
        self._wakeup: Any = None
        self._releasing: Request | None = None  # the due request handed to engine.crawl()
        self._stages: Counter[str | None] = Counter()
        return super().open(spider)

    def close(self, reason: str) -> Any:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if self.dqs is not None:
            for _, _, request in self._waiting:
                # not_before travels in meta; the request was let through the dupefilter once
                super().enqueue_request(
                    request if request.dont_filter else request.replace(dont_filter=True)
                )
        self._waiting.clear()
        return super().close(reason)

    def enqueue_request(self, request: Request) -> bool:
        if request is self._releasing:  # back from engine.crawl(): due, and first in line
            self._releasing = None
            heapq.heappush(self._waiting, (0.0, next(self._order), request))
            return True
        meta = request.meta
        not_before = meta.get(NOT_BEFORE)
        if not_before is None or not_before <= time():
            accepted = super().enqueue_request(request)
            if accepted:
                self._stages[meta.get("stage")] += 1
            return accepted
        if not request.dont_filter and self.df.request_seen(request):
            self.df.log(request, self.spider)
            return False
        self._hold(request, not_before)
        self._stages[meta.get("stage")] += 1
        return True

    def next_request(self) -> Request | None:
        assert self.stats is not None
        now = time()
        if self._waiting and self._waiting[0][0] <= now:
            _, _, request = heapq.heappop(self._waiting)
            self._arm_wakeup()
            self.stats.inc_value("scheduler/delayed/released")
            self._stages[request.meta.get("stage")] -= 1
            return request
        while True:
            request = super().next_request()
            if request is None:
                return None
            not_before = request.meta.get(NOT_BEFORE)
            if not_before is None or not_before <= now:
                self._stages[request.meta.get("stage")] -= 1
                return request
            # only a resumed disk queue holds requests not yet due: enqueue_request keeps them
            self.stats.inc_value("scheduler/delayed/held_again")
            self._hold(request, not_before)

    def __len__(self) -> int:
        return super().__len__() + len(self._waiting)

    def waiting(self) -> int:
        """How many requests wait for their not-before time."""
        return len(self._waiting)

    def stage_counts(self) -> dict[str | None, int]:
        """Requests held per stage (as scheduled in this run: low after a JOBDIR resume)."""
        return {stage: held for stage, held in self._stages.items() if held > 0}

    def _hold(self, request: Request, not_before: float) -> None:
        heapq.heappush(self._waiting, (not_before, next(self._order), request))
        assert self.stats is not None
        self.stats.inc_value("scheduler/delayed/held")
        self._arm_wakeup()

    def _arm_wakeup(self) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if self._waiting:
            delay = max(0.0, self._waiting[0][0] - time())
            self._wakeup = call_later(delay + 0.001, self._wake_engine)

    def _wake_engine(self) -> None:
        # No re-arming here: if the engine is busy, the next finished download
        # (or the heartbeat) makes it ask again; next_request() re-arms after a pop.
        self._wakeup = None
        engine = self.crawler.engine if self.crawler is not None else None
        if engine is None or engine.spider is None or not self._waiting:
            return
        _, _, self._releasing = heapq.heappop(self._waiting)
        engine.crawl(self._releasing)
