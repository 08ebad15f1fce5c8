"""Bounds and tuning of the adaptive controller, read from the settings.

Every default lives in one place: the profile values (``ADAPTIVE_MIN/MAX_CONCURRENCY``,
``ADAPTIVE_MIN/MAX_DELAY``, ``ADAPTIVE_TARGET_LATENCY``, ``ADAPTIVE_MEMORY_LIMIT_MB``) in
:data:`matter_crawler.profiles.PROFILES`, the others in ``matter_crawler/settings.py``.
Nothing here repeats them: :func:`limits_from_settings` and :func:`tuning_from_settings`
read the settings with no fallback values and refuse a crawl where one is missing.

Scrapy's own settings keep their meaning under the controller, as under AutoThrottle:
a ``CONCURRENT_REQUESTS_PER_DOMAIN`` set explicitly (``-s``, ``settings.py``, a spider's
``custom_settings``: any priority above the add-on priority at which a profile sets its
values) is the ceiling of every domain's concurrency, and an explicit ``DOWNLOAD_DELAY``
the floor of its delay. Like ``CONCURRENT_REQUESTS``, they only narrow the profile's
bounds; to widen them, set ``ADAPTIVE_MAX_CONCURRENCY`` or ``ADAPTIVE_MIN_DELAY``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings

#: Settings a crawl profile provides (matter_crawler.profiles): settings.py leaves them alone.
PROFILE_SETTINGS = (
    "ADAPTIVE_MIN_CONCURRENCY",
    "ADAPTIVE_MAX_CONCURRENCY",
    "ADAPTIVE_MIN_DELAY",
    "ADAPTIVE_MAX_DELAY",
    "ADAPTIVE_TARGET_LATENCY",
    "ADAPTIVE_MEMORY_LIMIT_MB",
)
#: A profile sets its values at this priority; anything above it was set on purpose.
PROFILE_PRIORITY = SETTINGS_PRIORITIES["addon"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one domain's concurrency and delay (seconds)."""

    min_concurrency: int
    max_concurrency: int
    min_delay: float
    max_delay: float

    def __post_init__(self) -> None:
        if not 1 <= self.min_concurrency <= self.max_concurrency:
            raise ValueError(
                f"concurrency bounds need 1 <= min <= max, got "
                f"{self.min_concurrency}..{self.max_concurrency}"
            )
        if not 0 <= self.min_delay <= self.max_delay:
            raise ValueError(
                f"delay bounds need 0 <= min <= max, got {self.min_delay}..{self.max_delay}"
            )

    def narrowed(
        self, *, max_concurrency: int | None = None, min_delay: float | None = None
    ) -> Limits:
        """These limits inside a politeness ceiling (it can only make them stricter)."""
        top = self.max_concurrency if max_concurrency is None else int(max_concurrency)
        top = max(1, min(self.max_concurrency, top))
        floor = self.min_delay if min_delay is None else max(self.min_delay, float(min_delay))
        return replace(
            self,
            min_concurrency=min(self.min_concurrency, top),
            max_concurrency=top,
            min_delay=floor,
            max_delay=max(self.max_delay, floor),
        )


@dataclass(frozen=True, slots=True)
class Tuning:
    """How the controller reacts (the same for every domain)."""

    target_latency: float  # ADAPTIVE_TARGET_LATENCY
    latency_tolerance: float  # ADAPTIVE_LATENCY_TOLERANCE
    decrease_factor: float  # ADAPTIVE_DECREASE_FACTOR
    probe_interval: float  # ADAPTIVE_PROBE_INTERVAL
    probe_interval_max: float  # ADAPTIVE_PROBE_INTERVAL_MAX
    baseline_window: float  # ADAPTIVE_BASELINE_WINDOW
    retry_after_max: float  # RETRY_AFTER_MAX

    def __post_init__(self) -> None:
        if not 0 < self.decrease_factor < 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {self.decrease_factor}")
        if self.latency_tolerance < 1:
            raise ValueError(f"latency_tolerance must be >= 1, got {self.latency_tolerance}")
        if self.probe_interval <= 0 or self.probe_interval_max < self.probe_interval:
            raise ValueError("probe intervals need 0 < probe_interval <= probe_interval_max")


def require(settings: BaseSettings, *names: str) -> None:
    """Refuse settings that lack one of ``names`` (a fallback value would be a second default)."""
    missing = [name for name in names if settings.get(name) is None]
    if missing:
        where = (
            "the CRAWL_PROFILE add-on (matter_crawler.profiles.CrawlProfile in ADDONS)"
            if set(missing) & set(PROFILE_SETTINGS)
            else "matter_crawler/settings.py"
        )
        raise ValueError(f"{', '.join(missing)} not set: they come from {where}")


def is_explicit(settings: BaseSettings, name: str) -> bool:
    """Whether ``name`` was set above the profile's add-on priority (by the user)."""
    priority = settings.getpriority(name)
    return priority is not None and priority > PROFILE_PRIORITY


def limits_from_settings(settings: BaseSettings) -> Limits:
    """The bounds every domain starts from: the profile's, narrowed by ``CONCURRENT_REQUESTS``
    and by an explicit ``CONCURRENT_REQUESTS_PER_DOMAIN`` (ceiling) and ``DOWNLOAD_DELAY``
    (floor). ``ADAPTIVE_DOMAIN_LIMITS`` narrows them further per domain."""
    require(settings, *PROFILE_SETTINGS[:4])
    top = settings.getint("ADAPTIVE_MAX_CONCURRENCY")
    total = settings.getint("CONCURRENT_REQUESTS")
    if total > 0:
        top = min(top, total)
    if is_explicit(settings, "CONCURRENT_REQUESTS_PER_DOMAIN"):
        top = min(top, max(1, settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")))
    floor = settings.getfloat("ADAPTIVE_MIN_DELAY")
    if is_explicit(settings, "DOWNLOAD_DELAY"):
        floor = max(floor, settings.getfloat("DOWNLOAD_DELAY"))
    return Limits(
        min_concurrency=min(settings.getint("ADAPTIVE_MIN_CONCURRENCY"), top),
        max_concurrency=top,
        min_delay=floor,
        max_delay=max(settings.getfloat("ADAPTIVE_MAX_DELAY"), floor),
    )


def tuning_from_settings(settings: BaseSettings) -> Tuning:
    names = {
        "target_latency": "ADAPTIVE_TARGET_LATENCY",
        "latency_tolerance": "ADAPTIVE_LATENCY_TOLERANCE",
        "decrease_factor": "ADAPTIVE_DECREASE_FACTOR",
        "probe_interval": "ADAPTIVE_PROBE_INTERVAL",
        "probe_interval_max": "ADAPTIVE_PROBE_INTERVAL_MAX",
        "baseline_window": "ADAPTIVE_BASELINE_WINDOW",
        "retry_after_max": "RETRY_AFTER_MAX",
    }
    require(settings, *names.values())
    values: dict[str, Any] = {field: settings.getfloat(name) for field, name in names.items()}
    return Tuning(**values)
