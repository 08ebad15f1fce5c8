"""The dead-letter queue's writer.

Listens for ``request_dead_lettered`` (sent by the classified-retry middleware,
the validation pipeline and the spider) and writes the letters to the
``dead_letters`` table in batches, every ``DEAD_LETTER_FLUSH_INTERVAL`` seconds
and at close. A replayed letter whose product is then stored, or whose listing
page then parses, is resolved (``dead_letter_resolved``, and ``item_scraped``
for replayed product pages).

Stats: ``dead_letters/count``, ``dead_letters/<failure class>``, ``dead_letters/resolved``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import deferred_from_coro
from sqlalchemy import Engine

from ..safe_text import shortened, terminal_safe
from ..session import CrawlSession
from ..signals import dead_letter_resolved, request_dead_lettered
from ..storage import Database
from ..storage.dead_letters import Letter, add_letters, resolve_letters

logger = logging.getLogger(__name__)
#: A dead letter's reason is logged cut to this many characters (stored whole).
REASON_LOG_LIMIT = 500


def _write(engine: Engine, resolved: list[str], letters: list[Letter], run_id: int | None) -> int:
    # resolutions first: a replayed page that fails validation is dead-lettered again after
    count = resolve_letters(engine, resolved, run_id, datetime.now(UTC))
    add_letters(engine, letters, run_id)
    return count


class DeadLetterStore:
    def __init__(self, crawler: Crawler, flush_interval: float) -> None:
        self.crawler = crawler
        self.database = Database.from_crawler(crawler)
        self.session = CrawlSession.from_crawler(crawler)
        self.flush_interval = flush_interval
        self._letters: list[Letter] = []
        self._resolved: list[str] = []
        self._timer = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("DEAD_LETTERS_ENABLED", True):
            raise NotConfigured
        store = cls(crawler, crawler.settings.getfloat("DEAD_LETTER_FLUSH_INTERVAL", 5.0))
        crawler.signals.connect(store.dead_lettered, signal=request_dead_lettered)
        crawler.signals.connect(store.resolved, signal=dead_letter_resolved)
        crawler.signals.connect(store.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(store.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(store.spider_closed, signal=signals.spider_closed)
        return store

    def dead_lettered(
        self,
        url: str,
        stage: str | None,
        failure_class: str,
        reason: str,
        attempts: int,
        first_failed_at: datetime,
        **_: Any,
    ) -> None:
        stats = self.crawler.stats
        stats.inc_value("dead_letters/count")
        stats.inc_value(f"dead_letters/{failure_class}")
        # the URL and the reason may hold page text: never print it raw to a terminal
        logger.warning(
            "Dead letter (%s, %s): %s: %s",
            stage,
            failure_class,
            terminal_safe(url),
            terminal_safe(shortened(reason, REASON_LOG_LIMIT)),
        )
        self._letters.append(
            Letter(
                url=url,
                stage=stage,
                failure_class=failure_class,
                last_error=reason,
                attempts=attempts,
                first_failed_at=first_failed_at,
                last_failed_at=datetime.now(UTC),
            )
        )

    def resolved(self, url: str, **_: Any) -> None:
        self._resolved.append(url)

    def item_scraped(self, item: Any, response: Response, **_: Any) -> None:
        if isinstance(response, Response) and response.meta.get("replay"):
            self._resolved.append(response.meta.get("redirect_urls", [response.url])[0])

    def spider_opened(self) -> None:
        if self.flush_interval > 0:
            self._timer = create_looping_call(self._flush_soon)
            self._timer.start(self.flush_interval, now=False)

    def _flush_soon(self) -> None:
        deferred_from_coro(self.flush()).addErrback(
            lambda failure: logger.error("Writing dead letters failed: %s", failure.getTraceback())
        )

    async def flush(self) -> None:
        letters, self._letters = self._letters, []
        resolved, self._resolved = self._resolved, []
        if not letters and not resolved:
            return
        count = await self.database.run(_write, resolved, letters, self.session.run_id)
        if count:
            self.crawler.stats.inc_value("dead_letters/resolved", count)
            logger.info("Resolved %d dead letters", count)

    async def spider_closed(self) -> None:
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        await self.flush()
