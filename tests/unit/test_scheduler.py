"""DelayedRequestScheduler on a real Scrapy crawler: the heap, release, and JOBDIR round trips."""

from __future__ import annotations

from time import time

import pytest_twisted
from scrapy import Request, Spider, signals
from scrapy.utils.test import get_crawler

from matter_crawler import settings as project_settings
from matter_crawler.core.scheduler import NOT_BEFORE, DelayedRequestScheduler

from ..helpers import wait_for

QUEUES = {
    name: getattr(project_settings, name)
    for name in ("SCHEDULER_PRIORITY_QUEUE", "SCHEDULER_DISK_QUEUE", "SCHEDULER_MEMORY_QUEUE")
}


class Opened:
    """A scheduler on a fresh crawler, opened and closed in the engine's order."""

    def __init__(self, jobdir=None) -> None:
        settings = {**QUEUES, "SCHEDULER": "matter_crawler.core.scheduler.DelayedRequestScheduler"}
        if jobdir is not None:
            settings["JOBDIR"] = str(jobdir)
        self.crawler = get_crawler(Spider, settings)
        self.spider = Spider.from_crawler(self.crawler, name="scheduler-test")
        self.scheduler = DelayedRequestScheduler.from_crawler(self.crawler)
        self.scheduler.open(self.spider)
        self.crawler.signals.send_catch_log(signal=signals.spider_opened, spider=self.spider)

    def stat(self, name: str) -> int:
        return self.crawler.stats.get_value(f"scheduler/delayed/{name}", 0)

    def close(self, reason: str = "shutdown") -> None:
        """Close as the engine does: the scheduler, then the spider_closed signal."""
        self.scheduler.close(reason)
        self.crawler.signals.send_catch_log(
            signal=signals.spider_closed, spider=self.spider, reason=reason
        )


def delayed(path: str, not_before: float) -> Request:
    return Request(f"http://127.0.0.1:1{path}", meta={NOT_BEFORE: not_before}, dont_filter=True)


def drain(scheduler: DelayedRequestScheduler) -> list[Request]:
    requests = []
    while (request := scheduler.next_request()) is not None:
        requests.append(request)
    return requests


def names(requests: list[Request]) -> list[str]:
    return [request.url.rsplit("/", 1)[-1] for request in requests]


def test_waiting_requests_leave_in_time_order_once_due_and_ahead_of_the_queue():
    opened = Opened()
    scheduler = opened.scheduler
    try:
        start = time()
        for name, wait in (("c", 0.6), ("a", 0.2), ("b", 0.4), ("b2", 0.4)):
            assert scheduler.enqueue_request(delayed(f"/{name}", start + wait))
        assert scheduler.enqueue_request(Request("http://127.0.0.1:1/now"))
        # a due not_before is no reason to wait
        assert scheduler.enqueue_request(delayed("/past", start - 1))
        assert (len(scheduler), scheduler.waiting(), opened.stat("held")) == (6, 4, 4)

        assert names(drain(scheduler)) == ["now", "past"]  # the others are not due yet
        assert (len(scheduler), scheduler.waiting()) == (4, 4)

        wait_for(lambda: time() > start + 0.6, timeout=5, message="all due")
        scheduler.enqueue_request(Request("http://127.0.0.1:1/later"))
        # due requests first, earliest first (ties in arrival order), then the queue
        assert names(drain(scheduler)) == ["a", "b", "b2", "c", "later"]
        assert (len(scheduler), opened.stat("released")) == (0, 4)
    finally:
        opened.close()


def test_a_request_is_released_only_once_its_time_has_come():
    opened = Opened()
    scheduler = opened.scheduler
    try:
        not_before = time() + 0.3
        scheduler.enqueue_request(delayed("/one", not_before))
        released_at = wait_for(
            lambda: scheduler.next_request() and time(), timeout=5, message="the release"
        )
        assert released_at >= not_before
        assert scheduler.next_request() is None
    finally:
        opened.close()


def test_a_seen_request_is_not_held():
    opened = Opened()
    scheduler = opened.scheduler
    try:
        request = Request("http://127.0.0.1:1/x", meta={NOT_BEFORE: time() + 60})
        assert scheduler.enqueue_request(request)
        assert not scheduler.enqueue_request(request.replace())  # the dupefilter saw it
        assert scheduler.waiting() == 1
    finally:
        opened.close()


def test_waiting_requests_go_to_the_disk_queue_at_close_and_wait_again_after_a_resume(tmp_path):
    jobdir = tmp_path / "job"
    first = Opened(jobdir)
    start = time()
    for name, wait in (("late", 1.0), ("early", 0.5)):
        first.scheduler.enqueue_request(delayed(f"/{name}", start + wait))
    first.scheduler.enqueue_request(Request("http://127.0.0.1:1/queued"))
    assert len(first.scheduler) == 3
    first.close()

    resumed = Opened(jobdir)
    scheduler = resumed.scheduler
    try:
        assert len(scheduler) == 3  # all three came back from the job's disk queue
        # the queued one is due; the others came out early and are held again
        assert names(drain(scheduler)) == ["queued"]
        assert (resumed.stat("held_again"), scheduler.waiting()) == (2, 2)
        assert resumed.stat("held") == 4  # the run's count: 2 before the pause (restored), 2 now
        assert len(scheduler) == 2
        wait_for(lambda: time() > start + 1.0, timeout=5, message="both due")
        # out of the heap in time order, though the disk queue gave "late" first
        released = drain(scheduler)
        assert names(released) == ["early", "late"]
        assert [r.meta[NOT_BEFORE] for r in released] == [start + 0.5, start + 1.0]
        assert resumed.stat("released") == 2
    finally:
        resumed.close()


def test_without_jobdir_waiting_requests_end_with_the_crawl():
    opened = Opened()
    opened.scheduler.enqueue_request(delayed("/x", time() + 60))
    opened.close()
    assert len(opened.scheduler) == 0


class OneDelayedRequest(Spider):
    """A crawl whose only request waits one second in the heap."""

    name = "one-delayed-request"
    custom_settings = {
        **QUEUES,
        "SCHEDULER": "matter_crawler.core.scheduler.DelayedRequestScheduler",
    }

    async def start(self):
        self.asked_at = time()
        yield Request("data:,due", meta={NOT_BEFORE: self.asked_at + 1.0}, dont_filter=True)

    def parse(self, response):
        self.crawler.stats.set_value("test/waited", time() - self.asked_at)


@pytest_twisted.ensureDeferred
async def test_a_due_request_wakes_an_idle_engine_before_its_heartbeat():
    # with nothing else to do, the engine would look at the scheduler again only at its
    # 5-second heartbeat: the scheduler's wake-up (through engine.crawl) sends it at 1 s
    crawler = get_crawler(OneDelayedRequest, {"LOG_LEVEL": "WARNING"})
    await crawler.crawl()
    waited = crawler.stats.get_value("test/waited")
    assert waited is not None, "the delayed request was never downloaded"
    assert 1.0 <= waited < 3.0
    assert crawler.stats.get_value("scheduler/delayed/released") == 1


def test_requests_held_are_counted_per_stage_queued_or_waiting():
    opened = Opened()
    scheduler = opened.scheduler
    try:
        start = time()
        for path, stage in (("/l1", "list"), ("/d1", "detail"), ("/d2", "detail"), ("/x", None)):
            meta = {"stage": stage} if stage else {}
            assert scheduler.enqueue_request(Request(f"http://127.0.0.1:1{path}", meta=meta))
        retry = delayed("/d3", start + 0.2)
        retry.meta["stage"] = "detail"
        assert scheduler.enqueue_request(retry)
        assert not scheduler.enqueue_request(Request("http://127.0.0.1:1/d1"))  # a duplicate
        assert scheduler.stage_counts() == {"list": 1, "detail": 3, None: 1}
        drain(scheduler)  # the queue; the retry still waits
        assert scheduler.stage_counts() == {"detail": 1}
        wait_for(lambda: time() > start + 0.2, timeout=5, message="the retry due")
        drain(scheduler)
        assert scheduler.stage_counts() == {}
    finally:
        opened.close()
