"""Operating profiles: one switch (``CRAWL_PROFILE``) for the whole speed envelope.

Each profile (:data:`PROFILES`, the one home of these values: the tables in
README.md and docs/adaptive.md restate them, and ``tests/unit/test_adaptive_settings.py`` checks
that they agree) is a set of bounds for the adaptive-concurrency extension
(:mod:`matter_crawler.adaptive`) plus the fixed values a crawl falls back on when
that extension is off:

- ``polite`` (the default; for the real site): what the predecessor crawler
  used, at most 3 requests at once and at least one second between requests,
  the controller free to go slower (up to 60 s apart) but never faster.
- ``balanced``: up to 8 at once, at least 0.25 s apart: a site you have been
  told can take more.
- ``fast``: up to 32 at once, no delay floor: for the local simulated site and
  benchmarks, never for someone else's server.

``ADAPTIVE_TARGET_LATENCY`` is the latency the controller accepts whatever the
site's baseline: a round of responses only counts as a latency rise above both
it and ``ADAPTIVE_LATENCY_TOLERANCE`` times the baseline. The memory ceiling
``ADAPTIVE_MEMORY_LIMIT_MB`` sits below Scrapy's ``MEMUSAGE_LIMIT_MB`` so that
concurrency comes down before Scrapy's MemoryUsage extension would stop the
crawl (never above 80% of ``MEMUSAGE_LIMIT_MB``, whatever is set). The
per-domain politeness ceiling ``ADAPTIVE_DOMAIN_LIMITS`` (in ``settings.py``)
applies on top of every profile, with the adaptive extension on or off: the
downloader enforces it (:class:`~matter_crawler.core.downloader.CeilingSlot`), so
even ``fast`` sends at most 3 requests at once, at least 1 s apart, to
csa-iot.org.

A profile is a Scrapy add-on: it sets its values at add-on priority, above
Scrapy's defaults and below the project's ``settings.py``, ``-s`` on the
command line and a spider's ``custom_settings``, so anything set explicitly
still wins. ``settings.py`` therefore leaves the values a profile sets alone.
With the adaptive extension on, an explicit ``CONCURRENT_REQUESTS_PER_DOMAIN``
is the ceiling of its concurrency and an explicit ``DOWNLOAD_DELAY`` the floor of
its delay, as under AutoThrottle (:mod:`matter_crawler.adaptive.limits`).
"""

from __future__ import annotations

from typing import Any

from scrapy.settings import BaseSettings

PROFILES: dict[str, dict[str, Any]] = {
    "polite": {
        "CONCURRENT_REQUESTS": 8,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "DOWNLOAD_DELAY": 1.0,
        "ADAPTIVE_MIN_CONCURRENCY": 1,
        "ADAPTIVE_MAX_CONCURRENCY": 3,
        "ADAPTIVE_MIN_DELAY": 1.0,
        "ADAPTIVE_MAX_DELAY": 60.0,
        "ADAPTIVE_TARGET_LATENCY": 2.0,
        "ADAPTIVE_MEMORY_LIMIT_MB": 400,
        "MEMUSAGE_LIMIT_MB": 500,
    },
    "balanced": {
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
        "DOWNLOAD_DELAY": 0.25,
        "ADAPTIVE_MIN_CONCURRENCY": 1,
        "ADAPTIVE_MAX_CONCURRENCY": 8,
        "ADAPTIVE_MIN_DELAY": 0.25,
        "ADAPTIVE_MAX_DELAY": 30.0,
        "ADAPTIVE_TARGET_LATENCY": 1.0,
        "ADAPTIVE_MEMORY_LIMIT_MB": 400,
        "MEMUSAGE_LIMIT_MB": 500,
    },
    "fast": {
        "CONCURRENT_REQUESTS": 32,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 32,
        "DOWNLOAD_DELAY": 0.0,
        "ADAPTIVE_MIN_CONCURRENCY": 1,
        "ADAPTIVE_MAX_CONCURRENCY": 32,
        "ADAPTIVE_MIN_DELAY": 0.0,
        "ADAPTIVE_MAX_DELAY": 10.0,
        "ADAPTIVE_TARGET_LATENCY": 0.5,
        "ADAPTIVE_MEMORY_LIMIT_MB": 800,
        "MEMUSAGE_LIMIT_MB": 1000,
    },
}


class CrawlProfile:
    """Scrapy add-on applying the ``CRAWL_PROFILE`` named in the settings."""

    def update_settings(self, settings: BaseSettings) -> None:
        name = settings.get("CRAWL_PROFILE")  # its default is in settings.py
        profile = PROFILES.get(name)
        if profile is None:
            raise ValueError(f"CRAWL_PROFILE must be one of {', '.join(PROFILES)}, not {name!r}")
        settings.setdict(profile, priority="addon")
