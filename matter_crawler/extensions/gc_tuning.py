"""``GarbageCollectorTuning``: fewer and shorter walks of Python's cyclic garbage collector.

A crawl allocates container objects fast (requests, responses, parsed trees, items)
and holds tens of thousands that live as long as it does: modules and classes,
SQLAlchemy's tables and columns (the DCL's added about 110 columns), the compiled
XPaths, the stored products a run compares against. Python's collector runs a young
collection every 700 allocations (``gc.set_threshold``'s default) and every full
collection walks every object the process holds: about 1 s of CPU on a
3,000-product crawl, some 8% of it (docs/benchmarks.md, "Issue 19").

Two changes, each with its setting:

- ``GC_GEN0_THRESHOLD`` (10,000; 0 keeps Python's 700): the young generation
  collects every that many allocations, set when the extension is built. Garbage in
  cycles lives a little longer; everything else is freed by reference counting as
  before.
- ``GC_FREEZE_AT_START`` (True): when the engine has started, one collection, then
  ``gc.freeze()``: what is alive then goes to the permanent generation, which no
  collection walks again. Garbage made later is collected as before.

Both are undone when the engine stops (``gc.unfreeze()``, the threshold as it was),
so a process that runs crawls one after another (tests, an embedding application)
frees what a crawl left behind. The stat ``gc/frozen_objects`` says how many
objects were frozen.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Self

from scrapy import signals
from scrapy.exceptions import NotConfigured

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class GarbageCollectorTuning:
    def __init__(self, crawler: Crawler, threshold: int, freeze: bool) -> None:
        self.stats = crawler.stats
        self.freeze = freeze
        self.threshold_before = gc.get_threshold()
        if threshold:
            gc.set_threshold(threshold, *self.threshold_before[1:])
        crawler.signals.connect(self.engine_started, signal=signals.engine_started)
        crawler.signals.connect(self.engine_stopped, signal=signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        threshold = crawler.settings.getint("GC_GEN0_THRESHOLD")
        freeze = crawler.settings.getbool("GC_FREEZE_AT_START")
        if not threshold and not freeze:
            raise NotConfigured
        return cls(crawler, threshold, freeze)

    def engine_started(self) -> None:
        if self.freeze:
            gc.collect()  # garbage of the start-up is freed, not frozen
            gc.freeze()
            self.stats.set_value("gc/frozen_objects", gc.get_freeze_count())

    def engine_stopped(self) -> None:
        if self.freeze:
            gc.unfreeze()
        gc.set_threshold(*self.threshold_before)
