"""The task events of real crawls of the simulated site, read from the events file: every
``started`` task has exactly one end, with its ``duration_ms``, whatever became of it.

The spider (:class:`TaskEventsSpider`) puts in the cases that end a task in an unusual
way: a listing page and a product page whose callback raises (``failed``), some product
pages asked for without their trailing slash (the site answers 301: ``redirected``), and
one product page asked for under both names, so that the redirect of the slashless one
is a duplicate the dupefilter drops after it was scheduled (the spider dead-letters such
a redirect: ``failed``, class ``permanent``; without a letter it would end ``dropped``). The site's
faults bring retries (``retry``). A second crawl stops at ``CLOSESPIDER_ITEMCOUNT``
while redirects still wait in the scheduler: their tasks end ``cancelled``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy.http import Request, Response

from matter_crawler.parsing import ListingCard

from ..helpers import crawl_runs, run_crawl, sqlite_url
from .test_integrity_storage import QUICK, RaisingSpider

THIS_MODULE = __name__
TERMINAL = {"done", "retry", "failed", "invalid", "redirected", "dropped", "cancelled"}


class TaskEventsSpider(RaisingSpider):
    """``-a slashless_every=N``: every Nth product page is asked for without its slash;
    ``-a twice=1``: the first other product page is also asked for without it."""

    name = "task_events"

    def __init__(self, slashless_every: Any = 0, twice: Any = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slashless_every = int(slashless_every)
        self.twice = bool(int(twice))
        self.details = 0

    def detail_request(self, card: ListingCard, page: int) -> Request:
        request = super().detail_request(card, page)
        self.details += 1
        if self.slashless_every and self.details % self.slashless_every == 0:
            return request.replace(url=request.url.rstrip("/"))
        return request

    def parse_listing(self, response: Response) -> Iterator[Any]:
        for output in super().parse_listing(response):
            yield output
            if (
                self.twice
                and isinstance(output, Request)
                and output.meta.get("stage") == "detail"
                and output.url.endswith("/")
            ):
                self.twice = False
                yield output.replace(url=output.url.rstrip("/"))


def events_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def check_every_task_ends_once(events: list[dict[str, Any]]) -> Counter[str]:
    """Every started task has exactly one end, after its start, with a duration; the ends'
    outcomes counted."""
    started: dict[int, int] = {}
    ended: dict[int, dict[str, Any]] = {}
    for position, event in enumerate(events):
        if event["type"] != "task":
            continue
        if event["outcome"] == "started":
            assert event["id"] not in started, f"task {event['id']} started twice"
            started[event["id"]] = position
            continue
        assert event["outcome"] in TERMINAL, event
        if "id" not in event:  # about something that never reached the downloader
            assert event["outcome"] in ("failed", "invalid"), event
            assert "duration_ms" not in event
            continue
        task = event["id"]
        assert task in started, f"task {task} ended without starting: {event}"
        assert task not in ended, f"task {task} ended twice: {ended[task]} and {event}"
        assert started[task] < position
        assert event["duration_ms"] >= 0
        ended[task] = event
    assert set(started) == set(ended), f"never ended: {set(started) - set(ended)}"
    assert [event["type"] for event in events][-1] == "closed"
    return Counter(event["outcome"] for event in ended.values())


def crawl_with_events(site, tmp_path: Path, name: str, settings=None, args=None):
    database_url = sqlite_url(tmp_path / f"{name}.sqlite3")
    events_path = tmp_path / f"{name}.jsonl"
    result = run_crawl(
        site.base_url,
        database_url,
        settings={
            **QUICK,
            "SPIDER_MODULES": THIS_MODULE,
            "MONITORING_PORT": 0,
            "PROGRESS_BAR": False,
            "PROGRESS_EVENTS_FILE": str(events_path),
            **(settings or {}),
        },
        args=args,
        spider=TaskEventsSpider.name,
    )
    assert result.returncode == 0, result.output[-4000:]
    (run,) = crawl_runs(database_url)
    return events_of(events_path), run["stats"]


@pytest.mark.slow
def test_every_task_of_a_crawl_ends_once_retried_redirected_dropped_or_failed(
    simulated_site, tmp_path
):
    site = simulated_site(products=96, seed=21, error_rate=0.06, throttle_rate=0.03, retry_after=1)
    raising = site.truth()[40]["url"].strip("/").rsplit("/", 1)[-1]
    events, stats = crawl_with_events(
        site,
        tmp_path,
        "tasks",
        args={"raise_pages": 2, "raise_products": raising, "slashless_every": 7, "twice": 1},
    )
    outcomes = check_every_task_ends_once(events)
    assert {"done", "retry", "failed", "redirected"} <= set(outcomes), outcomes
    assert "cancelled" not in outcomes  # a crawl that finished leaves nothing in flight
    tasks = [event for event in events if event["type"] == "task"]
    ends = [event for event in tasks if "id" in event and event["outcome"] != "started"]
    # retries: one end per retry the stats count
    assert outcomes["retry"] == stats["retry/count"]
    # the callbacks that raised: a listing page and a product page, failed with class parse
    failed = {
        (e["stage"], e["failure_class"], e["url"].split("?")[0])
        for e in ends
        if e["outcome"] == "failed"
    }
    assert ("list", "parse", f"{site.base_url}/csa-iot_products/page/2/") in failed
    assert ("detail", "parse", f"{site.base_url}/csa_product/{raising}/") in failed
    # redirects: the slashless request's task ends where the redirect starts a new one
    for event in (e for e in ends if e["outcome"] == "redirected"):
        assert not event["url"].endswith("/")
        assert event["to"] == event["url"] + "/"
    # the redirect the dupefilter dropped: its task ends with the spider's dead letter
    (dropped,) = [
        e for e in ends if e["outcome"] == "dropped" or "already requested" in e.get("reason", "")
    ]
    if dropped["outcome"] == "failed":  # the spider's letter came first
        assert dropped["failure_class"] == "permanent"
    assert not dropped["url"].endswith("/")
    assert stats["dupefilter/filtered"] >= 1
    # the product pages that were handled: done, with the product's name
    done_details = [e for e in ends if e["outcome"] == "done" and e["stage"] == "detail"]
    assert all(e.get("name") for e in done_details)
    assert all(e["status"] == 200 for e in done_details)

    # stage events, in order, and the batches that stored every product
    stages = [(e["stage"], e["state"]) for e in events if e["type"] == "stage"]
    assert stages[0] == ("list", "started")
    assert stages[-1] == ("run", "finished")
    for stage in ("list", "detail"):
        assert stages.index((stage, "started")) < stages.index((stage, "complete"))
    batches = [e for e in events if e["type"] == "batch"]
    stored = sum(stats.get(f"store/products_{kind}", 0) for kind in ("new", "changed", "unchanged"))
    assert sum(batch["products"] for batch in batches) == stored > 0
    assert all(batch["seconds"] > 0 and batch["size"] >= batch["products"] for batch in batches)


@pytest.mark.slow
def test_tasks_still_waiting_on_a_redirect_when_the_crawl_stops_end_cancelled(
    simulated_site, tmp_path
):
    site = simulated_site(products=120, seed=22, latency_ms=30)
    events, stats = crawl_with_events(
        site,
        tmp_path,
        "stopped",
        settings={"CLOSESPIDER_ITEMCOUNT": 12},
        args={"slashless_every": 1},
    )
    outcomes = check_every_task_ends_once(events)
    assert outcomes["cancelled"] >= 1, outcomes
    cancelled = [e for e in events if e.get("outcome") == "cancelled"]
    assert all(e["stage"] == "detail" and not e["url"].endswith("/") for e in cancelled)
    assert [e for e in events if e["type"] == "stage"][-1]["reason"] == "closespider_itemcount"
    assert stats["finish_reason"] == "closespider_itemcount"
