"""Fault decisions: which misbehaviour a page request gets, reproducibly.

Pure functions of the settings, the seed, the request's path and how many
requests that path has had so far (plus the clock for outages, and the load for
the capacity limit: requests admitted now, refusals in the last second). The
same request sequence therefore meets the same faults on every run, whatever
else is going on, which makes a crawler's recovery from them testable. The
server only carries the decision out (and keeps the refusal times in a
:class:`RefusalWindow`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .config import Settings
from .seeding import unit, units

# In priority order: when several apply to one request, the first one wins.
PRIORITY = ("outage", "capacity", "timeout", "reset", "throttle", "error", "truncate")
FAULT_KINDS = (*PRIORITY, "js_only")
PAGE_KINDS = ("list", "detail", "dcl")  # dcl: the simulated ledger's /dcl/ paths
#: Seconds over which refusals over capacity slow the requests the site still accepts.
OVERLOAD_WINDOW = 1.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request.

    ``fault`` is the fault shaping the response (None = answer normally);
    ``js_only`` says the page is served as a JavaScript-only shell (it can
    combine with a fault); ``delay`` is the time in seconds before the response
    is written (latency, plus the hang, the overload slowdown of an accepted
    request, or the overload delay of a refused one); ``status`` the
    status an error, throttle, capacity or outage fault answers with;
    ``cut`` in [0, 1) where a truncated or reset body is cut.
    """

    fault: str | None = None
    js_only: bool = False
    delay: float = 0.0
    status: int | None = None
    cut: float = 0.0


NORMAL = Decision()


class RefusalWindow:
    """The times of the refusals over capacity in the last ``OVERLOAD_WINDOW`` seconds."""

    def __init__(self, window: float = OVERLOAD_WINDOW) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)

    def count(self, now: float) -> int:
        """Refusals in ``(now - window, now]``."""
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times)

    def clear(self) -> None:
        self._times.clear()


def overload_slowdown(settings: Settings, recent_refusals: int) -> float:
    """Seconds an accepted page request takes beyond its latency while the site is overloaded.

    Proportional to the refusals of the last second: at a steady excess of k requests
    over capacity, each refused every ``overload_latency_ms``, that is
    ``overload_slowdown_ms * k * 1000 / overload_latency_ms``.
    """
    if not settings.capacity:
        return 0.0
    return settings.overload_slowdown_ms * recent_refusals / 1000.0


def in_scope(settings: Settings, kind: str) -> bool:
    """Whether faults (other than outages) apply to a page of this kind."""
    return kind in PAGE_KINDS and settings.only in ("both", kind)


def in_outage(window: tuple[float, float] | None, now: float) -> bool:
    """Whether ``now`` (epoch seconds) falls in the absolute outage window."""
    return window is not None and window[0] <= now < window[1]


def is_js_only(settings: Settings, seed: int, kind: str, page_key: str) -> bool:
    """JS-only is decided per page, so the same page is always a shell."""
    return (
        settings.js_only_rate > 0
        and in_scope(settings, kind)
        and unit(seed, "js-only", page_key) < settings.js_only_rate
    )


def latency(settings: Settings, draw: float) -> float:
    """Added latency in seconds for a uniform ``draw``."""
    mean = settings.latency_ms / 1000.0
    if mean == 0 or settings.latency_dist == "fixed":
        return mean
    if settings.latency_dist == "uniform":
        return 2.0 * mean * draw
    return -mean * math.log(1.0 - draw)


def decide(
    settings: Settings,
    *,
    seed: int,
    kind: str,
    path: str,
    count: int,
    page_key: str,
    outage_window: tuple[float, float] | None,
    now: float,
    admitted_open: int,
    recent_refusals: int = 0,
) -> Decision:
    """The decision for the ``count``-th (0-based) request to ``path``.

    ``page_key`` names the page regardless of URL form (for JS-only);
    ``admitted_open`` is the number of in-scope requests being served now;
    ``recent_refusals`` the number refused over capacity in the last
    ``OVERLOAD_WINDOW`` seconds (an accepted request is slowed by them).
    """
    if in_outage(outage_window, now):
        return Decision(fault="outage", status=503)
    if not in_scope(settings, kind):
        return NORMAL
    js_only = is_js_only(settings, seed, kind, page_key)
    if settings.capacity and admitted_open >= settings.capacity:
        return Decision(
            fault="capacity",
            js_only=js_only,
            delay=settings.overload_latency_ms / 1000.0,
            status=settings.capacity_status,
        )
    slowdown = overload_slowdown(settings, recent_refusals)
    rates = (
        settings.timeout_rate,
        settings.reset_rate,
        settings.throttle_rate,
        settings.error_rate,
        settings.truncate_rate,
    )
    if not any(rates) and not settings.latency_ms:
        if not slowdown:
            return Decision(js_only=js_only) if js_only else NORMAL
        return Decision(js_only=js_only, delay=slowdown)
    draws = units(seed, "fault", path, count)
    delay = latency(settings, draws[7]) + slowdown
    fault = next(
        (name for name, r, d in zip(PRIORITY[2:], rates, draws, strict=False) if d < r), None
    )
    status = None
    if fault == "timeout":
        delay += settings.hang_ms / 1000.0
    elif fault == "throttle":
        status = 429
    elif fault == "error":
        statuses = settings.error_statuses
        status = statuses[int(draws[5] * len(statuses))]
    return Decision(fault=fault, js_only=js_only, delay=delay, status=status, cut=draws[6])
