"""Helpers for tests that run real crawls against the simulated site.

Crawls run as ``python -m scrapy crawl matter_products`` (or another spider:
``spider="dcl"``) child processes from the project root, exactly as a user runs them, each with its own SQLite file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from matter_crawler.storage.models import CrawlRun
from matter_crawler.verify import diff_records, stored_records

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
#: The database backends of a test marked both_databases (or a fixture's params).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


def project_defaults() -> dict[str, Any]:
    """The defaults of the project's own settings (matter_crawler/settings.py, their one home).

    The default profile's values are in, as the ``CrawlProfile`` add-on sets them.
    Scrapy's stock settings are left out, so a crawler built with these enables no
    component: a unit test builds the one component it tests with ``from_crawler``.
    """
    import scrapy.settings.default_settings as scrapy_defaults
    from scrapy.settings import Settings

    from matter_crawler.profiles import CrawlProfile

    settings = Settings()
    settings.setmodule("matter_crawler.settings", priority="project")
    CrawlProfile().update_settings(settings)
    return {name: settings[name] for name in settings if not hasattr(scrapy_defaults, name)}


def project_crawler(spidercls: Any = None, settings: Mapping[str, Any] | None = None) -> Any:
    """``scrapy.utils.test.get_crawler`` with the project's defaults under ``settings``."""
    from scrapy.utils.test import get_crawler

    return get_crawler(spidercls, {**project_defaults(), **(settings or {})})


def missing_system_package(message: str) -> None:
    """Skip the test with the reason, but fail it under CI=true."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def new_database(
    request: pytest.FixtureRequest, backend: str, directory: Path, name: str = "matter"
) -> str:
    """A fresh database on ``backend``: a SQLite file in ``directory``, or a PostgreSQL
    database (conftest's server) dropped when the requesting fixture's scope ends."""
    if backend == "sqlite":
        return sqlite_url(directory / f"{name}.sqlite3")
    server = request.getfixturevalue("postgresql_server")
    database = f"{name}_{uuid.uuid4().hex[:10]}"
    url = server.create_database(database)
    request.addfinalizer(lambda: server.drop_database(database))
    return url


@dataclass
class CrawlResult:
    returncode: int
    output: str
    database_url: str

    def check(self) -> CrawlResult:
        assert self.returncode == 0, f"crawl exited {self.returncode}:\n{self.output[-6000:]}"
        assert "Traceback" not in self.output, f"crawl logged a traceback:\n{self.output[-6000:]}"
        return self


def crawl_command(
    base_url: str,
    database_url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    spider: str = "matter_products",
) -> list[str]:
    command = [sys.executable, "-m", "scrapy", "crawl", spider]
    merged = {
        "CSA_BASE_URL": base_url,
        "DATABASE_URL": database_url,
        "CRAWL_PROFILE": "fast",
        "LOG_LEVEL": "INFO",
        **(settings or {}),
    }
    for name, value in merged.items():
        text = json.dumps(value) if isinstance(value, dict | list) else value
        command += ["-s", f"{name}={text}"]
    for name, value in (args or {}).items():
        command += ["-a", f"{name}={value}"]
    return command


def run_crawl(
    base_url: str,
    database_url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    timeout: float = 300,
    spider: str = "matter_products",
) -> CrawlResult:
    """Run a crawl to its end."""
    command = crawl_command(base_url, database_url, settings=settings, args=args, spider=spider)
    return run_crawl_command(command, database_url, timeout)


def run_crawl_command(command: list[str], database_url: str, timeout: float) -> CrawlResult:
    """Run a crawl's command line from the project root to its end."""
    completed = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    return CrawlResult(completed.returncode, completed.stdout + completed.stderr, database_url)


def start_crawl(
    base_url: str,
    database_url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    log_path: Path,
    spider: str = "matter_products",
) -> subprocess.Popen[bytes]:
    """Start a crawl in the background (its output goes to ``log_path``)."""
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            crawl_command(base_url, database_url, settings=settings, args=args, spider=spider),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 60):
    """Send ``sig`` and wait; kill if it does not end. Never leaves the child running."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, what: str, timeout: float
) -> None:
    """Wait for a Prometheus-style server's ``/-/ready`` to answer 200; fail if it exits."""

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    wait_for(ready, timeout=timeout, message=f"{what} to be ready")


def monitoring_address(log_path: Path, timeout: float = 60.0) -> tuple[str, int]:
    """The base URL and port of the monitoring server a crawl logs that it started."""
    address = wait_for(
        lambda: re.search(
            r"Monitoring server on (http://127\.0\.0\.1:(\d+)/)", log_path.read_text()
        ),
        timeout=timeout,
        message="the crawl to log its monitoring address",
    )
    return address.group(1), int(address.group(2))


#: Holds 300 MB, then execs its arguments (see from_a_large_process).
LARGE_PARENT = (
    "import os, sys\n"
    "held = b'x' * (300 << 20)  # written, so resident\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def from_a_large_process(command: Sequence[str]) -> list[str]:
    """``command`` exec'd by a Python process holding 300 MB: on Linux the program's
    ``ru_maxrss`` starts at that process's peak, as when a notebook starts a crawl."""
    return [sys.executable, "-c", LARGE_PARENT, *command]


def scrapy_control(url: str, *args: str) -> dict[str, Any]:
    """``scrapy control ARGS --url URL --json`` from the project root, as a user runs it."""
    completed = subprocess.run(
        [sys.executable, "-m", "scrapy", "control", *args, "--url", url, "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A port that was free a moment ago (for tests that need a fixed port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def database_differences(database_url: str, truth: Iterable[dict[str, Any]]) -> list[str]:
    engine = create_engine(database_url)
    try:
        return diff_records(truth, stored_records(engine), limit=0)
    finally:
        engine.dispose()


def crawl_runs(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            table = CrawlRun.__table__
            return [row._asdict() for row in conn.execute(select(table).order_by(table.c.id))]
    finally:
        engine.dispose()


def query(database_url: str, sql: str) -> list[tuple]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def retry_after_violations(log: list[dict]) -> list[str]:
    """Requests for a path that came back before the Retry-After of its previous 429."""
    by_path: dict[str, list[dict]] = defaultdict(list)
    for entry in log:
        by_path[entry["path"]].append(entry)
    violations = []
    for path, entries in by_path.items():
        entries.sort(key=lambda e: e["t"])
        for answer, following in pairwise(entries):
            value = answer.get("retry_after")
            if answer["status"] != 429 or not value:
                continue
            answered = answer["t"] + answer["duration_ms"] / 1000
            if value.strip().isdigit():
                earliest = answered + int(value)
            else:
                earliest = parsedate_to_datetime(value).timestamp()
            if following["t"] < earliest - 0.05:
                violations.append(f"{path}: back {earliest - following['t']:.2f}s early ({value})")
    return violations
