"""Live control of a running crawl: pause, resume, stop, and switch the operating profile.

The commands come over the monitoring server (``POST /control/<command>``,
checked by :mod:`matter_crawler.monitoring.control`) from the live page's buttons or
``scrapy control``. Each crawl makes a random token when its spider opens and writes
it, mode 0600, to ``CONTROL_TOKEN_FILE``; when that is empty, to
``JOBDIR/matter_crawler.control-token``, else next to the SQLite database
(``<database file>.control-token``). Without any of these (PostgreSQL, no JOBDIR)
the control is off, and the log says so. The file is removed at close. The token is
never logged, served or counted.

- ``pause``: the engine takes no new request from the scheduler (``engine.pause()``);
  the requests the downloader holds finish. Once it is empty the crawl is
  ``paused``: the crawl's own state is saved to JOBDIR then (what a clean close
  saves; Scrapy's queue is on disk already, and a crawl killed while paused plans
  again from the database, as after any kill), and a ``run`` event says so.
- ``resume``: ``engine.unpause()``; Scrapy's engine picks the next request within
  its 5 s heartbeat.
- ``stop``: ``crawler.stop_async()``, what Ctrl-C does: a graceful stop, JOBDIR
  kept for a resume.
- ``profile``: the adaptive controller's bounds become those of another profile
  (:data:`~matter_crawler.profiles.PROFILES`), computed as at start, so explicit
  settings still win (``CONCURRENT_REQUESTS_PER_DOMAIN`` a ceiling,
  ``DOWNLOAD_DELAY`` a floor) and ``ADAPTIVE_DOMAIN_LIMITS`` still caps every domain.
  The memory ceilings stay. It lasts for this process: a resumed job starts with
  its ``CRAWL_PROFILE`` again.

``CONTROL_ENABLED = False``: no control routes, no token file. Stats: ``control/<command>``
(commands carried out) and ``control/refused`` (commands refused for their origin,
header or token).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from time import monotonic, time
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.settings import BaseSettings
from scrapy.utils.asyncio import call_later, create_looping_call
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.job import job_dir
from sqlalchemy.engine import make_url

from ..adaptive.extension import AdaptiveConcurrency
from ..adaptive.limits import limits_from_settings, tuning_from_settings
from ..core.session import CrawlSession
from ..monitoring.control import ControlError, ControlResource
from ..monitoring.crawlstate import requests_in_flight
from ..monitoring.server import MonitoringServer
from ..profiles import PROFILES
from ..storage.database import resolve_database_url
from .progress import ProgressMonitor

logger = logging.getLogger(__name__)

TOKEN_FILE = "matter_crawler.control-token"
TOKEN_SUFFIX = ".control-token"
#: Seconds between looks at the downloader while a pause waits for its requests to finish.
DRAIN_CHECK_INTERVAL = 0.1


def token_path(settings: BaseSettings) -> Path | None:
    """Where the crawl's control token goes (see the module docstring), or None."""
    explicit = settings.get("CONTROL_TOKEN_FILE")
    if explicit:
        return Path(explicit)
    directory = job_dir(settings)
    if directory:
        return Path(directory) / TOKEN_FILE
    url = make_url(resolve_database_url(settings))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(f"{url.database}{TOKEN_SUFFIX}")
    return None


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to a new file only its owner can read (a leftover one is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)  # whatever the umask
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(token + "\n")


def profile_settings(settings: BaseSettings, name: str) -> BaseSettings:
    """``settings`` as if the crawl had started with ``CRAWL_PROFILE=name``: the profile's
    values at add-on priority, so whatever was set above it (explicitly) still wins."""
    switched = BaseSettings()
    for key in settings:
        switched.set(key, settings[key], priority=settings.getpriority(key) or 0)
    switched.setdict(PROFILES[name], priority="addon")
    return switched


class CrawlControl:
    def __init__(self, crawler: Crawler, path: Path) -> None:
        self.crawler = crawler
        self.path = path
        self.token = secrets.token_urlsafe(32)
        self.state = "starting"  # running, pausing, paused, stopping, closed; off: no token
        self.profile: str = crawler.settings.get("CRAWL_PROFILE")
        self.paused_seconds = 0.0  # paused time so far, earlier pauses included
        self._paused_since: float | None = None
        self._drain: Any = None
        self.server = MonitoringServer.from_crawler(crawler)
        self.server.put("control", ControlResource(self))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("CONTROL_ENABLED") or not settings.getbool(
            "MONITORING_SERVER_ENABLED"
        ):
            raise NotConfigured
        path = token_path(settings)
        if path is None:
            logger.warning(
                "Live control is off: no place for its token (set JOBDIR or CONTROL_TOKEN_FILE)"
            )
            raise NotConfigured
        control = cls(crawler, path)
        crawler.signals.connect(control.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(control.spider_closed, signal=signals.spider_closed)
        return control

    # -- life cycle ----------------------------------------------------------------------

    def spider_opened(self) -> None:
        try:
            write_token(self.path, self.token)
        except OSError as error:
            self.state = "off"
            logger.error("Live control is off: cannot write its token to %s: %s", self.path, error)
            return
        self.state = "running"
        logger.info("Live control on: its token is in %s (mode 0600)", self.path)
        self.server.start()  # started by the monitoring extensions too; idempotent

    def spider_closed(self) -> None:
        if self.state == "off":
            return
        self.state = "closed"
        self._stop_drain()
        try:
            if hmac.compare_digest(self.path.read_text(encoding="ascii").strip(), self.token):
                self.path.unlink()
        except OSError:
            pass  # gone already, or replaced: not ours to remove

    # -- what the server asks ------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "profile": self.profile,
            "profiles": list(PROFILES),
            "in_flight": requests_in_flight(self.crawler),
            "paused_seconds": round(self._paused_total(), 1),
            "token_file": str(self.path),
        }

    def refused(self, status: int) -> None:
        self.crawler.stats.inc_value("control/refused")

    def command(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if self.state in ("starting", "stopping", "closed", "off"):
            raise ControlError(409, f"the crawl is {self.state}")
        if name == "pause":
            self.pause()
        elif name == "resume":
            self.resume()
        elif name == "stop":
            self.stop()
        else:
            self.switch_profile(str(arguments.get("profile")))
        self.crawler.stats.inc_value(f"control/{name}")
        return self.describe()

    # -- the commands --------------------------------------------------------------------

    def pause(self) -> None:
        if self.state != "running":
            return
        self.crawler.engine.pause()
        self.state = "pausing"
        self._paused_since = monotonic()
        logger.info("Pausing the crawl (live control): no new requests; those in flight finish")
        self._drain = create_looping_call(self._check_drained)
        self._drain.start(DRAIN_CHECK_INTERVAL, now=True)

    def _check_drained(self) -> None:
        if self.state != "pausing" or self.crawler.engine.downloader.active:
            return
        self._stop_drain()
        self.state = "paused"
        CrawlSession.from_crawler(self.crawler).save_state()
        logger.info("Crawl paused (live control): no request in flight, crawl state saved")
        self._event("paused")

    def _stop_drain(self) -> None:
        if self._drain is not None and self._drain.running:
            self._drain.stop()
        self._drain = None

    def resume(self) -> None:
        if self.state not in ("pausing", "paused"):
            return
        self._stop_drain()
        paused = self._paused_total() - self.paused_seconds
        self.paused_seconds = self._paused_total()
        self._paused_since = None
        self.state = "running"
        self.crawler.engine.unpause()
        logger.info("Crawl resumed (live control) after %.1f s paused", paused)
        self._event("resumed", paused_seconds=round(paused, 1))

    def stop(self) -> None:
        self.state = "stopping"
        self._stop_drain()
        logger.info("Stop requested (live control): stopping gracefully, as on Ctrl-C")
        self._event("stopping")
        call_later(0, self._stop)  # after this answer is sent

    def _stop(self) -> None:
        deferred_from_coro(self.crawler.stop_async())

    def switch_profile(self, name: str) -> None:
        if name not in PROFILES:
            raise ControlError(400, f"no profile {name!r}: one of {', '.join(PROFILES)}")
        try:
            adaptive = self.crawler.get_extension(AdaptiveConcurrency)
        except RuntimeError:
            adaptive = None
        if adaptive is None:
            raise ControlError(
                409, "the profile is switched live through the adaptive controller, which is off"
            )
        settings = profile_settings(self.crawler.settings, name)
        limits = limits_from_settings(settings)
        adaptive.set_bounds(limits, tuning_from_settings(settings))
        self.crawler.engine.downloader.total_concurrency = settings.getint("CONCURRENT_REQUESTS")
        old, self.profile = self.profile, name
        logger.info(
            "Profile %s -> %s (live control): %d-%d requests at a time, %.2f-%.2f s apart "
            "per domain, within each domain's ADAPTIVE_DOMAIN_LIMITS",
            old,
            name,
            limits.min_concurrency,
            limits.max_concurrency,
            limits.min_delay,
            limits.max_delay,
        )
        self._event("profile")

    # -- helpers ---------------------------------------------------------------------------

    def _paused_total(self) -> float:
        if self._paused_since is None:
            return self.paused_seconds
        return self.paused_seconds + monotonic() - self._paused_since

    def _event(self, state: str, **fields: Any) -> None:
        try:
            monitor = self.crawler.get_extension(ProgressMonitor)
        except RuntimeError:
            monitor = None
        if monitor is not None:
            monitor.hub.run(state, t=round(time(), 3), profile=self.profile, **fields)
