"""The adaptive extension (matter_crawler.adaptive.extension, .limits, .memory) and its
settings: bounds from the profile and Scrapy's settings, one home of every default, the
docs' tables, the politeness ceiling, memory readings, signals."""

from __future__ import annotations

import json
import re
from pathlib import Path
from time import monotonic
from typing import Any

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadTimeoutError, NotConfigured
from scrapy.http import HtmlResponse
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler
from twisted.internet.error import (
    ConnectionLost,
    ConnectionRefusedError,
    TCPTimedOutError,
)
from twisted.internet.error import TimeoutError as TwistedTimeoutError

import matter_crawler.settings as project_settings
from matter_crawler.adaptive.extension import AdaptiveConcurrency, adaptive_state
from matter_crawler.adaptive.law import DomainController
from matter_crawler.adaptive.limits import Limits, limits_from_settings, tuning_from_settings
from matter_crawler.adaptive.memory import memory_ceiling_mb
from matter_crawler.adaptive.states import Trouble
from matter_crawler.core.downloader import CeilingSlot, domain_ceiling
from matter_crawler.exceptions import DeadLettered
from matter_crawler.middlewares.retry import ClassifiedRetryMiddleware
from matter_crawler.profiles import PROFILES, CrawlProfile
from matter_crawler.signals import request_dead_lettered, request_retrying

from ..adaptive_helpers import TUNING, clean_round, project_settings_with, ramp
from ..helpers import project_defaults

# -- the politeness ceiling --------------------------------------------------------------


def test_a_domain_ceiling_only_narrows_the_profile():
    fast = Limits(min_concurrency=1, max_concurrency=32, min_delay=0.0, max_delay=10.0)
    narrowed = fast.narrowed(max_concurrency=3, min_delay=1.0)
    assert narrowed == Limits(1, 3, 1.0, 10.0)
    assert fast.narrowed(max_concurrency=100, min_delay=0.0) == fast  # never widens
    ctl = DomainController(narrowed, TUNING)
    ramp(ctl, 10)
    assert ctl.concurrency == 3
    assert ctl.delay == 1.0


def test_domain_ceilings_apply_to_subdomains():
    limits = {"csa-iot.org": {"max_concurrency": 3}}
    assert domain_ceiling(limits, "csa-iot.org") == {"max_concurrency": 3}
    assert domain_ceiling(limits, "www.CSA-IoT.org") == {"max_concurrency": 3}
    assert domain_ceiling(limits, "not-csa-iot.org") is None
    assert domain_ceiling(limits, "127.0.0.1") is None


def test_a_ceiling_slot_never_goes_faster_whatever_is_set_on_it():
    slot = CeilingSlot(32, 0.0, 0.5, max_concurrency=3, min_delay=1.0)
    assert (slot.concurrency, slot.delay) == (3, 1.0)  # created inside the ceiling
    slot.concurrency, slot.delay = 16, 0.05  # what AutoThrottle or a fixed setting may write
    assert (slot.concurrency, slot.delay) == (3, 1.0)  # ... and what a reader then sees
    assert slot.free_transfer_slots() == 3
    assert min(slot.download_delay() for _ in range(200)) == 1.0  # jitter never undercuts it
    slot.delay = 4.0  # slower is always allowed
    assert min(slot.download_delay() for _ in range(200)) >= 2.0  # 4 s +- 50%
    slot.concurrency = 0  # a Retry-After pause
    assert slot.free_transfer_slots() == 0
    delay_only = CeilingSlot(8, 0.0, 0.0, max_concurrency=None, min_delay=0.5)
    delay_only.concurrency = 20
    assert (delay_only.free_transfer_slots(), delay_only.delay) == (20, 0.5)
    assert delay_only.download_delay() == 0.5


def test_the_memory_ceiling_stays_below_what_stops_the_crawl():
    def ceiling(limit: float, enabled: bool, scrapy_limit: float) -> float:
        values = {
            "ADAPTIVE_MEMORY_LIMIT_MB": limit,
            "MEMUSAGE_ENABLED": enabled,
            "MEMUSAGE_LIMIT_MB": scrapy_limit,
        }
        return memory_ceiling_mb(Settings(values))

    assert ceiling(400, True, 500) == 400
    assert ceiling(400, True, 300) == 240  # MemoryUsage would stop at 300: act at 80% of it
    assert ceiling(400, False, 300) == 400  # ... unless MemoryUsage is off
    assert ceiling(400, True, 0) == 400  # no Scrapy limit
    assert ceiling(0, True, 500) == 400  # no ceiling of our own: 80% of Scrapy's
    assert ceiling(0, True, 0) == 0  # no ceiling at all
    assert memory_ceiling_mb(project_settings_with(MEMUSAGE_LIMIT_MB=300)) == 240  # polite


def test_memory_readings_lower_every_domain_and_hold_it_until_released():
    crawler = crawler_with(
        CONCURRENT_REQUESTS=32, ADAPTIVE_MEMORY_LIMIT_MB=400, MEMUSAGE_ENABLED=False
    )
    extension = AdaptiveConcurrency.from_crawler(crawler)
    assert extension.memory_limit_mb == 400
    controller = extension.controller("example.com")
    now = ramp(controller, 7)
    assert controller.concurrency == 17
    levels = []
    for rss in (399, 400, 410, 405, 421, 380, 359):
        extension.memory_reading(rss)
        now = ramp(controller, 2, start=now)  # clean rounds: growth only once released
        levels.append(controller.concurrency)
    assert levels == [25, 12, 12, 12, 6, 6, 13]
    assert crawler.stats.get_value("adaptive/memory_pressure") == 2
    assert crawler.stats.get_value("adaptive/rss_mb") == 359
    assert not extension.memory_pressure
    assert extension.controller("example.org").memory_pressure is False


# -- the extension's settings ------------------------------------------------------------


#: What of settings.py the extension reads (the rest would start the project's other
#: components): ADAPTIVE_*, RETRY_AFTER_MAX, the downloader and the profile add-on.
EXTENSION_SETTINGS = {
    **{name: getattr(project_settings, name) for name in dir(project_settings)
       if name.startswith("ADAPTIVE_")},
    "RETRY_AFTER_MAX": project_settings.RETRY_AFTER_MAX,
    "DOWNLOADER": project_settings.DOWNLOADER,
    "ADDONS": {CrawlProfile: 0},
    "CRAWL_PROFILE": "fast",
}  # fmt: skip


def crawler_with(**settings: Any):
    """A crawler with the extension's settings at project priority, the profile's at
    add-on priority, and ``settings`` at project priority (set on purpose)."""
    return get_crawler(settings_dict={**EXTENSION_SETTINGS, **settings})


def test_off_means_not_configured_and_refuses_to_fight_autothrottle():
    with pytest.raises(NotConfigured):
        AdaptiveConcurrency.from_crawler(crawler_with(ADAPTIVE_CONCURRENCY_ENABLED=False))
    with pytest.raises(ValueError, match="AUTOTHROTTLE_ENABLED are both on"):
        AdaptiveConcurrency.from_crawler(crawler_with(AUTOTHROTTLE_ENABLED=True))
    # Scrapy's own downloader lets a slot exceed its concurrency, and has no process_slot
    with pytest.raises(ValueError, match="needs DOWNLOADER"):
        AdaptiveConcurrency.from_crawler(
            crawler_with(DOWNLOADER="scrapy.core.downloader.Downloader")
        )


def test_bounds_come_from_settings_capped_by_concurrent_requests():
    extension = AdaptiveConcurrency.from_crawler(
        crawler_with(
            CONCURRENT_REQUESTS=12,
            ADAPTIVE_MAX_CONCURRENCY=32,
            ADAPTIVE_MIN_DELAY=0.1,
            ADAPTIVE_DOMAIN_LIMITS={"csa-iot.org": {"max_concurrency": 3, "min_delay": 1.0}},
            MEMUSAGE_ENABLED=True,
            MEMUSAGE_LIMIT_MB=500,
        )
    )
    assert extension.limits.max_concurrency == 12
    assert extension.limits_for("csa-iot.org") == Limits(1, 3, 1.0, 10.0)  # fast: 10 s
    assert extension.limits_for("127.0.0.1").max_concurrency == 12
    assert extension.memory_limit_mb == 400  # before MemoryUsage's 500 MB stop


def test_explicit_per_domain_concurrency_and_delay_bound_the_controller_as_under_autothrottle():
    # a profile's own CONCURRENT_REQUESTS_PER_DOMAIN and DOWNLOAD_DELAY (add-on priority)
    # are its fixed values for a crawl without the controller: they do not bound it
    polite = project_settings_with()
    assert (polite.getint("CONCURRENT_REQUESTS_PER_DOMAIN"), polite["DOWNLOAD_DELAY"]) == (2, 1)
    assert limits_from_settings(polite) == Limits(1, 3, 1.0, 60.0)
    assert limits_from_settings(project_settings_with(CRAWL_PROFILE="fast")) == Limits(
        1, 32, 0.0, 10.0
    )
    # set on purpose (-s, settings.py, custom_settings): the ceiling and the floor
    explicit = project_settings_with(
        CRAWL_PROFILE="fast", CONCURRENT_REQUESTS_PER_DOMAIN=2, DOWNLOAD_DELAY=0.3
    )
    assert limits_from_settings(explicit) == Limits(1, 2, 0.3, 10.0)
    spider = project_settings_with(CRAWL_PROFILE="fast")
    spider.set("CONCURRENT_REQUESTS_PER_DOMAIN", 4, priority="spider")
    spider.set("DOWNLOAD_DELAY", 20, priority="spider")
    assert limits_from_settings(spider) == Limits(1, 4, 20.0, 20.0)  # the floor lifts the top
    # they only narrow the profile's bounds, like CONCURRENT_REQUESTS
    wider = project_settings_with(CONCURRENT_REQUESTS_PER_DOMAIN=16, DOWNLOAD_DELAY=0.1)
    assert limits_from_settings(wider) == Limits(1, 3, 1.0, 60.0)
    extension = AdaptiveConcurrency.from_crawler(crawler_with(CONCURRENT_REQUESTS_PER_DOMAIN=2))
    assert extension.limits.max_concurrency == 2


def test_no_setting_the_controller_reads_has_a_second_default():
    # without the profile add-on, its bounds are missing: refused, not silently defaulted
    bare = Settings()
    bare.setmodule(project_settings, priority="project")
    with pytest.raises(ValueError, match=r"ADAPTIVE_MIN_CONCURRENCY.*CRAWL_PROFILE add-on"):
        limits_from_settings(bare)
    with pytest.raises(ValueError, match="ADAPTIVE_TARGET_LATENCY"):
        tuning_from_settings(bare)
    # every ADAPTIVE_* setting lives in settings.py or in every profile, never in both
    profile_names = set.intersection(*(set(profile) for profile in PROFILES.values()))
    module_names = {name for name in dir(project_settings) if name.startswith("ADAPTIVE_")}
    assert not profile_names & module_names
    source = "".join(
        path.read_text()
        for path in (Path(project_settings.__file__).parent / "adaptive").glob("*.py")
    )
    read = set(re.findall(r'"(ADAPTIVE_[A-Z_]+)"', source))
    assert read <= profile_names | module_names, read - profile_names - module_names
    # and is read without a fallback value
    assert not re.search(r'\.get(int|float|bool|list|dict)?\("[A-Z_]+", ', source)


def test_decisions_are_readable_by_other_components():
    crawler = crawler_with(ADAPTIVE_MAX_CONCURRENCY=8)
    assert adaptive_state(crawler) == {}  # before the crawl has extensions
    extension = AdaptiveConcurrency.from_crawler(crawler)
    controller = extension.controller("example.com")
    for index in range(3):
        extension._decided("example.com", controller, clean_round(controller, float(index)))
    state = extension.state()["example.com"]
    assert state["concurrency"] == controller.concurrency == 4  # 1, 2, 3, 4
    assert state["max_concurrency"] == 8
    assert state["increases"] == 3
    assert crawler.stats.get_value("adaptive/example.com/concurrency") == 4
    assert crawler.stats.get_value("adaptive/example.com/increases") == 3


class Recorder:
    """A signal receiver keeping the keyword arguments of every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def test_failures_are_told_apart_by_exception_type_not_by_message():
    crawler = crawler_with(
        CONCURRENT_REQUESTS=32,
        DOWNLOAD_TIMEOUT=30,
        # the retry middleware's own settings, from their one home
        **{
            name: value
            for name, value in project_defaults().items()
            if name.startswith(("RETRY_", "CONTENT_CHECK_"))
        },
    )
    crawler.stats.open_spider()
    retry = ClassifiedRetryMiddleware.from_crawler(crawler)
    extension = AdaptiveConcurrency.from_crawler(crawler)
    retrying, letters = Recorder(), Recorder()
    crawler.signals.connect(retrying, signal=request_retrying)
    crawler.signals.connect(letters, signal=request_dead_lettered)
    url = "http://example.com/csa_product/plug-1/"

    def request(**meta: Any) -> Request:
        return Request(url, meta={"download_slot": "example.com", "stage": "detail", **meta})

    failures = [
        (TCPTimedOutError(), "timeout"),  # "TCP connection timed out": no "timeout" in it
        (DownloadTimeoutError("Getting it took longer than 30 seconds."), "timeout"),
        (TwistedTimeoutError(), "timeout"),
        (ConnectionRefusedError(), "connection"),
        (ConnectionLost(), "connection"),
        (RuntimeError("a bug in a download handler"), "other"),
    ]
    for exception, _ in failures:
        retry.process_exception(request(), exception)
    answer = request()
    retry.process_response(answer, HtmlResponse(url, status=503, request=answer))
    assert [call["kind"] for call in retrying.calls] == [
        *(kind for _, kind in failures),
        "response",
    ]
    with pytest.raises(DeadLettered):
        retry.process_exception(request(max_retry_times=0), TCPTimedOutError())
    assert letters.calls[-1]["kind"] == "timeout"

    # the extension: a domain that stepped back from 17 to 13 a second ago
    controller = extension.controller("example.com")
    now = monotonic()
    ramp(controller, 7, start=now - 10)
    controller.trouble(now - 1.0, Trouble.OVERLOAD, sent_at=now - 1.1)
    assert controller.concurrency == 13
    ignored = controller.ignored
    # a TCP connect timeout went out a whole timeout ago, before the step back: not news
    retry.process_exception(request(), TCPTimedOutError())
    assert (controller.concurrency, controller.ignored) == (13, ignored + 1)
    with pytest.raises(DeadLettered):
        retry.process_exception(request(max_retry_times=0), DownloadTimeoutError("30 s"))
    assert (controller.concurrency, controller.ignored) == (13, ignored + 2)
    # an exception that says nothing about the server changes nothing
    retry.process_exception(request(), RuntimeError("a bug"))
    assert (controller.concurrency, controller.ignored) == (13, ignored + 2)
    # a refused connection is now: trouble at a level that was fine, one step down
    retry.process_exception(request(), ConnectionRefusedError())
    assert controller.concurrency == 12


def test_profiles_set_the_bounds_and_command_line_settings_win():
    polite = project_settings_with()
    assert polite.getint("ADAPTIVE_MAX_CONCURRENCY") == 3
    assert polite.getfloat("ADAPTIVE_MIN_DELAY") == 1.0
    assert polite.getfloat("ADAPTIVE_TARGET_LATENCY") == 2.0
    assert polite.getint("ADAPTIVE_MEMORY_LIMIT_MB") < polite.getint("MEMUSAGE_LIMIT_MB")
    assert polite.getbool("ADAPTIVE_CONCURRENCY_ENABLED")
    assert not polite.getbool("AUTOTHROTTLE_ENABLED")
    fast = project_settings_with(CRAWL_PROFILE="fast", ADAPTIVE_MAX_CONCURRENCY=20)
    assert fast.getint("ADAPTIVE_MAX_CONCURRENCY") == 20
    assert fast.getfloat("ADAPTIVE_MIN_DELAY") == 0.0
    # settings.py must leave profile values alone, or CRAWL_PROFILE would not change them
    for profile in PROFILES.values():
        for name in profile:
            assert not hasattr(project_settings, name), name


ROOT = Path(project_settings.__file__).parents[1]
#: The README's compact profile table: each column's settings, in the order of its numbers.
README_PROFILE_COLUMNS = [
    ("ADAPTIVE_MIN_CONCURRENCY", "ADAPTIVE_MAX_CONCURRENCY"),
    ("ADAPTIVE_MIN_DELAY", "ADAPTIVE_MAX_DELAY"),
    ("ADAPTIVE_TARGET_LATENCY",),
    ("ADAPTIVE_MEMORY_LIMIT_MB", "MEMUSAGE_LIMIT_MB"),
    ("CONCURRENT_REQUESTS",),
    ("CONCURRENT_REQUESTS_PER_DOMAIN", "DOWNLOAD_DELAY"),
]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header``."""
    lines = text[text.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def numbers(cell: str) -> list[float]:
    return [float(number) for number in re.findall(r"\d+(?:\.\d+)?", cell)]


def test_the_profile_tables_of_the_docs_are_profiles_py():
    # profiles.py is the one home of the profiles; README and docs/adaptive.md restate them
    docs = (ROOT / "docs" / "adaptive.md").read_text(encoding="utf-8")
    header = "| setting | `polite` (default) | `balanced` | `fast` |"
    assert header in docs
    assert list(PROFILES) == ["polite", "balanced", "fast"]
    documented = {
        re.match(r"`(\w+)`", row[0]).group(1): [numbers(cell) for cell in row[1:]]
        for row in table_rows(docs, header)
    }
    assert documented == {
        name: [[float(profile[name])] for profile in PROFILES.values()]
        for name in PROFILES["polite"]
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = table_rows(readme, "| profile | adaptive concurrency |")
    assert [re.match(r"`(\w+)`", row[0]).group(1) for row in rows] == list(PROFILES)
    for row, profile in zip(rows, PROFILES.values(), strict=True):
        for cell, names in zip(row[1:], README_PROFILE_COLUMNS, strict=True):
            assert numbers(cell) == [float(profile[name]) for name in names], (row[0], cell)
    assert {name for names in README_PROFILE_COLUMNS for name in names} == set(PROFILES["polite"])


def test_the_readme_states_the_adaptive_defaults_of_settings_py():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    defaults = {name: getattr(project_settings, name) for name in dir(project_settings)}
    seen: list[str] = []
    for row in table_rows(readme, "| setting | default | meaning |"):
        names = re.findall(r"`(ADAPTIVE_\w+)`", row[0])
        if not names or row[0].startswith("`ADAPTIVE_MIN/MAX"):  # the profile's
            continue
        seen += names
        values, cell = [defaults[name] for name in names], row[1]
        if isinstance(values[0], bool):
            assert cell == f"`{values[0]}`", names
        elif isinstance(values[0], dict):
            assert json.loads(cell.strip("`")) == values[0], names
        else:  # numbers, or a list of numbers
            flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
            assert numbers(cell) == [float(v) for v in flat], names
    assert sorted(seen) == sorted(name for name in defaults if name.startswith("ADAPTIVE_"))
