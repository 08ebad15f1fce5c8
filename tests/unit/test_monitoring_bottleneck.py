"""The bottleneck verdict on plain numbers, the task tracker's one end per task, and the
windowed rates behind CPU % and bytes/s: no crawl, no reactor."""

from __future__ import annotations

import json

import pytest
from scrapy import Request

from matter_crawler.monitoring.bottleneck import (
    CPU_BUSY,
    VERDICTS,
    WRITER_BUSY,
    DomainView,
    bottleneck,
    domain_views,
)
from matter_crawler.monitoring.crawlstate import SlotState
from matter_crawler.monitoring.events import EventHub
from matter_crawler.monitoring.tasks import TASK_ID, TaskTracker
from matter_crawler.monitoring.usage import WindowedRate

SITE = "127.0.0.1"


def domain(**changes) -> DomainView:
    """A domain of the ``fast`` profile, climbing, its slot half used, nothing wrong."""
    values = {
        "name": SITE,
        "concurrency": 8,
        "max_concurrency": 32,
        "delay": 0.0,
        "min_delay": 0.0,
        "active": 4,
        "latency": 0.05,
        "baseline": 0.05,
    }
    return DomainView(**{**values, **changes})


def verdict(*domains: DomainView, **changes):
    values = {
        "cpu_percent": 20.0,
        "writer_busy": 0.05,
        "rss_mb": 120.0,
        "memory_limit_mb": 800.0,
        "memory_pressure": False,
        "in_flight": 4,
        "queued": 50,
        "delayed": 0,
        "domains": domains or (domain(),),
    }
    return bottleneck(**{**values, **changes})


# -- the four situations of the issue, as the snapshot would see them -----------------------


def test_politeness_bound_the_polite_profile_waits_its_second_between_requests():
    polite = domain(concurrency=1, max_concurrency=3, delay=1.0, min_delay=1.0, active=1)
    found = verdict(polite, cpu_percent=3.0)
    assert (found.verdict, found.domain) == ("politeness", SITE)
    assert "1 s apart" in found.reason


def test_politeness_bound_a_full_slot_at_the_politeness_ceiling():
    ceiling = domain(concurrency=3, max_concurrency=3, active=3)
    assert verdict(ceiling).verdict == "politeness"
    # the same slot below its ceiling is not held back by politeness
    assert verdict(domain(concurrency=2, max_concurrency=3, active=2)).verdict == "none"


def test_site_bound_under_a_capacity_limit_the_controller_found():
    capped = domain(concurrency=4, ceiling=5, active=4, latency=0.3, baseline=0.2)
    found = verdict(capped)
    assert (found.verdict, found.domain) == ("site", SITE)
    assert found.reason.startswith("capacity:")
    assert "above 5 requests" in found.reason


def test_cpu_bound_fast_on_a_zero_latency_site():
    found = verdict(
        domain(concurrency=32, active=32, latency=0.002, baseline=0.002), cpu_percent=97
    )
    assert found.verdict == "cpu"
    assert "97%" in found.reason
    assert verdict(cpu_percent=CPU_BUSY - 1).verdict != "cpu"


def test_cpu_bound_when_the_thread_waits_for_a_cpu_the_machine_gives_elsewhere():
    # measured: fast on a zero-latency site, the site on the same 2 cores: the crawl's
    # thread ran half the time and waited for a CPU the other half; latency looked 20x up
    starved = domain(concurrency=32, active=32, latency=0.1, baseline=0.005)
    found = verdict(starved, cpu_percent=50, cpu_demand_percent=99.8)
    assert found.verdict == "cpu"
    assert found.reason == (
        "the crawl's thread runs or waits for a CPU 100% of the time (its CPU time: 50% of a core)"
    )
    # idle between answers: the latency is the site's
    below_ceiling = domain(concurrency=16, active=16, latency=0.1, baseline=0.005)
    found = verdict(below_ceiling, cpu_percent=30, cpu_demand_percent=40)
    assert found.reason.startswith("latency")


def test_breaker_open_during_an_outage():
    found = verdict(domain(breaker="open", active=0), in_flight=0, queued=0, delayed=30)
    assert (found.verdict, found.domain) == ("site", SITE)
    assert found.reason.startswith("breaker open")


# -- the rest of the reasoning ----------------------------------------------------------------


def test_memory_comes_first():
    assert verdict(rss_mb=801.0, cpu_percent=99).verdict == "memory"
    assert verdict(memory_pressure=True, rss_mb=700.0).verdict == "memory"
    assert verdict(rss_mb=801.0, memory_limit_mb=0.0).verdict == "none"  # no ceiling set


def test_throttled_while_a_retry_after_pauses_the_domain():
    found = verdict(domain(paused=True))
    assert (found.verdict, found.reason) == (
        "site",
        "throttled: 127.0.0.1 asked to wait (Retry-After)",
    )


def test_idle_when_nothing_is_in_flight_or_queued():
    assert verdict(in_flight=0, queued=0).reason == "nothing to fetch: between stages or ending"
    assert (
        verdict(in_flight=0, queued=0, delayed=3).reason == "only 3 retries waiting for their time"
    )
    assert verdict(in_flight=0, queued=0, cpu_percent=99).verdict == "idle"


def test_database_writer_busy():
    assert verdict(writer_busy=WRITER_BUSY).verdict == "database"
    assert verdict(writer_busy=WRITER_BUSY - 0.01).verdict == "none"
    assert verdict(writer_busy=0.95, cpu_percent=95).verdict == "cpu"  # CPU first


def test_politeness_before_latency_a_spaced_slot_goes_at_its_delay_whatever_the_latency():
    # seen on the live page: balanced (0.25 s apart) on a site answering in 150 ms, the
    # controller's baseline from robots.txt (8 ms); the slot's pace was its delay's
    spaced = domain(
        concurrency=4, max_concurrency=8, delay=0.25, min_delay=0.25, latency=0.154, baseline=0.008
    )
    assert verdict(spaced).verdict == "politeness"
    assert verdict(domain(latency=0.154, baseline=0.008)).verdict == "site"  # no delay floor


def test_latency_rising():
    found = verdict(domain(latency=0.3, baseline=0.1))
    assert found.verdict == "site"
    assert found.reason == "latency rising: 127.0.0.1 answers in 300 ms (baseline 100 ms)"
    assert verdict(domain(latency=0.19, baseline=0.1)).verdict == "none"


def test_the_busiest_domain_is_named_and_every_verdict_is_known():
    quiet = domain(name="quiet.example", paused=True, active=0)
    busy = domain(name="busy.example", paused=True, active=9)
    assert verdict(quiet, busy).domain == "busy.example"
    assert {verdict().verdict, verdict(rss_mb=900).verdict} <= set(VERDICTS)
    assert json.dumps(verdict().as_dict())


def test_domains_without_the_controller_take_the_slot_as_their_limits():
    slots = {SITE: SlotState(concurrency=2, delay=0.5, active=2, transferring=2)}
    (view,) = domain_views(slots, {}, {SITE: "half_open"})
    assert (view.max_concurrency, view.min_delay, view.breaker) == (2, 0.5, "half_open")
    assert verdict(view).verdict == "politeness"


# -- windowed rates --------------------------------------------------------------------------


def test_windowed_rate_is_over_the_last_seconds_only():
    rate = WindowedRate(5.0)
    assert rate.update(0.0, 0.0) is None  # one reading: no rate yet
    assert rate.update(1.0, 100.0) == 100.0
    for second in range(2, 11):
        found = rate.update(float(second), 100.0 * second if second <= 5 else 500.0)
    assert found == 0.0  # the first five seconds have left the window
    assert len(rate.readings) <= 7


# -- tasks -----------------------------------------------------------------------------------


def tracked() -> tuple[TaskTracker, list[dict]]:
    events: list[dict] = []
    tracker = TaskTracker(
        lambda outcome, stage, url, **fields: events.append(
            {"outcome": outcome, "stage": stage, "url": url, **fields}
        )
    )
    return tracker, events


def test_each_task_starts_once_and_ends_once_with_a_duration():
    tracker, events = tracked()
    request = Request("http://x/a", meta={"stage": "list"})
    tracker.start(request)
    assert events == [{"outcome": "started", "stage": "list", "url": "http://x/a", "id": 1}]
    assert tracker.end(request, "retry", reason="HTTP 503")
    assert not tracker.end(request, "done")  # a second end is ignored
    (_, ended) = events
    assert (ended["outcome"], ended["id"], ended["reason"]) == ("retry", 1, "HTTP 503")
    assert ended["duration_ms"] >= 0
    # the retry is a copy carrying the old id: it reaches the downloader as a new task
    retry = request.replace()
    assert retry.meta[TASK_ID][1] == 1
    tracker.start(retry)
    assert events[-1]["id"] == 2
    assert [event["outcome"] for event in events] == ["started", "retry", "started"]


def test_a_redirect_ends_its_original_when_it_starts_or_is_dropped():
    tracker, events = tracked()
    first, second = Request("http://x/a"), Request("http://x/b")
    tracker.start(first)
    tracker.start(second)
    tracker.start(
        first.replace(url="http://x/a/")
    )  # a redirect of the first reaches the downloader
    tracker.dropped(second.replace(url="http://x/"))  # the dupefilter drops the second's redirect
    ends = [(e["outcome"], e["id"], e.get("to")) for e in events if e["outcome"] != "started"]
    assert ends == [("redirected", 1, "http://x/a/"), ("dropped", 2, "http://x/")]
    assert list(tracker.in_flight) == [3]


def test_an_id_from_an_earlier_process_means_nothing():
    earlier, _ = tracked()
    resumed = Request("http://x/a")
    earlier.start(resumed)  # as written to a JOBDIR's disk queue by the crawl before
    tracker, events = tracked()
    tracker.start(Request("http://x/b"))  # task 1 of this process, in flight
    assert not tracker.end(resumed, "done")
    tracker.start(resumed)  # not a redirect of this process's task 1
    assert [(e["outcome"], e["id"]) for e in events] == [("started", 1), ("started", 2)]


def test_close_cancels_what_is_in_flight_and_a_tracker_without_emit_does_nothing():
    tracker, events = tracked()
    for path in ("a", "b"):
        tracker.start(Request(f"http://x/{path}", meta={"stage": "detail"}))
    assert [(task_id, stage) for task_id, _, stage, _ in tracker.ages()] == [
        (1, "detail"),
        (2, "detail"),
    ]
    tracker.close()
    assert [e["outcome"] for e in events[2:]] == ["cancelled", "cancelled"]
    assert not tracker.in_flight
    off = TaskTracker()
    request = Request("http://x/c")
    off.start(request)
    assert TASK_ID not in request.meta
    assert not off.end(request, "done")


def test_hub_replays_stages_finished_and_in_flight_tasks_to_a_new_subscriber():
    hub = EventHub(recent=10)
    tracker = TaskTracker(hub.task)
    hub.in_flight = tracker.started_events
    hub.event("stage", stage="list", state="started")
    done, running = Request("http://x/1"), Request("http://x/2")
    tracker.start(done)
    tracker.start(running)
    tracker.end(done, "done", status=200)
    hub.event("batch", size=10, seconds=0.1)  # not replayed: it is history
    assert [task[1] for task in hub.recent] == ["done"]  # started events are not "recent"
    received: list[tuple[str, dict]] = []
    hub.subscribe(lambda kind, data: received.append((kind, json.loads(data))))
    assert [(kind, event.get("outcome") or event.get("state")) for kind, event in received] == [
        ("stage", "started"),
        ("task", "done"),
        ("task", "started"),
    ]
    assert received[2][1]["id"] == 2
    assert received[2][1]["t"] > 0


@pytest.mark.parametrize("cpu", [None, 0.0])
def test_no_cpu_reading_yet_is_not_cpu_bound(cpu):
    assert verdict(cpu_percent=cpu).verdict == "none"
