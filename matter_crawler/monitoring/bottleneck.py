"""Where the crawl is held back: a verdict, with its reason, from plain numbers.

:func:`bottleneck` is pure: the progress aggregator hands it, once a second, what
it read (process CPU, the database writer's busy share, memory and its ceiling,
the requests in flight and waiting, and each domain's limits and state from the
download slots, the adaptive controller and the breakers) and puts the verdict
in the snapshot (``bottleneck``), on the live page and in the
``matter_crawler_bottleneck`` gauge.

The reasoning, first match wins:

1. **memory**: resident memory at the memory ceiling (``ADAPTIVE_MEMORY_LIMIT_MB``,
   capped by Scrapy's ``MEMUSAGE_LIMIT_MB``) or the controller holding concurrency
   down for it. Nothing else matters while memory holds every domain down.
2. **site**, breaker open: the site fails; its requests wait out the cool-down.
3. **site**, throttled: the site asked to wait (Retry-After): the domain is paused.
4. **idle**: nothing in flight and nothing queued (only retries waiting for their
   time, or nothing at all: the crawl is between stages or ending).
5. **cpu**: the crawl's reactor thread runs, or waits for a CPU, :data:`CPU_BUSY`
   of the time or more (Linux's schedstat; elsewhere the process's CPU time stands
   in). Scrapy parses, schedules and reads every answer on that one thread: when it
   is never idle, pages wait for it, not for the site. Waiting counts because on a
   machine busy with other work (the simulated site on a 2-core machine) the crawl
   is short of CPU all the same, while its CPU time alone stays near half a core.
   Checked before the site's limits because a busy reactor also makes latency look
   high: Scrapy's latency includes the time the reactor took to read the answer.
6. **database**: the writer was busy :data:`WRITER_BUSY` of the time: batches are
   written back to back and the item pipeline waits for them.
7. **site**, capacity: the controller learned a ceiling (trouble above it) below
   the concurrency politeness allows: the site cannot take more.
8. **politeness**: the domain runs at its politeness ceiling (its maximum
   concurrency with its slot full, or its minimum delay): the crawl goes as fast
   as the settings allow; only a faster profile or a higher
   ``ADAPTIVE_DOMAIN_LIMITS`` would go faster. Checked before latency: requests
   spaced by the minimum delay leave at that pace however fast the site answers,
   and a controller still at its maximum tolerates the latency it sees.
9. **site**, latency: the smoothed latency is :data:`LATENCY_RISE` times its
   baseline or more: the site slows down under the load.
10. **none**: below every limit: the controller is still climbing, or the crawl
    waits for pages it has not discovered yet.

The domain named is the first that matches, busiest first. :func:`domain_views`
builds the domains from the slots, the controller's state and the breakers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .crawlstate import SlotState

#: Process CPU (% of one core) from which the crawl is CPU-bound.
CPU_BUSY = 85.0
#: Share of wall time the database writer spent writing from which it holds the crawl back.
WRITER_BUSY = 0.8
#: Smoothed latency over baseline from which the site is slowing down.
LATENCY_RISE = 2.0
#: The verdicts, in the order of the reasoning (the gauge has one series per verdict).
VERDICTS = ("memory", "site", "idle", "cpu", "database", "politeness", "none")


@dataclass(frozen=True, slots=True)
class DomainView:
    """One domain as the verdict needs it (limits from the controller, else the slot)."""

    name: str
    concurrency: int
    max_concurrency: int
    delay: float
    min_delay: float
    active: int  # requests in its download slot
    ceiling: int | None = None  # the controller's learned ceiling
    latency: float | None = None  # smoothed, seconds
    baseline: float | None = None
    paused: bool = False  # waiting out a Retry-After
    breaker: str = "closed"


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str
    reason: str
    domain: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"verdict": self.verdict, "reason": self.reason, "domain": self.domain}


def bottleneck(
    *,
    cpu_percent: float | None,
    cpu_demand_percent: float | None = None,
    writer_busy: float | None,
    rss_mb: float,
    memory_limit_mb: float,
    memory_pressure: bool,
    in_flight: int,
    queued: int,
    delayed: int,
    domains: Sequence[DomainView],
) -> Verdict:
    """The verdict for one moment (see the module's docstring for the reasoning)."""
    if memory_pressure or (memory_limit_mb > 0 and rss_mb >= memory_limit_mb):
        return Verdict(
            "memory",
            f"memory at {rss_mb:.0f} MB (ceiling {memory_limit_mb:.0f} MB): "
            "concurrency is held down",
        )
    busiest = sorted(domains, key=lambda domain: -domain.active)
    for domain in busiest:
        if domain.breaker == "open":
            return Verdict(
                "site", f"breaker open: {domain.name} is failing; waiting for it", domain.name
            )
    for domain in busiest:
        if domain.paused:
            return Verdict(
                "site", f"throttled: {domain.name} asked to wait (Retry-After)", domain.name
            )
    if in_flight == 0 and queued == 0:
        if delayed:
            return Verdict("idle", f"only {delayed} retries waiting for their time")
        return Verdict("idle", "nothing to fetch: between stages or ending")
    busy = cpu_demand_percent if cpu_demand_percent is not None else cpu_percent
    if busy is not None and busy >= CPU_BUSY:
        used = "" if cpu_percent is None else f" (its CPU time: {cpu_percent:.0f}% of a core)"
        return Verdict(
            "cpu", f"the crawl's thread runs or waits for a CPU {busy:.0f}% of the time{used}"
        )
    if writer_busy is not None and writer_busy >= WRITER_BUSY:
        return Verdict("database", f"the database writer is busy {writer_busy:.0%} of the time")
    for domain in busiest:
        if domain.ceiling is not None and domain.ceiling < domain.max_concurrency:
            return Verdict(
                "site",
                f"capacity: {domain.name} is troubled above {domain.ceiling} requests at "
                f"once (politeness allows {domain.max_concurrency})",
                domain.name,
            )
    for domain in busiest:
        full = domain.concurrency >= domain.max_concurrency and domain.active >= domain.concurrency
        spaced = 0 < domain.delay <= domain.min_delay
        if full or spaced:
            return Verdict(
                "politeness",
                f"politeness ceiling: {domain.name} at {domain.concurrency} requests at once, "
                f"{domain.delay:g} s apart",
                domain.name,
            )
    for domain in busiest:
        if domain.latency and domain.baseline and domain.latency >= LATENCY_RISE * domain.baseline:
            return Verdict(
                "site",
                f"latency rising: {domain.name} answers in {domain.latency * 1000:.0f} ms "
                f"(baseline {domain.baseline * 1000:.0f} ms)",
                domain.name,
            )
    return Verdict("none", "below every limit: the crawl is speeding up or discovering pages")


def domain_views(
    slots: Mapping[str, SlotState],
    adaptive: Mapping[str, Mapping[str, Any]],
    breakers: Mapping[str, str],
) -> list[DomainView]:
    """Each domain with a slot or a breaker, its limits from the controller (else the slot)."""
    views = []
    for name in {*slots, *breakers}:
        slot = slots.get(name)
        state = adaptive.get(name)
        concurrency = slot.concurrency if slot is not None else 0
        delay = slot.delay if slot is not None else 0.0
        if state is not None:
            views.append(
                DomainView(
                    name,
                    concurrency=int(state["concurrency"]),
                    max_concurrency=int(state["max_concurrency"]),
                    delay=float(state["delay"]),
                    min_delay=float(state["min_delay"]),
                    active=slot.active if slot is not None else 0,
                    ceiling=state["ceiling"],
                    latency=state["latency"],
                    baseline=state["baseline_latency"],
                    paused=bool(state["paused"]),
                    breaker=breakers.get(name, "closed"),
                )
            )
        else:  # no controller: the slot's own values are the limits
            views.append(
                DomainView(
                    name,
                    concurrency=concurrency,
                    max_concurrency=concurrency,
                    delay=delay,
                    min_delay=delay,
                    active=slot.active if slot is not None else 0,
                    breaker=breakers.get(name, "closed"),
                )
            )
    return views
