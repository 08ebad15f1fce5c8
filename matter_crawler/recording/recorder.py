"""The recorder: a polite one-request-at-a-time client of the site, on python-requests.

Politely: robots.txt is obeyed (and its Crawl-delay), one request at a time
with ``delay`` seconds between them, the project's ``USER_AGENT``, and retries
of the answers the crawl retries (:func:`~matter_crawler.middlewares.classify.status_class`
and the crawl's retry policies), waiting as long as a ``Retry-After`` asks, read
as the crawl reads it (:func:`~matter_crawler.middlewares.retry.parse_retry_after`),
up to ``RETRY_AFTER_MAX``. Every answer goes through a betamax cassette
(:mod:`.cassettes`): a page already recorded is replayed, never fetched again.
There is no Scrapy engine here (no reactor): waiting is ``time.sleep``.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from urllib.parse import urlsplit

import requests
from betamax import Betamax
from protego import Protego

from ..middlewares.classify import status_class
from ..middlewares.retry import DEFAULT_POLICIES, RetryPolicy, parse_retry_after
from ..parsing import ListingPage, page_number_from_url, parse_listing
from ..parsing.urls import listing_url
from ..planner import CARDS_PER_PAGE
from . import RecordingError
from .cassettes import CASSETTES, RECORDED_STATUSES, recorded_urls, use_cassette
from .limits import BoundedAdapter, PageTooLarge
from .redaction import redact_url
from .sampling import ranges, sample

#: save the cassette being recorded after this many new pages (an interrupted run keeps them)
SAVE_EVERY = 20
#: the longest wait between two tries of a page, whatever the backoff
BACKOFF_CAP = 60.0


@dataclass
class RecordOptions:
    """What to record, from where, how politely (settings and ``scrapy record-site`` options)."""

    directory: Path
    base_url: str  # CSA_BASE_URL
    listing_query: str  # CSA_LISTING_QUERY, without its "?"
    user_agent: str  # USER_AGENT
    listing_sample: int | None  # middle listing pages; None = all
    detail_sample: int | None  # product pages; None = all
    max_page_bytes: int  # RECORD_MAX_PAGE_SIZE, --max-page-size
    timeout: float  # DOWNLOAD_TIMEOUT, --timeout
    retry_after_max: float  # RETRY_AFTER_MAX
    # the command's options (their defaults are the command's)
    delay: float
    attempts: int
    seed: int
    headers: dict[str, str] = field(default_factory=dict)  # --header: sent, never recorded


@dataclass
class Fetched:
    url: str
    response: requests.Response | None = None
    replayed: bool = False
    error: str | None = None


@dataclass
class Phase:
    """One cassette being recorded: its session and how many pages it fetched."""

    name: str
    session: requests.Session
    recorder: Betamax
    fetched: int = 0


@dataclass
class RecordReport:
    fetched: Counter[str] = field(default_factory=Counter)
    replayed: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    disallowed: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    site_pages: int | None = None
    warnings: list[str] = field(default_factory=list)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SiteRecorder:
    """Records a sample of the catalogue's pages (see :mod:`matter_crawler.recording`)."""

    def __init__(self, options: RecordOptions, log: Callable[[str], None] = _stderr) -> None:
        self.options = options
        self.directory = options.directory
        self.base_url = options.base_url.rstrip("/")
        self.site_host = urlsplit(self.base_url).hostname or ""
        self.log = log
        self.report = RecordReport()
        self.robots: Protego | None = None  # None = everything allowed
        self.delay = options.delay
        self._last_request_at = float("-inf")  # monotonic time of the last network request
        self._not_before = 0.0  # a retry's wait (Retry-After, backoff)
        self.recorded: dict[str, set[str]] = {name: set() for name in CASSETTES}
        self.rng = random.Random(options.seed)

    def listing_url(self, page: int) -> str:
        return listing_url(self.base_url, page, self.options.listing_query)

    # -- network ----------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(
            {
                "User-Agent": self.options.user_agent,
                "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                "Accept-Language": "en",
                # gzip only: betamax keeps gzip bodies intact (we decode them), mangles deflate
                "Accept-Encoding": "gzip",
            }
        )
        session.headers.update(self.options.headers)
        # like the crawler (COOKIES_ENABLED = False): the catalogue needs no session
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # mounted before betamax wraps the session: it reads through this adapter
        bounded = BoundedAdapter(self.options.max_page_bytes)
        session.mount("http://", bounded)
        session.mount("https://", bounded)
        return session

    @contextmanager
    def phase(self, name: str, session: requests.Session) -> Iterator[Phase]:
        """Record into the cassette ``DIR/<name>.json``; saved on the way out, whatever happens."""
        recorder = use_cassette(
            session, self.directory, name, self.options.headers, self.options.max_page_bytes
        )
        self.recorded[name] = recorded_urls(recorder.current_cassette)
        recorder.start()
        try:
            yield Phase(name, session, recorder)
        finally:
            recorder.stop()

    def _wait_turn(self) -> None:
        """Sleep until ``delay`` after the last request (and any retry wait) has passed.

        Computed at each request, so a Crawl-delay learned from robots.txt
        already spaces the request that follows robots.txt.
        """
        remaining = max(self._last_request_at + self.delay, self._not_before) - time.monotonic()
        if remaining > 0:
            # no reactor here (plain requests, one request at a time): sleeping is the pacing
            time.sleep(remaining)

    def _retry_wait(self, response: requests.Response | None, attempt: int) -> float:
        """Seconds before try ``attempt + 1``: what Retry-After asks (capped), else the backoff.

        The backoff is the crawl's exponential one without jitter (one request
        at a time: nothing to spread out), on a base of the delay (1 s at least).
        """
        policy = RetryPolicy(self.options.attempts, base=max(self.delay, 1.0), cap=BACKOFF_CAP)
        header = response.headers.get("Retry-After") if response is not None else None
        wait = parse_retry_after(header, time.time())
        if wait is None:
            return policy.ceiling(attempt)
        return min(wait, self.options.retry_after_max)

    @staticmethod
    def _retried(response: requests.Response) -> bool:
        """Whether the crawl would try this answer again (429, 408, 5xx...)."""
        failure = status_class(response.status_code, retry_after="Retry-After" in response.headers)
        return failure is not None and DEFAULT_POLICIES[failure].attempts > 1

    def fetch(self, phase: Phase, url: str) -> Fetched:
        """GET ``url`` through the cassette: replayed if recorded, else fetched politely."""
        if self.robots is not None and not self.robots.can_fetch(url, self.options.user_agent):
            self.report.disallowed.append(url)
            self.log(f"  skip {url}: disallowed by robots.txt")
            return Fetched(url, error="disallowed by robots.txt")
        key = redact_url(url)
        if key in self.recorded[phase.name]:
            response = phase.session.get(url, allow_redirects=False, timeout=self.options.timeout)
            self.report.replayed[phase.name] += 1
            return Fetched(url, response, replayed=True)
        error = "not tried"
        for attempt in range(1, self.options.attempts + 1):
            self._wait_turn()
            response = None
            try:
                response = phase.session.get(
                    url, allow_redirects=False, timeout=self.options.timeout
                )
            except PageTooLarge as failure:
                error = f"refused: {failure}"
                self._last_request_at = time.monotonic()
                break  # the same page again would be as large
            except requests.RequestException as failure:
                error = f"{type(failure).__name__}: {failure}"
            self._last_request_at = time.monotonic()
            if response is not None and response.status_code in RECORDED_STATUSES:
                self.recorded[phase.name].add(key)
                self.report.fetched[phase.name] += 1
                phase.fetched += 1
                self.log(f"  GET {url} -> {response.status_code} (recorded)")
                if phase.fetched % SAVE_EVERY == 0:
                    phase.recorder.current_cassette.eject()  # saves; recording goes on
                return Fetched(url, response)
            if response is not None:
                error = f"HTTP {response.status_code}"
                if not self._retried(response):
                    break
            if attempt < self.options.attempts:
                wait = self._retry_wait(response, attempt)
                self.log(f"  GET {url} -> {error}; again in {wait:.1f} s")
                self._not_before = time.monotonic() + wait
        self.report.failed.append(f"{url} ({error})")
        self.log(f"  GET {url} -> {error}: not recorded")
        return Fetched(url, error=error)

    # -- the run ----------------------------------------------------------------------

    def run(self) -> RecordReport:
        """robots.txt, then the listing, then a sample of the products it lists."""
        self.directory.mkdir(parents=True, exist_ok=True)
        session = self._session()
        try:
            with self.phase("robots", session) as phase:
                self._read_robots(phase)
            with self.phase("listing", session) as phase:
                cards = self._record_listing(phase)
            with self.phase("detail", session) as phase:
                self._record_details(phase, cards)
        finally:
            session.close()
        return self.report

    def _read_robots(self, phase: Phase) -> None:
        url = f"{self.base_url}/robots.txt"
        fetched = self.fetch(phase, url)
        response = fetched.response
        if response is None or response.status_code >= 500:
            # RFC 9309: an unreachable robots.txt means nothing may be crawled
            raise RecordingError(f"{url} could not be read ({fetched.error}): recording nothing")
        if response.status_code != 200:
            self.log(f"  {url} answered {response.status_code}: no restrictions")
            return
        self.robots = Protego.parse(response.text)
        crawl_delay = self.robots.crawl_delay(self.options.user_agent)
        if crawl_delay and crawl_delay > self.delay:
            self.log(f"  robots.txt asks for {crawl_delay:g} s between requests: waiting that long")
            self.delay = float(crawl_delay)

    def _listing_page(self, phase: Phase, page: int) -> ListingPage | None:
        fetched = self.fetch(phase, self.listing_url(page))
        response = fetched.response
        if response is None or response.status_code != 200:
            return None
        return parse_listing(response.content, fetched.url, response.encoding)

    def _record_listing(self, phase: Phase) -> list[str]:
        """Page 1, a sample of middle pages, the last page and the page past it."""
        first = self._listing_page(phase, 1)
        if first is None:
            raise RecordingError(f"listing page 1 ({self.listing_url(1)}) could not be recorded")
        if not first.cards:
            self.report.warnings.append(
                f"listing page 1 shows no product cards (layout {first.layout!r}): "
                "has the markup changed?"
            )
        last = max(first.last_page or 1, 1)
        self.report.site_pages = last
        recorded_numbers = {page_number_from_url(uri) or 1 for uri in self.recorded["listing"]}
        size = self.options.listing_sample
        middle = sample(list(range(2, last)), recorded_numbers, size, self.rng)
        pages = [1, *middle, *([last] if last > 1 else [])]
        self.log(f"The listing has {last} pages; recording pages {ranges(pages)} and {last + 1}")
        card_urls: list[str] = [card.url for card in first.cards]
        for number in pages[1:]:
            listing = self._listing_page(phase, number)
            if listing is None:
                continue
            card_urls += [card.url for card in listing.cards]
            if number < last and len(listing.cards) < CARDS_PER_PAGE:
                self.report.warnings.append(
                    f"listing page {number} shows {len(listing.cards)} cards"
                )
        probe = self.fetch(phase, self.listing_url(last + 1))
        if probe.response is not None and probe.response.status_code == 200:
            shown = parse_listing(probe.response.content, probe.url, probe.response.encoding)
            if shown.cards:
                self.report.warnings.append(
                    f"page {last + 1}, past the last page shown, has {len(shown.cards)} cards"
                )
        unique = list(dict.fromkeys(card_urls))
        onsite = [url for url in unique if urlsplit(url).hostname == self.site_host]
        self.report.offsite += [url for url in unique if url not in onsite]
        return onsite

    def _record_details(self, phase: Phase, card_urls: list[str]) -> None:
        recorded = {url for url in card_urls if redact_url(url) in self.recorded["detail"]}
        chosen = sample(card_urls, recorded, self.options.detail_sample, self.rng)
        self.log(f"Recording {len(chosen)} of the {len(card_urls)} product pages listed")
        for url in chosen:
            self.fetch(phase, url)
