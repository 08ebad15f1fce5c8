"""The ``dcl`` spider: every record of the Distributed Compliance Ledger, into the database.

``scrapy crawl dcl`` walks the ledger's REST API at ``DCL_BASE_URL`` (the
observer node; the simulated site serves one under ``/dcl/`` with ``--dcl``)
and yields a :class:`~matter_crawler.dcl.records.DclRecord` per record, which
the validation and batch store pipelines upsert into the ``dcl_*`` tables:

- the six lists, page by page, ``DCL_PAGE_LIMIT`` records a page, each page
  asking for the next with the previous answer's ``pagination.next_key``:
  vendors, models, compliance records, and the certified, provisional and
  revoked model lists (the first page also asks ``pagination.count_total``,
  which gives each list's length to the progress);
- for each model listed, its software version numbers
  (``/dcl/model/versions/{vid}/{pid}``; a NotFound answer means the model has
  no version: counted in ``dcl/models_without_versions``, not an error);
- for each version number, the version record (the ledger lists no versions
  but per model).

Requests of a full walk: ``sum over the six lists of max(1, ceil(records /
DCL_PAGE_LIMIT)) + models + model versions``, the fewest the API allows (a
model's versions are listed by no list path). Retries come on top.

A page that fails for good (retries spent, an answer the parser refuses, a
callback that raised) is dead-lettered under its URL and counted failed; a
list goes on after it with the next page by ``pagination.offset``, so one lost
page loses only its own records. A walk with a failed page is incomplete: the
run record's stage is then the first stage with a failed page, and ``done``
only when every page succeeded and no batch was lost. A page that parses
resolves its dead letter of an earlier run; a walk that read every page resolves
every pending letter of the ledger at ``DCL_BASE_URL`` (when the spider goes
idle), since it has read whatever those pages held: the pages asked for by
offset after a failed one, and the versions of a model since gone, which a walk
without failures never asks for again.

JOBDIR: Scrapy's queue and dupefilter resume the walk after a graceful stop;
the walk's counts (:class:`~matter_crawler.dcl.walk.Walk`) are saved with the
job, and a request the dupefilter drops is not counted. After a hard kill the
session discards Scrapy's queue and the walk starts again from the first pages
(the store's upserts are idempotent).

Stats: ``dcl/requests`` (pages asked for, retries excluded), ``dcl/pages/<stage>``,
``dcl/failed/<stage>``, ``dcl/records/<kind>``, ``dcl/models_without_versions``,
``dcl/offset_pages`` (pages asked for by offset after a failed one).
Stages (``meta["stage"]``, progress, dead letters): ``vendors``, ``models``,
``compliance``, ``certified``, ``provisional``, ``revoked``, ``versions``,
``model_versions``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlparse

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from twisted.python.failure import Failure

from ..core.session import CrawlSession
from ..dcl.parsing import (
    is_not_found,
    list_page_url,
    parse_list_page,
    parse_record,
    parse_versions,
    versions_url,
)
from ..dcl.records import DclRecord
from ..dcl.walk import LIST_STAGES, MODEL_VERSIONS, STAGES, VERSIONS, Walk
from ..exceptions import DeadLettered
from ..parsing import PageParseError
from ..request_url import requested_url
from ..signals import dead_letter_resolved, send_dead_letter
from ..storage import Database
from ..storage.dead_letters import pending_letters

logger = logging.getLogger(__name__)

STATE_NAME = "dcl_walk"
#: Records first: a model's versions and their records go before the next list pages,
#: so the queue stays short.
LIST_PRIORITY, VERSIONS_PRIORITY, RECORD_PRIORITY = 0, 10, 20
#: request.meta: how the page ended (``done`` / ``failed``), so it is counted once
FINISHED = "dcl_finished"
#: request.meta: the list's next page was asked for
CONTINUED = "dcl_continued"


class DclSpider(Spider):
    name = "dcl"

    def __init__(self, **kwargs: Any) -> None:
        # **kwargs: scrapyd passes _job, and Scrapy its own keyword arguments
        super().__init__(**kwargs)
        self.walk: Walk | None = None
        # pending letters of earlier walks of this ledger: resolved by a complete walk
        self.superseded_letters: list[str] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> DclSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.base_url = settings.get("DCL_BASE_URL").rstrip("/")
        spider.page_limit = settings.getint("DCL_PAGE_LIMIT")
        if spider.page_limit < 1:
            raise ValueError(f"DCL_PAGE_LIMIT must be at least 1, not {spider.page_limit}")
        spider.allowed_domains = [urlparse(spider.base_url).hostname or ""]
        spider.session = CrawlSession.from_crawler(crawler)
        spider.session.register_state(STATE_NAME, spider._saved_state)
        crawler.signals.connect(spider.request_dropped, signal=signals.request_dropped)
        crawler.signals.connect(spider.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(spider.spider_idle, signal=signals.spider_idle)
        return spider

    # -- start --------------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Request]:
        saved = self.session.restored_state(STATE_NAME, queue_bound=True)
        if saved:
            self.walk = Walk.from_state(saved)
            self.page_limit = self.walk.limit  # the pages in the job's queue are of that size
            logger.info("Resuming the DCL walk: %d pages asked for so far", self.walk.requests())
        else:
            self.walk = Walk(limit=self.page_limit)
        # Each list's first page. Scrapy takes start requests only while the downloader
        # has room, so a stop can come before all were taken: a resumed walk asks again,
        # and those already asked for are dropped as seen (and not counted twice).
        for stage in LIST_STAGES:
            yield self.list_request(stage, 1)
        self.walk.started = True  # after the first pages: a walk with none is not over

    # -- requests -----------------------------------------------------------------------

    def list_request(
        self, stage: str, page: int, *, key: str | None = None, offset: int | None = None
    ) -> Request:
        """Page ``page`` of a list: the first, the one after ``key``, or the one at ``offset``."""
        _, _, path = LIST_STAGES[stage]
        count_total = key is None  # a key's page is never counted
        url = list_page_url(
            self.base_url, path, self.page_limit, key=key, offset=offset, count_total=count_total
        )
        self._planned(stage)
        if offset:
            self.crawler.stats.inc_value("dcl/offset_pages")
        return Request(
            url,
            callback=self.parse_list,
            errback=self.page_errback,
            priority=LIST_PRIORITY,
            meta={"stage": stage, "page": page, "count_total": count_total},
        )

    def versions_request(self, vid: int, pid: int) -> Request:
        self._planned(VERSIONS)
        return Request(
            versions_url(self.base_url, vid, pid),
            callback=self.parse_versions,
            errback=self.page_errback,
            priority=VERSIONS_PRIORITY,
            # NotFound: the model has no version (the callback tells it from a bad path)
            meta={"stage": VERSIONS, "vid": vid, "pid": pid, "handle_httpstatus_list": [404]},
        )

    def version_request(self, vid: int, pid: int, software_version: int) -> Request:
        self._planned(MODEL_VERSIONS)
        return Request(
            f"{versions_url(self.base_url, vid, pid)}/{software_version}",
            callback=self.parse_version,
            errback=self.page_errback,
            priority=RECORD_PRIORITY,
            meta={"stage": MODEL_VERSIONS},
        )

    def _planned(self, stage: str) -> None:
        self.current_walk().planned(stage)
        self.crawler.stats.inc_value("dcl/requests")

    def request_dropped(self, request: Request) -> None:
        """A request the dupefilter dropped (asked for already): not a page of the walk."""
        stage = request.meta.get("stage")
        if self.walk is None or stage not in self.walk.stages or request.meta.get(FINISHED):
            return
        self.walk.unplanned(stage)
        self.crawler.stats.inc_value("dcl/requests", -1)

    # -- callbacks ----------------------------------------------------------------------

    def parse_list(self, response: Response) -> Iterator[Any]:
        meta = response.meta
        stage, page = meta["stage"], meta["page"]
        kind, list_name, _ = LIST_STAGES[stage]
        try:
            answer = parse_list_page(
                response.body, kind, self.base_url, requested_url(response.request),
                list_name=list_name,
            )  # fmt: skip
        except PageParseError as error:
            self._refused(response, error)
            yield from self._continue_list(response.request)
            return
        walk = self.current_walk()
        if meta.get("count_total"):
            walk.counted(stage, answer.total)
        output: list[Any] = list(answer.records)
        if stage == "models":
            output += [
                self.versions_request(r.values["vid"], r.values["pid"])
                for r in answer.records
                if r.values.get("vid") is not None and r.values.get("pid") is not None
            ]
        if answer.next_key is not None:
            meta[CONTINUED] = True
            output.append(self.list_request(stage, page + 1, key=answer.next_key))
        self._done(response, len(answer.records))
        self._count_records(answer.records)
        yield from output

    def parse_versions(self, response: Response) -> Iterator[Request]:
        meta = response.meta
        if response.status == 404:
            if not is_not_found(response.body):
                self._refused(response, PageParseError("404 without the ledger's NotFound answer"))
                return
            self.crawler.stats.inc_value("dcl/models_without_versions")
            self._done(response, 0)
            return
        try:
            numbers = parse_versions(response.body)
        except PageParseError as error:
            self._refused(response, error)
            return
        requests = [self.version_request(meta["vid"], meta["pid"], n) for n in numbers]
        self._done(response, len(numbers))
        yield from requests

    def parse_version(self, response: Response) -> Iterator[DclRecord]:
        url = requested_url(response.request)
        try:
            record = parse_record(response.body, "model_version", self.base_url, url)
        except PageParseError as error:
            self._refused(response, error)
            return
        self._done(response, 1)
        self._count_records([record])
        yield record

    def _done(self, response: Response, records: int) -> None:
        stage = response.meta["stage"]
        response.meta[FINISHED] = "done"
        self.current_walk().done(stage, records)
        self.crawler.stats.inc_value(f"dcl/pages/{stage}")
        # the page parsed: a letter an earlier run left for it is resolved
        url = requested_url(response.request)
        self.crawler.signals.send_catch_log(signal=dead_letter_resolved, url=url)

    def _count_records(self, records: list[DclRecord]) -> None:
        for record in records:
            self.crawler.stats.inc_value(f"dcl/records/{record.kind}")

    # -- failures -----------------------------------------------------------------------

    def _refused(self, response: Response, error: PageParseError) -> None:
        """Dead-letter a page the parser refuses, and count it failed."""
        request = response.request
        url = requested_url(request)
        stage = response.meta["stage"]
        logger.warning("DCL page %s refused: %s", url, error.reason)
        send_dead_letter(
            self.crawler,
            request=request,
            url=url,
            stage=stage,
            failure_class="parse",
            reason=error.reason,
            attempts=response.meta.get("retry_times", 0) + 1,
        )
        self._failed(request)

    def page_errback(self, failure: Failure) -> Iterator[Request]:
        """A page that failed for good: dead-lettered (by the retry middleware, else here)."""
        request = failure.request  # type: ignore[attr-defined]
        if not failure.check(DeadLettered):
            # robots.txt, an offsite or too many redirects: asking again changes nothing
            failure_class = "permanent" if failure.check(IgnoreRequest) else "transient"
            send_dead_letter(
                self.crawler,
                request=request,
                url=requested_url(request),
                stage=request.meta.get("stage"),
                failure_class=failure_class,
                reason=f"{failure.type.__name__}: {failure.getErrorMessage()}",
                attempts=request.meta.get("retry_times", 0) + 1,
            )
        self._failed(request)
        yield from self._continue_list(request)

    def page_failed(self, request: Request, *, counted: bool = False) -> Iterator[Request]:
        """A page whose callback or errback raised (the middleware dead-lettered it).

        Called by :class:`~matter_crawler.middlewares.callback_errors.CallbackErrorMiddleware`.
        """
        self._failed(request)
        yield from self._continue_list(request)

    def _failed(self, request: Request) -> None:
        stage = request.meta.get("stage")
        if stage is None or self.walk is None:
            return
        finished = request.meta.get(FINISHED)
        if finished == "failed":
            return
        if finished == "done":
            self.walk.undone(stage)
        else:
            self.walk.failed(stage)
        request.meta[FINISHED] = "failed"
        self.crawler.stats.inc_value(f"dcl/failed/{stage}")

    def _continue_list(self, request: Request) -> Iterator[Request]:
        """After a list page that failed: the next page, by offset (its key is unknown)."""
        meta = request.meta
        stage = meta.get("stage")
        if stage not in LIST_STAGES or meta.get(CONTINUED):
            return
        meta[CONTINUED] = True
        page = meta["page"] + 1
        if self.current_walk().list_over(stage, page):
            return
        yield self.list_request(stage, page, offset=(page - 1) * self.page_limit)

    async def spider_opened(self) -> None:
        letters = await Database.from_crawler(self.crawler).run(pending_letters)
        prefix = f"{self.base_url}/"
        self.superseded_letters = [
            letter["url"]
            for letter in letters
            if letter["stage"] in STAGES and letter["url"].startswith(prefix)
        ]

    def spider_idle(self) -> None:
        """The walk is over: if it read every page, no earlier letter of the ledger stands."""
        if not self.superseded_letters or self.walk is None or not self.walk.complete():
            return
        logger.info(
            "The walk read every page: resolving %d dead letters of earlier walks",
            len(self.superseded_letters),
        )
        for url in self.superseded_letters:
            self.crawler.signals.send_catch_log(signal=dead_letter_resolved, url=url)
        self.superseded_letters = []

    # -- state and progress -------------------------------------------------------------

    def current_walk(self) -> Walk:
        assert self.walk is not None, "start() sets the walk"
        return self.walk

    def _saved_state(self) -> dict[str, Any] | None:
        return self.walk.to_state() if self.walk is not None else None

    def progress(self) -> dict[str, Any]:
        """Pages per stage, planned and done (see :meth:`Walk.progress`)."""
        if self.walk is None:
            return {"stages": {}}
        return self.walk.progress()

    def stage(self) -> str:
        return self.walk.stage() if self.walk is not None else "start"

    def page_counts(self) -> dict[str, int]:
        """The run record's pages: asked for, and read (every stage's)."""
        if self.walk is None:
            return {}
        done = sum(count.done for count in self.walk.stages.values())
        return {"pages_planned": self.walk.requests(), "pages_crawled": done}

    def complete(self) -> bool:
        """Whether the walk read every page (the run record's ``done``)."""
        return self.walk is not None and self.walk.complete()
