"""The memory ceiling: when memory lowers every domain's concurrency.

The ceiling is ``ADAPTIVE_MEMORY_LIMIT_MB``, never above 80% of Scrapy's
``MEMUSAGE_LIMIT_MB`` when ``MEMUSAGE_ENABLED`` (:func:`memory_ceiling_mb`), so that
concurrency comes down before Scrapy's MemoryUsage stops the crawl. The extension reads
the process's current resident memory (:func:`resident_memory_mb`) every
``ADAPTIVE_MEMORY_CHECK_INTERVAL`` seconds and hands it to :class:`MemoryCeiling`.
"""

from __future__ import annotations

import os
import resource
import sys
from enum import StrEnum

from scrapy.settings import BaseSettings

from .limits import require

#: Memory pressure ends below this share of the memory ceiling (hysteresis against flapping).
MEMORY_RELEASE = 0.9
#: Under memory pressure, concurrency is halved again each time memory climbs another such
#: share of the ceiling above the reading of the last cut.
MEMORY_STEP = 0.05
#: The memory ceiling is at most this share of Scrapy's MEMUSAGE_LIMIT_MB.
MEMUSAGE_SHARE = 0.8

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_memory_bytes() -> int:
    """This process's resident memory now (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def resident_memory_mb() -> float:
    """The process's resident memory now, in MB.

    Where ``/proc`` is missing (macOS), only the peak is known (``ru_maxrss``, what
    Scrapy's MemoryUsage reads anyway): it never falls, so memory pressure, once on,
    lasts to the end of the crawl there.
    """
    return resident_memory_bytes() / 2**20


def memory_ceiling_mb(settings: BaseSettings) -> float:
    """``ADAPTIVE_MEMORY_LIMIT_MB``, lowered to 80% of ``MEMUSAGE_LIMIT_MB`` when Scrapy's
    MemoryUsage would stop the crawl sooner; 0 (no ceiling) when neither is set.

    MemoryUsage stops on peak memory; the ceiling is checked against current memory,
    which the peak only follows upward: reaching 80% of the limit comes first.
    """
    require(settings, "ADAPTIVE_MEMORY_LIMIT_MB")
    limit = settings.getfloat("ADAPTIVE_MEMORY_LIMIT_MB")
    scrapy_limit = settings.getfloat("MEMUSAGE_LIMIT_MB")
    if settings.getbool("MEMUSAGE_ENABLED") and scrapy_limit > 0:
        share = MEMUSAGE_SHARE * scrapy_limit
        limit = min(limit, share) if limit > 0 else share
    return max(0.0, limit)


class MemoryAction(StrEnum):
    LOWER = "lower"  # halve every domain's concurrency, and hold it
    RELEASE = "release"  # memory is back down: concurrency may grow again


class MemoryCeiling:
    """When memory lowers concurrency, from a sequence of resident-memory readings (MB).

    At the ceiling, pressure starts: every domain is halved once and held (no
    increase). It is halved again only if memory keeps climbing, each time by
    another ``MEMORY_STEP`` of the ceiling above the reading of the last cut: a
    reading that stays high but flat has been dealt with (Python rarely returns
    freed memory to the system, so waiting for it to fall would cut to the minimum
    for nothing). Pressure ends once memory is below ``MEMORY_RELEASE`` of the
    ceiling. A reading that never falls (peak memory, where the current one is
    unknown) therefore holds the pressure to the end of the crawl.
    """

    def __init__(self, limit_mb: float) -> None:
        self.limit_mb = limit_mb
        self.pressure = False
        self._cut_at = 0.0  # the reading when concurrency was last lowered

    def observe(self, rss_mb: float) -> MemoryAction | None:
        if rss_mb >= self.limit_mb:
            if self.pressure and rss_mb < self._cut_at + MEMORY_STEP * self.limit_mb:
                return None  # held: already lowered for this much memory
            self.pressure = True
            self._cut_at = rss_mb
            return MemoryAction.LOWER
        if self.pressure and rss_mb < MEMORY_RELEASE * self.limit_mb:
            self.pressure = False
            return MemoryAction.RELEASE
        return None
