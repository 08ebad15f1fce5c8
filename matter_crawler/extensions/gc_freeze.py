"""``StartupFreeze``: what the crawl set up is moved out of the garbage collector's walks.

Every full collection of Python's cyclic garbage collector walks every object the
process holds. A crawl holds tens of thousands that live as long as it does and
are never garbage: modules and classes, SQLAlchemy's tables and columns (the DCL's
added about 110 columns), the compiled XPaths, the stored products a run compares
against. When the engine has started, this extension collects once and calls
``gc.freeze()``: those objects go to the collector's permanent generation, which
no collection walks again. Garbage made later is collected as before; only what
was alive at start-up is exempt. ``GC_FREEZE_AT_START = False`` turns it off.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING, Self

from scrapy import signals
from scrapy.exceptions import NotConfigured

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class StartupFreeze:
    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("GC_FREEZE_AT_START"):
            raise NotConfigured
        extension = cls(crawler)
        crawler.signals.connect(extension.engine_started, signal=signals.engine_started)
        return extension

    def engine_started(self) -> None:
        gc.collect()  # garbage of the start-up is freed, not frozen
        gc.freeze()
        self.stats.set_value("gc/frozen_objects", gc.get_freeze_count())
        logger.debug("Froze %d start-up objects", gc.get_freeze_count())
