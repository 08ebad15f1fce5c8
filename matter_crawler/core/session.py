"""What one crawl's components share: the run id and the state kept in JOBDIR.

Scrapy's JOBDIR keeps the scheduler queue and the seen-request fingerprints.
What lives only in our components (the run id, the spider's crawl plan, breaker
and retry states, learned concurrency, progress counters) is kept beside them
in ``JOBDIR/matter_crawler.state.json``: each component registers a provider
(:meth:`CrawlSession.register_state`) and reads back what it saved
(:meth:`CrawlSession.restored_state`). The file is written at spider close and
every ``JOBDIR_STATE_SAVE_INTERVAL`` seconds.

The crawl's counters live in Scrapy's stats, which start from nothing in every
process, so the session keeps them itself: the counting stats (our prefixes
and Scrapy's request, response, item and log counts; never gauges such as
``memusage/*``, ``adaptive/*``, ``start_time`` or ``matter/run_id``) are saved
with the job and added back when the resumed process's spider opens (the
session, created by the spider, handles that signal before any component), so
before the crawl counts anything. Progress and run totals then cover the whole
run, not its last process.

A hard kill leaves Scrapy's queue files out of step with each other (its queue
index is only written on close, the fingerprint file is appended as it goes),
which would make a resumed crawl skip requests it never made. So a marker file
naming the process (pid, host, process start: :mod:`matter_crawler.core.liveness`)
is written at open and removed at a clean close. Finding it at start-up, the
session asks whether that process still runs: if it does (or runs on another
host, where it cannot be asked), the JOBDIR is in use and the crawl refuses to
start (:class:`JobdirInUse`, before Scrapy's scheduler opens anything in it);
if it does not, the previous process died, and the session discards Scrapy's
queue and fingerprints before the scheduler loads them. The crawl plans again from the
database: work is re-fetched, nothing is lost or stored twice. The counters
then come from the last periodic save: the plan's own (``matter/``: listing
pages and product pages planned and done) are dropped with the plan they
counted, so progress restarts with the new plan (``dcl/``: the dcl spider's walk,
which starts again); the others (requests,
responses, retries, batches...) are kept, so they count the work re-done too
and miss what the dead process did after its last save. The run record takes
its product counts from the database, which are exact either way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.job import job_dir

from .liveness import ProcessIdentity, is_running

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

STATE_FILE = "matter_crawler.state.json"
RUNNING_MARKER = "matter_crawler.running"
_SCRAPY_QUEUE_STATE = ("requests.queue", "requests.seen")
COUNTERS_STATE = "counters"

#: Stats that count something over the whole run (a stat under one of these
#: prefixes, with a number as value). Scheduler queue counts are left out: a
#: resumed process loads its queue again and counts it again.
COUNTER_PREFIXES = (
    "matter/",
    "dcl/",
    "store/",
    "sightings/",
    "delist/",
    "refresh/",
    "retry/",
    "dead_letters/",
    "callback_errors/",
    "circuit/",
    "validation/",
    "render/",
    "scheduler/delayed/",
    "downloader/request_",
    "downloader/response_",
    "downloader/exception_",
    "httperror/",
    "spider_exceptions/",
    "robotstxt/",
    "log_count/",
    "item_scraped_count",
    "item_dropped_",
    "response_received_count",
)
#: Numbers under those prefixes that are not counts.
GAUGES = frozenset(
    {
        "matter/run_id",
        # set once per run from the plan, not counted
        "delist/candidates",
        "delist/refused",
        "refresh/quota",
        "refresh/due",
    }
)
#: Counters of the crawl plan (and of the dcl spider's walk), which a hard kill
#: discards (see the module docstring).
PLAN_COUNTER_PREFIX = ("matter/", "dcl/")

#: What a crawl's command line holds (to tell a crawl from a program that reused its pid).
CRAWL_PROGRAM = "scrapy"

_per_crawler: weakref.WeakKeyDictionary[Crawler, CrawlSession] = weakref.WeakKeyDictionary()


class JobdirInUse(RuntimeError):
    """A running crawl uses the JOBDIR: a second process must not touch it."""


def is_counter(name: str, value: Any) -> bool:
    """Whether the stat ``name`` counts something over the run (and is saved with the job)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and name.startswith(COUNTER_PREFIXES)
        and name not in GAUGES
    )


class CrawlSession:
    """Shared per-crawl context. Get it with :meth:`from_crawler`."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        directory = job_dir(crawler.settings)
        self.jobdir: Path | None = Path(directory) if directory else None
        self.run_id: int | None = None
        self.resumed = False  # a JOBDIR from a cleanly stopped process
        self.recovered = False  # a JOBDIR from a process that died
        self._restored: dict[str, Any] = {}
        self._providers: dict[str, Callable[[], Any]] = {}
        self._saver = None
        self._marker_before: str | None = None  # the marker found at start, if any
        if self.jobdir is not None:
            self._open_jobdir(self.jobdir)
            self.register_state(COUNTERS_STATE, self._counters)
        crawler.signals.connect(self._spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlSession:
        session = _per_crawler.get(crawler)
        if session is None:
            session = _per_crawler[crawler] = cls(crawler)
        return session

    def _open_jobdir(self, jobdir: Path) -> None:
        state_path = jobdir / STATE_FILE
        if state_path.exists():
            try:
                self._restored = json.loads(state_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                logger.warning("Ignoring unreadable crawl state %s: %s", state_path, error)
        self.run_id = self._restored.get("run_id")
        marker = jobdir / RUNNING_MARKER
        if marker.exists():
            self._marker_before = marker.read_text(encoding="utf-8")
            owner = ProcessIdentity.from_text(self._marker_before)
            running = is_running(owner, program=CRAWL_PROGRAM) if owner is not None else False
            if running is not False:
                assert owner is not None
                where = "runs" if running else "may still run (another host: it cannot be asked)"
                message = (
                    f"JOBDIR {jobdir} is in use: the crawl that opened it ({owner.describe()}) "
                    f"{where}. Stop it first, or use another JOBDIR"
                    + ("" if running else f"; if it is gone, delete {marker}")
                )
                logger.error("%s", message)
                raise JobdirInUse(message)
            self.recovered = True
            logger.warning(
                "The previous crawl in %s did not stop cleanly (%s); discarding its "
                "request queue: the crawl plans again from the database",
                jobdir,
                owner.describe() if owner is not None else "pid ?",
            )
            for name in _SCRAPY_QUEUE_STATE:
                path = jobdir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        elif self._restored:
            self.resumed = True
        marker.write_text(ProcessIdentity.current().to_json(), encoding="utf-8")

    def abandon_jobdir(self) -> None:
        """The crawl will not start after all: leave the marker as it was found.

        (A stale marker stays: the queue it stood for is already discarded, and
        the next start recovers the same way.)
        """
        if self.jobdir is None:
            return
        marker = self.jobdir / RUNNING_MARKER
        if self._marker_before is None:
            marker.unlink(missing_ok=True)
        else:
            marker.write_text(self._marker_before, encoding="utf-8")

    def _restore_counters(self) -> None:
        # Added, not set: what this process counted already (log lines) stays.
        saved = self._restored.get(COUNTERS_STATE) or {}
        stats = self.crawler.stats
        for name, value in saved.items():
            if not is_counter(name, value):
                continue
            if self.recovered and name.startswith(PLAN_COUNTER_PREFIX):
                continue  # the plan they counted was discarded with the queue
            stats.inc_value(name, value)

    def _counters(self) -> dict[str, int | float]:
        return {
            name: value
            for name, value in self.crawler.stats.get_stats().items()
            if is_counter(name, value)
        }

    # -- component state ------------------------------------------------------

    def register_state(self, name: str, provider: Callable[[], Any]) -> None:
        """Save ``provider()`` under ``name`` with the job (JSON-serialisable)."""
        self._providers[name] = provider

    def restored_state(self, name: str, *, queue_bound: bool = False) -> Any:
        """What was saved under ``name`` by the previous process of this job, or None.

        ``queue_bound`` state describes requests in Scrapy's queue (a crawl plan):
        it is dropped after a hard kill, when that queue was discarded.
        """
        if queue_bound and self.recovered:
            return None
        return self._restored.get(name)

    def save_state(self) -> None:
        if self.jobdir is None:
            return
        state: dict[str, Any] = {"run_id": self.run_id}
        for name, provider in self._providers.items():
            try:
                state[name] = provider()
            except Exception:
                logger.exception("Could not collect the crawl state of %s", name)
        path = self.jobdir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, default=str), encoding="utf-8")
        os.replace(temporary, path)  # atomic: a kill never leaves half a file

    # -- signals --------------------------------------------------------------

    def _spider_opened(self) -> None:
        if self.jobdir is None:
            return
        self._restore_counters()  # Crawler.stats exists only from the crawl's start on
        interval = self.crawler.settings.getfloat("JOBDIR_STATE_SAVE_INTERVAL")
        if interval > 0:
            self._saver = create_looping_call(self.save_state)
            self._saver.start(interval, now=False)

    def _spider_closed(self) -> None:
        if self._saver is not None and self._saver.running:
            self._saver.stop()
        if self.jobdir is None:
            return
        self.save_state()
        (self.jobdir / RUNNING_MARKER).unlink(missing_ok=True)
