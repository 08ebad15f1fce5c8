"""The Atom feed rewritten at the end of every crawl (``FEED_ATOM_PATH``).

When the spider closes, after the pipelines have written their last batch, the feed
of :mod:`matter_crawler.reporting.feed` (``FEED_ATOM_DAYS``, ``FEED_ATOM_LIMIT``,
``FEED_ATOM_INCLUDE``, as ``scrapy feed`` uses them) replaces the file at
``FEED_ATOM_PATH`` in one rename: a web server serving the file never sees half of
one. It is written whatever the crawl's outcome (a failed crawl's products are
stored too). A failure to write is logged as an error and does not change the
crawl's outcome. Empty ``FEED_ATOM_PATH`` (the default): the extension is off.
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from sqlalchemy import Engine

from ..commands._export_files import default_mode, replaced_when_done
from ..reporting.feed import parse_include, read_entries, render_atom
from ..storage import Database

logger = logging.getLogger(__name__)


def write_feed_file(
    engine: Engine,
    path: Path,
    *,
    days: float,
    limit: int,
    include: tuple[str, ...],
    site_url: str,
) -> int:
    """Write the feed to ``path`` atomically (keeping its permissions); the entries written."""
    now = datetime.now(UTC)
    entries = read_entries(engine, now - timedelta(days=days), limit, include)
    data = render_atom(entries, site_url=site_url, now=now, include=include)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = default_mode()
    with (
        replaced_when_done(path, mode) as (_partial, descriptor),
        os.fdopen(descriptor, "wb") as stream,
    ):
        stream.write(data)
    return len(entries)


class AtomFeedWriter:
    def __init__(self, crawler: Crawler, path: Path) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.path = path
        self.days = settings.getfloat("FEED_ATOM_DAYS")
        self.limit = settings.getint("FEED_ATOM_LIMIT")
        self.include = parse_include(settings.getlist("FEED_ATOM_INCLUDE"))
        self.site_url = settings.get("CSA_BASE_URL")

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        path = crawler.settings.get("FEED_ATOM_PATH")
        if not path:
            raise NotConfigured
        extension = cls(crawler, Path(path).expanduser())
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    async def spider_closed(self, reason: str) -> None:
        database = Database.from_crawler(self.crawler)
        try:
            count = await database.run(
                lambda engine: write_feed_file(
                    engine,
                    self.path,
                    days=self.days,
                    limit=self.limit,
                    include=self.include,
                    site_url=self.site_url,
                )
            )
        except Exception:
            logger.exception("Could not write the Atom feed to %s", self.path)
            self.crawler.stats.inc_value("feed/errors")
            return
        self.crawler.stats.set_value("feed/entries", count)
        logger.info("Wrote the Atom feed (%d entries) to %s", count, self.path)
