"""The live control's pieces without a crawl: where the token goes and how it is written,
a profile switched live (explicit settings and the politeness ceiling still win), the ETA
over a paused span. The crawl tests are tests/crawl/test_control.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from matter_crawler.adaptive.extension import AdaptiveConcurrency
from matter_crawler.adaptive.limits import Limits, limits_from_settings
from matter_crawler.extensions.control import (
    CrawlControl,
    profile_settings,
    token_path,
    write_token,
)
from matter_crawler.monitoring.control import ControlError
from matter_crawler.monitoring.eta import EtaEstimator

from ..adaptive_helpers import project_settings_with, ramp
from ..helpers import PROJECT_ROOT, free_port, project_crawler
from .test_adaptive_settings import crawler_with


def test_the_token_goes_to_the_setting_else_jobdir_else_next_to_the_sqlite_file(tmp_path):
    explicit = tmp_path / "token"
    assert token_path(project_settings_with(CONTROL_TOKEN_FILE=str(explicit))) == explicit
    jobdir = tmp_path / "job"
    assert token_path(project_settings_with(JOBDIR=str(jobdir))) == (
        jobdir / "matter_crawler.control-token"
    )
    database = tmp_path / "m.sqlite3"
    assert token_path(project_settings_with(DATABASE_URL=f"sqlite:///{database}")) == Path(
        f"{database}.control-token"
    )
    postgresql = project_settings_with(DATABASE_URL="postgresql://crawler@db/matter")
    assert token_path(postgresql) is None  # the control is off, and says so


def test_the_token_file_is_private_whatever_the_umask_and_never_written_through_a_link(
    tmp_path,
):
    path = tmp_path / "dir" / "token"
    before = os.umask(0)
    try:
        write_token(path, "first")
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "first\n"
    # a leftover (a killed crawl's), even a link elsewhere, is replaced, not written through
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep")
    path.unlink()
    path.symlink_to(elsewhere)
    write_token(path, "second")
    assert elsewhere.read_text() == "keep"
    assert not path.is_symlink()
    assert path.read_text() == "second\n"


def test_a_profile_switched_live_keeps_explicit_settings_as_bounds():
    polite = project_settings_with()
    assert limits_from_settings(profile_settings(polite, "fast")) == Limits(1, 32, 0.0, 10.0)
    assert limits_from_settings(profile_settings(polite, "balanced")) == Limits(1, 8, 0.25, 30.0)
    # -s CONCURRENT_REQUESTS_PER_DOMAIN (a ceiling) and -s DOWNLOAD_DELAY (a floor) still hold
    explicit = project_settings_with(CONCURRENT_REQUESTS_PER_DOMAIN=2, DOWNLOAD_DELAY=0.3)
    assert limits_from_settings(profile_settings(explicit, "fast")) == Limits(1, 2, 0.3, 10.0)
    # and so does an explicit bound of the controller's own
    wide = project_settings_with(ADAPTIVE_MAX_CONCURRENCY=5)
    assert limits_from_settings(profile_settings(wide, "fast")).max_concurrency == 5
    assert profile_settings(wide, "fast").getint("CONCURRENT_REQUESTS") == 32


def test_new_bounds_reach_every_domain_within_its_politeness_ceiling():
    crawler = crawler_with(
        CONCURRENT_REQUESTS=32,
        ADAPTIVE_DOMAIN_LIMITS={"csa-iot.org": {"max_concurrency": 3, "min_delay": 1.0}},
    )
    extension = AdaptiveConcurrency.from_crawler(crawler)
    free, polite = extension.controller("example.com"), extension.controller("csa-iot.org")
    ramp(free, 8)
    assert free.concurrency > 8
    fast = limits_from_settings(profile_settings(crawler.settings, "fast"))
    slow = limits_from_settings(profile_settings(crawler.settings, "polite"))
    extension.set_bounds(slow, extension.tuning)
    assert (free.limits.max_concurrency, free.concurrency, free.delay) == (3, 3, 1.0)
    extension.set_bounds(fast, extension.tuning)
    assert (free.limits.max_concurrency, free.limits.min_delay) == (32, 0.0)
    assert (polite.limits.max_concurrency, polite.limits.min_delay) == (3, 1.0)
    assert crawler.stats.get_value("adaptive/example.com/concurrency") == 3


def test_a_paused_span_is_not_counted_as_slowness():
    def crawl(hold: bool) -> float | None:
        eta = EtaEstimator(window=10.0)
        for second in range(61):  # 10 pages a second
            eta.update(float(second), 10 * second)
        for second in range(61, 121):  # paused: no page
            (eta.hold if hold else eta.update)(float(second), 600)
        for second in range(121, 126):
            eta.update(float(second), 600 + 10 * (second - 120))
        return eta.estimate(1000).seconds

    assert abs(crawl(hold=True) - 100) < 1  # 1,000 pages at 10 a second
    assert crawl(hold=False) > 150  # what it would say if the pause counted


def test_scrapy_control_says_why_it_cannot_reach_the_crawl_or_what_it_wants(tmp_path):
    def control(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scrapy", "control", *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    url = f"http://127.0.0.1:{free_port()}"
    gone = control("pause", "--url", url)
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"scrapy control: error: {url}/control: ")
    assert "Connection refused" in gone.stderr
    assert control("profile", "--url", url).returncode == 2  # profile needs a NAME
    assert control("jump", "--url", url).returncode == 2


def test_a_token_that_cannot_be_written_turns_the_control_off_not_the_crawl(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    crawler = project_crawler(settings={"CONTROL_TOKEN_FILE": str(blocker / "token")})
    control = CrawlControl.from_crawler(crawler)
    control.spider_opened()  # its directory cannot be made: the parent is a file
    assert control.state == "off"
    assert "Live control is off: cannot write its token" in caplog.text
    with pytest.raises(ControlError) as refused:
        control.command("pause", {})
    assert refused.value.status == 409
    assert control.describe()["state"] == "off"
