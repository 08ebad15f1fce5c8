"""What one crawl's components share: the run id and the state kept in JOBDIR.

Scrapy's JOBDIR keeps the scheduler queue and the seen-request fingerprints.
What lives only in our components (the run id, the spider's crawl plan, breaker
and retry states, learned concurrency, progress counters) is kept beside them
in ``JOBDIR/matter_crawler.state.json``: each component registers a provider
(:meth:`CrawlSession.register_state`) and reads back what it saved
(:meth:`CrawlSession.restored_state`). The file is written at spider close and
every ``JOBDIR_STATE_SAVE_INTERVAL`` seconds.

A hard kill leaves Scrapy's queue files out of step with each other (its queue
index is only written on close, the fingerprint file is appended as it goes),
which would make a resumed crawl skip requests it never made. So a marker file
is written at open and removed at a clean close; finding it at start-up means
the previous process died, and the session then discards Scrapy's queue and
fingerprints before the scheduler loads them. The crawl plans again from the
database: work is re-fetched, nothing is lost or stored twice.
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

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

STATE_FILE = "matter_crawler.state.json"
RUNNING_MARKER = "matter_crawler.running"
_SCRAPY_QUEUE_STATE = ("requests.queue", "requests.seen")

_per_crawler: weakref.WeakKeyDictionary[Crawler, CrawlSession] = weakref.WeakKeyDictionary()


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
        if self.jobdir is not None:
            self._open_jobdir(self.jobdir)
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
            self.recovered = True
            logger.warning(
                "The previous crawl in %s did not stop cleanly (pid %s); discarding its "
                "request queue: the crawl plans again from the database",
                jobdir,
                marker.read_text(encoding="utf-8").strip() or "?",
            )
            for name in _SCRAPY_QUEUE_STATE:
                path = jobdir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        elif self._restored:
            self.resumed = True
        marker.write_text(str(os.getpid()), encoding="utf-8")

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
        interval = self.crawler.settings.getfloat("JOBDIR_STATE_SAVE_INTERVAL", 30.0)
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
