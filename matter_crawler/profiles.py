"""Operating profiles: one switch (``CRAWL_PROFILE``) for the whole speed envelope.

- ``polite`` (default; for the real site): at most 2 requests at once to the
  domain, 1 s between requests, the adaptive controller kept inside that.
- ``balanced``: up to 8 at once, 0.25 s delay floor.
- ``fast``: up to 32 at once, no delay: for the local simulated site and
  benchmarks, never for someone else's server.

A profile is a Scrapy add-on: it sets its values at add-on priority, above
Scrapy's defaults and below the project's ``settings.py``, ``-s`` on the
command line and a spider's ``custom_settings``, so anything set explicitly
still wins. ``settings.py`` therefore leaves the values a profile sets alone.
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
        "ADAPTIVE_MAX_CONCURRENCY": 2,
        "ADAPTIVE_MIN_DELAY": 1.0,
        "ADAPTIVE_MAX_DELAY": 60.0,
        "ADAPTIVE_TARGET_LATENCY": 2.0,
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
        "MEMUSAGE_LIMIT_MB": 1000,
    },
}


class CrawlProfile:
    """Scrapy add-on applying the ``CRAWL_PROFILE`` named in the settings."""

    def update_settings(self, settings: BaseSettings) -> None:
        name = settings.get("CRAWL_PROFILE") or "polite"
        profile = PROFILES.get(name)
        if profile is None:
            raise ValueError(f"CRAWL_PROFILE must be one of {', '.join(PROFILES)}, not {name!r}")
        settings.setdict(profile, priority="addon")
