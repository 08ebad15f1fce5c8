"""The ``crawl_runs`` record of a crawl.

One row per run, inserted when the spider opens (or reopened, with its
``sessions`` count raised, when a JOBDIR crawl resumes) and updated when it
closes: status, stage reached, pages and products counted, retries, errors,
dead letters, timings, a snapshot of the effective settings and of the final
stats. Nothing is written per page: live progress stays in memory (see the
progress extension).

Dead letters are counted from their table when the record is finished; the
dead-letter store is enabled before this extension (``EXTENSIONS`` order), so
its last letters are written first.

Status: ``finished`` (the crawl ran out of work), ``stopped`` (Ctrl-C, a
scrapyd cancel: resumable with the same JOBDIR) or ``failed`` (anything else).

Stage reached, from the spider: ``planning``, ``list``, ``detail`` or
``delist`` (the end of a full run: page 1 again, confirmations) while the crawl
was under way; ``done`` when it finished with its listing stage complete and
nothing left to fetch. A finished run whose listing pages failed
for good records ``list``: it never saw the whole listing (the dead letters
name the pages; ``-a replay_dead_letters=1`` fetches them). Detail pages that
failed for good do not hold a run back from ``done``; they are its dead letters.
A spider with a ``complete()`` method (the ``dcl`` spider) says itself whether
its walk read everything: ``done`` then needs it, a finished run and no lost
batch, and otherwise the stage is the spider's ``stage()``. Its ``page_counts()``
gives ``pages_planned`` and ``pages_crawled`` (every page of its walk).

A run that lost a batch (``store/batches_lost``: products or sightings the
database refused and that could not be dead-lettered either, see
:mod:`matter_crawler.pipelines.store`) records status ``failed`` and never
stage ``done``, whatever its close reason: its data is incomplete.

A run resumed from a JOBDIR is one run over several processes: its counters
(pages, requests, retries, errors) are the session's restored stats (see
:mod:`matter_crawler.core.session`) and its duration adds up the processes' own.
Product counts (new, changed, fetched, delisted) come from the database at
close, so they are exact even after a hard kill.

A full run also records its delisting (``delist_outcome``, ``delist_candidates``,
``delist_still_listed``; see :meth:`MatterProductsSpider.delist_record`): whether
it delisted the products proven gone, or why it delisted none (too many
candidates, an incomplete listing, a lost batch, markup drift, interrupted).
A crawl closed for markup drift is ``failed`` with finish reason ``markup_drift``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Self

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.settings import BaseSettings

from ..core.session import CrawlSession
from ..redaction import mask_credentials, masked
from ..storage import Database, resolve_database_url
from ..storage.runs import finish_run, resume_run, start_run

logger = logging.getLogger(__name__)

STATE_NAME = "run_record"


def settings_snapshot(settings: BaseSettings) -> dict[str, Any]:
    """The settings that differ from Scrapy's defaults, credentials masked, JSON-safe.

    ``DATABASE_URL`` is the database in use (also when it came from the
    environment); every URL's password and every secret-named value is ``***``
    (:func:`matter_crawler.redaction.masked`).
    """
    snapshot: dict[str, Any] = {}
    for name, value in settings.items():
        if (settings.getpriority(name) or 0) <= 0:
            continue
        snapshot[name] = _json_safe(masked(value, name))
    snapshot["DATABASE_URL"] = mask_credentials(resolve_database_url(settings))
    return snapshot


def _json_safe(value: Any) -> Any:
    if isinstance(value, BaseSettings):
        value = value.copy_to_dict()
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return mask_credentials(repr(value))


def _status(reason: str) -> str:
    if reason == "finished":
        return "finished"
    if reason == "shutdown":
        return "stopped"
    return "failed"


def stage_reached(spider: Spider, reason: str, *, batches_lost: int = 0) -> str | None:
    """The stage a run reached: ``done`` only for a finished run that saw its whole listing.

    A run that lost a batch stays at ``detail``: not everything it fetched was stored.
    """
    stage = spider.stage() if callable(getattr(spider, "stage", None)) else None
    complete = getattr(spider, "complete", None)
    if callable(complete):  # a spider that says itself whether it read everything (dcl)
        return "done" if reason == "finished" and complete() and not batches_lost else stage
    plan = getattr(spider, "plan", None)
    if reason != "finished" or plan is None:
        return stage
    if plan.pages_failed:
        return "list"  # out of work, but with holes in the listing
    if stage in ("detail", "delist") and not batches_lost:
        return "done"
    return stage


class RunRecorder:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.database = Database.from_crawler(crawler)
        self.session = CrawlSession.from_crawler(crawler)
        self._started = monotonic()
        self._opened = False  # whether this process started or continued the run
        # what the run's earlier processes took (JOBDIR); zeroed if a new run starts
        saved = self.session.restored_state(STATE_NAME) or {}
        self._earlier_seconds = float(saved.get("duration_seconds", 0.0))
        self.session.register_state(STATE_NAME, self._saved_state)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("RUN_RECORD_ENABLED"):
            raise NotConfigured
        extension = cls(crawler)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    async def spider_opened(self, spider: Spider) -> None:
        self._started = monotonic()
        session = self.session
        if session.run_id is not None and await self.database.run(resume_run, session.run_id):
            logger.info("Continuing crawl run %d", session.run_id)
        else:
            self._earlier_seconds = 0.0
            session.run_id = await self.database.run(
                lambda engine: start_run(
                    engine,
                    spider=spider.name,
                    job_id=getattr(spider, "_job", None),
                    mode=getattr(spider, "mode_requested", None),
                    settings=settings_snapshot(self.crawler.settings),
                    now=datetime.now(UTC),
                )
            )
            logger.info("Started crawl run %d", session.run_id)
        self.crawler.stats.set_value("matter/run_id", session.run_id)
        self._opened = True
        session.save_state()  # a hard kill from here on still knows its run

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.session.run_id is None or not self._opened:
            return  # e.g. stopped while waiting for the database (DATABASE_LOCK=wait)
        stats = self.crawler.stats
        get = stats.get_value
        plan = getattr(spider, "plan", None)
        now = datetime.now(UTC)
        batches_lost = get("store/batches_lost", 0)
        if batches_lost:
            logger.error(
                "Crawl run %d lost %d batches (store/batches_lost): recorded as failed",
                self.session.run_id,
                batches_lost,
            )
        values = {
            "status": "failed" if batches_lost else _status(reason),
            "finish_reason": reason,
            "stage": stage_reached(spider, reason, batches_lost=batches_lost),
            "mode": plan.mode if plan is not None else None,
            "finished_at": now,
            "duration_seconds": round(self._duration(), 3),
            "pages_planned": plan.target_last_page() if plan is not None else None,
            "pages_crawled": get("matter/list/pages", 0),
            "products_listed": get("matter/list/cards", 0),
            "items_invalid": get("validation/invalid", 0),
            "retries": get("retry/count", 0),
            "errors": get("log_count/ERROR", 0),
            "requests": get("downloader/request_count", 0),
            "stats": _json_safe(stats.get_stats()),
        }
        delist_record = getattr(spider, "delist_record", None)
        if callable(delist_record):
            values.update(delist_record(reason))
        page_counts = getattr(spider, "page_counts", None)
        if callable(page_counts):  # a spider counting its own pages (the dcl spider's walk)
            values.update(page_counts())
        run_id = self.session.run_id
        await self.database.run(
            lambda engine: finish_run(engine, run_id, values, count_products=True)
        )
        logger.info("Crawl run %d %s (%s)", run_id, values["status"], reason)

    def _duration(self) -> float:
        return self._earlier_seconds + monotonic() - self._started

    def _saved_state(self) -> dict[str, Any]:
        return {"duration_seconds": round(self._duration(), 3)}
