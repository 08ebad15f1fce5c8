"""The Atom feed rewritten at the end of every crawl (``FEED_ATOM_PATH``).

When the spider closes, the feed of :mod:`matter_crawler.reporting.feed`
(``FEED_ATOM_DAYS``, ``FEED_ATOM_LIMIT``, ``FEED_ATOM_INCLUDE``, as ``scrapy feed``
uses them) replaces the file at ``FEED_ATOM_PATH`` atomically, whatever the crawl's
outcome (:mod:`~matter_crawler.extensions.written_at_close`). Stats: ``feed/entries``,
``feed/errors``. Empty ``FEED_ATOM_PATH`` (the default): the extension is off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from scrapy.crawler import Crawler
from sqlalchemy import Engine

from ..commands._export_files import kept_mode, write_file
from ..reporting.feed import parse_include, read_entries, render_atom
from .written_at_close import WrittenAtClose


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
    write_file(path, data, kept_mode(path))
    return len(entries)


class AtomFeedWriter(WrittenAtClose):
    path_setting = "FEED_ATOM_PATH"
    stats_prefix = "feed"
    what = "the Atom feed"

    def __init__(self, crawler: Crawler, path: Path) -> None:
        super().__init__(crawler, path)
        settings = crawler.settings
        self.days = settings.getfloat("FEED_ATOM_DAYS")
        self.limit = settings.getint("FEED_ATOM_LIMIT")
        self.include = parse_include(settings.getlist("FEED_ATOM_INCLUDE"))
        self.site_url = settings.get("CSA_BASE_URL")

    def write(self, engine: Engine) -> dict[str, int]:
        count = write_feed_file(
            engine,
            self.path,
            days=self.days,
            limit=self.limit,
            include=self.include,
            site_url=self.site_url,
        )
        return {"entries": count}
