"""What the adaptive-concurrency tests share: the project's settings with a profile, and a
controller driven by scripted rounds of outcomes."""

from __future__ import annotations

from typing import Any

from scrapy.settings import Settings

import matter_crawler.settings as project_settings
from matter_crawler.adaptive.law import DomainController
from matter_crawler.adaptive.limits import Limits, tuning_from_settings
from matter_crawler.adaptive.states import Change
from matter_crawler.profiles import CrawlProfile

LATENCY = 0.2


def project_settings_with(**overrides: Any) -> Settings:
    """The project's settings, ``overrides`` as if given with -s, and the crawl profile."""
    settings = Settings()
    settings.setmodule(project_settings, priority="project")
    for name, value in overrides.items():
        settings.set(name, value, priority="cmdline")
    CrawlProfile().update_settings(settings)
    return settings


#: The tuning of settings.py under the fast profile (the test crawls' profile).
TUNING = tuning_from_settings(project_settings_with(CRAWL_PROFILE="fast"))


def limits(**bounds: Any) -> Limits:
    """Bounds for a scripted controller: 1-32 at a time, 0-60 s apart, unless given."""
    return Limits(
        **{"min_concurrency": 1, "max_concurrency": 32, "min_delay": 0.0, "max_delay": 60.0}
        | bounds
    )


def controller(**bounds: Any) -> DomainController:
    return DomainController(limits(**bounds), TUNING)


def clean_round(ctl: DomainController, now: float, latency: float = LATENCY) -> Change | None:
    """One round of good answers at the controller's level, all of it in flight."""
    change = None
    for _ in range(max(1, ctl.concurrency)):
        change = ctl.success(now, latency, in_flight=ctl.concurrency, sent_at=now - latency)
    return change


def ramp(ctl: DomainController, rounds: int, start: float = 0.0) -> float:
    now = start
    for _ in range(rounds):
        now += LATENCY
        clean_round(ctl, now)
    return now
