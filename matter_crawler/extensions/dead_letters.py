"""The dead-letter queue's writer, and the resolution of letters that later succeed.

Listens for ``request_dead_lettered`` (sent by the classified-retry middleware,
the validation pipeline, the callback-error middleware, the batch store and the
spider) and writes the letters to the ``dead_letters`` table in batches, every
``DEAD_LETTER_FLUSH_INTERVAL`` seconds and at close. A letter the batch store
wrote itself (``recorded=True``) is only counted.

A letter resolves itself in any run, not only in a replay: a product page's
letter once the batch holding its product is committed (``batch_stored`` names
the stored products by their canonical URLs; a letter for the same product
asked for in another form, such as without its trailing slash, resolves with
it), a listing page's once the page parses (``dead_letter_resolved``, from the
spider). Letters and
resolutions are written in the order they happened, so the later outcome of a
URL wins. Only URLs with a letter are resolved: the store loads the pending
letters' URLs when the spider opens and adds every letter of the run, so a
crawl without letters writes nothing for the products it stores (one writer
per database, :mod:`matter_crawler.extensions.database_lock`, keeps that set
true).

A write the database refuses is kept and tried again at the next flush; at
close it is tried ``STORE_RETRY_ATTEMPTS`` times with the store's backoff
(``STORE_RETRY_BACKOFF``). Letters still not written then are lost: counted in
``dead_letters/lost`` and logged as an error with their URLs.

Stats: ``dead_letters/count``, ``dead_letters/<failure class>``,
``dead_letters/resolved``, ``dead_letters/lost``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call, sleep
from scrapy.utils.defer import deferred_from_coro

from ..core.session import CrawlSession
from ..safe_text import shortened, terminal_safe
from ..signals import batch_stored, dead_letter_resolved, request_dead_lettered
from ..storage import Database
from ..storage.database import database_reason
from ..storage.dead_letters import Letter, LetterOperation, pending_urls, write_letters

logger = logging.getLogger(__name__)
#: A dead letter's reason is logged cut to this many characters (stored whole).
REASON_LOG_LIMIT = 500

ADD = "add"
RESOLVE = "resolve"


def grouped(operations: list[tuple[str, Any]]) -> list[LetterOperation]:
    """Consecutive operations of one kind as one step, the order kept."""
    steps: list[LetterOperation] = []
    for kind, value in operations:
        if steps and steps[-1][0] == kind:
            steps[-1][1].append(value)  # type: ignore[attr-defined]
        else:
            steps.append((kind, [value]))
    return steps


class DeadLetterStore:
    def __init__(
        self, crawler: Crawler, flush_interval: float, retry_attempts: int, retry_backoff: float
    ) -> None:
        self.crawler = crawler
        self.database = Database.from_crawler(crawler)
        self.session = CrawlSession.from_crawler(crawler)
        self.flush_interval = flush_interval
        self.retry_attempts = max(1, retry_attempts)
        self.retry_backoff = retry_backoff
        # letters to add and URLs to resolve, in the order they happened
        self._operations: list[tuple[str, Any]] = []
        # URLs with a letter (pending at start, or written since), by the key of what
        # they stand for (a product page's canonical URL): None until loaded
        self._lettered: dict[str, set[str]] | None = None
        self._timer = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("DEAD_LETTERS_ENABLED"):
            raise NotConfigured
        store = cls(
            crawler,
            settings.getfloat("DEAD_LETTER_FLUSH_INTERVAL"),
            settings.getint("STORE_RETRY_ATTEMPTS"),
            settings.getfloat("STORE_RETRY_BACKOFF"),
        )
        crawler.signals.connect(store.dead_lettered, signal=request_dead_lettered)
        crawler.signals.connect(store.resolved, signal=dead_letter_resolved)
        crawler.signals.connect(store.batch_stored, signal=batch_stored)
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
        recorded: bool = False,
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
        if self._lettered is not None:
            self._lettered.setdefault(self._key(url), set()).add(url)
        if recorded:
            # written by its sender; a resolution buffered before it must not undo it
            self._operations = [op for op in self._operations if op != (RESOLVE, url)]
            return
        letter = Letter(
            url=url,
            stage=stage,
            failure_class=failure_class,
            last_error=reason,
            attempts=attempts,
            first_failed_at=first_failed_at,
            last_failed_at=datetime.now(UTC),
        )
        self._operations.append((ADD, letter))

    def resolved(self, url: str, **_: Any) -> None:
        self._resolve(url)

    def batch_stored(self, urls: tuple[str, ...] = (), **_: Any) -> None:
        # committed: the products' pages succeeded
        for url in urls:
            self._resolve(url)

    def _resolve(self, url: str) -> None:
        """Resolve every letter standing for ``url``: a product page asked for in another
        form (no trailing slash, an older link) is the same product."""
        if self._lettered is None:
            self._operations.append((RESOLVE, url))
            return
        for lettered in sorted(self._lettered.get(self._key(url), ())):
            self._operations.append((RESOLVE, lettered))

    def _key(self, url: str) -> str:
        """What a lettered URL stands for: a product page's canonical URL, else the URL."""
        canonical = getattr(self.crawler.spider, "canonical_url", None)
        return (canonical(url) if canonical is not None else None) or url

    async def spider_opened(self) -> None:
        if self.flush_interval > 0:
            self._timer = create_looping_call(self._flush_soon)
            self._timer.start(self.flush_interval, now=False)
        pending = await self.database.run(pending_urls)
        if self._lettered is None:
            self._lettered = {}
            for url in pending:
                self._lettered.setdefault(self._key(url), set()).add(url)
        for kind, value in self._operations:  # letters of the run so far
            if kind == ADD:
                self._lettered.setdefault(self._key(value.url), set()).add(value.url)

    def _flush_soon(self) -> None:
        deferred_from_coro(self.flush()).addErrback(
            lambda failure: logger.error("Writing dead letters failed: %s", failure.getTraceback())
        )

    async def flush(self) -> bool:
        """Write what is buffered; on a refusal keep it for the next flush. True once written."""
        operations, self._operations = self._operations, []
        if not operations:
            return True
        try:
            count = await self.database.run(
                write_letters, grouped(operations), self.session.run_id, datetime.now(UTC)
            )
        except Exception as error:
            self._operations[:0] = operations  # before what arrived meanwhile
            logger.warning(
                "The database refused the dead letters (%s); keeping them",
                database_reason(error),
            )
            return False
        if count:
            self.crawler.stats.inc_value("dead_letters/resolved", count)
            logger.info("Resolved %d dead letters", count)
        return True

    async def spider_closed(self) -> None:
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        delay = self.retry_backoff
        for attempt in range(1, self.retry_attempts + 1):
            if await self.flush():
                return
            if attempt < self.retry_attempts:
                await sleep(delay)
                delay *= 2
        letters = [letter for kind, letter in self._operations if kind == ADD]
        self.crawler.stats.inc_value("dead_letters/lost", len(letters))
        logger.error(
            "Lost %d dead letters: the database refused them: %s",
            len(letters),
            " ".join(letter.url for letter in letters),
        )
