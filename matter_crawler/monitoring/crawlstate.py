"""Read the live state of a running crawl: requests in flight, queue depth, slots, breakers.

Read when asked (a Prometheus scrape, the once-a-second progress snapshot),
never per request. Every reader copes with a crawl that has not started or has
already closed (no engine, no scheduler): it returns zeros or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..middlewares.breaker import circuit_states

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


@dataclass(frozen=True, slots=True)
class SlotState:
    """One download slot (a domain): its limits now and its requests."""

    concurrency: int
    delay: float
    active: int  # in the downloader: queued in the slot or transferring
    transferring: int


def _engine(crawler: Crawler) -> Any:
    try:
        return crawler.engine
    except RuntimeError:  # Scrapy 2.19: "Crawler.engine is not set yet"
        return None


def requests_in_flight(crawler: Crawler) -> int:
    """Requests in the downloader (waiting in a slot or transferring)."""
    engine = _engine(crawler)
    downloader = getattr(engine, "downloader", None)
    return len(getattr(downloader, "active", ()))


def engine_paused(crawler: Crawler) -> bool:
    """Whether the engine is paused (the live control's pause)."""
    return bool(getattr(_engine(crawler), "paused", False))


def scheduler_depth(crawler: Crawler) -> tuple[int, int]:
    """(queued, delayed): requests the scheduler holds, and of those, waiting for a time."""
    engine = _engine(crawler)
    scheduler = getattr(engine, "scheduler", None) if engine is not None else None
    if scheduler is None:
        return 0, 0
    try:
        total = len(scheduler)
    except TypeError:  # a scheduler without __len__
        return 0, 0
    waiting = getattr(scheduler, "waiting", None)
    delayed = waiting() if callable(waiting) else 0
    return max(0, total - delayed), delayed


def stage_queues(crawler: Crawler) -> dict[str, dict[str, int]]:
    """Per stage: requests the scheduler holds (``queued``) and in the downloader
    (``in_flight``); requests without a stage count under ``other``."""
    engine = _engine(crawler)
    if engine is None:
        return {}
    queues: dict[str, dict[str, int]] = {}
    counts = getattr(getattr(engine, "scheduler", None), "stage_counts", None)
    for stage, held in (counts() if callable(counts) else {}).items():
        queues.setdefault(stage or "other", {"queued": 0, "in_flight": 0})["queued"] += held
    for request in list(getattr(getattr(engine, "downloader", None), "active", ())):
        stage = request.meta.get("stage") or "other"
        queues.setdefault(stage, {"queued": 0, "in_flight": 0})["in_flight"] += 1
    return queues


def domain_slots(crawler: Crawler) -> dict[str, SlotState]:
    """Every download slot's concurrency, delay and requests (slots idle for 60 s are gone)."""
    engine = _engine(crawler)
    slots = getattr(getattr(engine, "downloader", None), "slots", None) or {}
    return {
        key: SlotState(
            concurrency=slot.concurrency,
            delay=float(slot.delay),
            active=len(slot.active),
            transferring=len(slot.transferring),
        )
        for key, slot in list(slots.items())
    }


def breaker_states(crawler: Crawler) -> dict[str, str]:
    """Each domain's circuit-breaker state (``closed``, ``open``, ``half_open``)."""
    if _engine(crawler) is None:
        return {}
    return {domain: str(state) for domain, state in circuit_states(crawler).items()}
