"""A file rewritten from the database at the end of every crawl (the feed, the report).

The base of :class:`~matter_crawler.extensions.feed.AtomFeedWriter` and
:class:`~matter_crawler.extensions.report.HtmlReportWriter`: when the spider closes,
after the pipelines have written their last batch, :meth:`WrittenAtClose.write`
replaces the file at the path its setting names, in one rename, so a web server
serving the file never sees half of one. It is written whatever the crawl's outcome
(a failed crawl's products are stored too); a failure to write is logged as an error,
counted in ``<prefix>/errors`` and does not change the crawl's outcome. What ``write``
returns (on the database's writer thread) becomes ``<prefix>/<name>`` stats (set on
the reactor's). An empty setting (the default) turns the extension off.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from sqlalchemy import Engine

from ..storage import Database

logger = logging.getLogger(__name__)


class WrittenAtClose:
    path_setting: ClassVar[str]  # the setting naming the file; empty: off
    stats_prefix: ClassVar[str]  # <prefix>/errors, and <prefix>/<name> of what write() counts
    what: ClassVar[str]  # "the Atom feed", for the log

    def __init__(self, crawler: Crawler, path: Path) -> None:
        self.crawler = crawler
        self.path = path

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        path = crawler.settings.get(cls.path_setting)
        if not path:
            raise NotConfigured
        extension = cls(crawler, Path(path).expanduser())
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def write(self, engine: Engine) -> dict[str, int]:
        """Write the file from the database; what it holds, counted (``{"entries": 12}``)."""
        raise NotImplementedError

    async def spider_closed(self, reason: str) -> None:
        database = Database.from_crawler(self.crawler)
        try:
            counts = await database.run(self.write)
        except Exception:
            logger.exception("Could not write %s to %s", self.what, self.path)
            self.crawler.stats.inc_value(f"{self.stats_prefix}/errors")
            return
        for name, value in counts.items():
            self.crawler.stats.set_value(f"{self.stats_prefix}/{name}", value)
        summary = ", ".join(f"{value:,} {name}" for name, value in counts.items())
        logger.info("Wrote %s (%s) to %s", self.what, summary, self.path)
