"""Credentials never shown (issue 15, "Files and secrets").

Real crawls of the simulated site with a password in ``DATABASE_URL`` (SQLite
takes none and SQLAlchemy rejects ``user:password@`` in a SQLite URL, so it is a
``?password=`` parameter, as PostgreSQL URLs may carry one, which SQLAlchemy
ignores for SQLite: every output must hide it) and a real Pushgateway behind basic auth
(Debian's prometheus-pushgateway with a ``--web.config.file``), its credentials
in the URL; then the same from the environment instead of ``-s``. The secrets
are looked for in the whole log, every column of the database's ``crawl_runs``
row, ``/status`` and ``/metrics`` during the crawl, and the events file; the push
must have been accepted, so the credentials did reach the Pushgateway.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from scrapy.settings import Settings

from matter_crawler.monitoring.push import pushgateway_from
from matter_crawler.redaction import mask_credentials, masked
from matter_crawler.storage import resolve_database_url

from ..conftest import require_executable
from ..helpers import (
    crawl_runs,
    free_port,
    monitoring_address,
    start_crawl,
    stop_process,
    wait_for,
)

DB_SECRET = "db-s3cret-Xq7"
PUSH_USER, PUSH_SECRET = "pusher", "push-s3cret-Zk9"


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    """A Pushgateway that takes pushes only with PUSH_USER:PUSH_SECRET (basic auth)."""
    binary = require_executable("prometheus-pushgateway", "the secrets test pushes to one")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the system's bcrypt, for the web configuration's password hash

        hashed = crypt.crypt(PUSH_SECRET, crypt.mksalt(crypt.METHOD_BLOWFISH))
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  {PUSH_USER}: '{hashed}'\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "pushgateway.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={config}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _status(f"{url}/-/ready") in (200, 401), 30, 0.2, "the Pushgateway")
        assert _status(f"{url}/metrics") == 401  # it does want credentials
        yield url
    finally:
        stop_process(process, signal.SIGTERM, wait=30)
        log.close()


def _status(url: str, credentials: tuple[str, str] | None = None) -> int | None:
    request = urllib.request.Request(url)
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _pushed_jobs(url: str) -> str:
    token = base64.b64encode(f"{PUSH_USER}:{PUSH_SECRET}".encode()).decode()
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode()


def crawl_and_watch(site, tmp_path: Path, settings: dict) -> dict:
    """Run a crawl to its end, reading /status and /metrics meanwhile; what it showed.

    An empty ``DATABASE_URL`` (``-s DATABASE_URL=``) leaves the database to the environment.
    """
    log = tmp_path / "crawl.log"
    events = tmp_path / "events.jsonl"
    database = tmp_path / "matter.sqlite3"
    crawl = start_crawl(
        site.base_url,
        settings.pop("DATABASE_URL", ""),
        log_path=log,
        settings={"PROGRESS_EVENTS_FILE": str(events), "MONITORING_PORT": 0, **settings},
        args={"_job": "secrets"},
    )
    seen: dict = {"status": [], "metrics": [], "cmdline": ""}
    try:
        url, _port = monitoring_address(log)
        seen["cmdline"] = Path(f"/proc/{crawl.pid}/cmdline").read_bytes().decode(errors="replace")
        while crawl.poll() is None:
            for path in ("status", "metrics"):
                try:
                    with urllib.request.urlopen(f"{url}{path}", timeout=5) as answer:
                        seen[path].append(answer.read().decode())
                except OSError:
                    pass  # closing
        assert crawl.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        stop_process(crawl)
    seen["log"] = log.read_text()
    seen["events"] = events.read_text()
    seen["database"] = database
    return seen


def check_nothing_shows(seen: dict, *secrets: str) -> None:
    assert seen["status"]
    assert seen["metrics"]
    (run,) = crawl_runs(f"sqlite:///{seen['database']}")
    record = json.dumps(run, default=str)
    for secret in secrets:
        assert secret not in seen["log"]
        assert secret not in record
        assert secret not in seen["events"]
        assert not [text for text in seen["status"] + seen["metrics"] if secret in text]
    assert "Traceback" not in seen["log"]


@pytest.mark.system
def test_credentials_in_urls_show_nowhere(pushgateway, simulated_site, tmp_path):
    site = simulated_site(products=60, seed=2, latency_ms=20)
    database = tmp_path / "matter.sqlite3"
    port = pushgateway.rsplit(":", 1)[1]
    seen = crawl_and_watch(
        site,
        tmp_path,
        {
            "DATABASE_URL": f"sqlite:///{database}?password={DB_SECRET}",
            "PROMETHEUS_PUSHGATEWAY_URL": f"http://{PUSH_USER}:{PUSH_SECRET}@127.0.0.1:{port}",
        },
    )
    check_nothing_shows(seen, DB_SECRET, PUSH_SECRET)
    # the settings are there, masked: what was used stays readable
    assert f"sqlite:///{database}?password=***" in seen["log"]  # Overridden settings
    (run,) = crawl_runs(f"sqlite:///{database}")
    assert run["settings"]["DATABASE_URL"] == f"sqlite:///{database}?password=***"
    assert run["settings"]["PROMETHEUS_PUSHGATEWAY_URL"] == (
        f"http://{PUSH_USER}:***@127.0.0.1:{port}"
    )
    # and the credentials did their job: the Pushgateway took the push
    assert f"Pushed the final metrics to the Pushgateway {pushgateway}" in seen["log"]
    assert 'job="secrets"' in _pushed_jobs(pushgateway)


@pytest.mark.system
def test_credentials_from_the_environment(pushgateway, simulated_site, tmp_path, monkeypatch):
    site = simulated_site(products=60, seed=2, latency_ms=20)
    database = tmp_path / "matter.sqlite3"
    # the crawl inherits this process's environment, as a scrapyd job inherits scrapyd's
    monkeypatch.setenv("MATTER_DATABASE_URL", f"sqlite:///{database}?password={DB_SECRET}")
    monkeypatch.setenv("MATTER_PUSHGATEWAY_URL", pushgateway)
    monkeypatch.setenv("MATTER_PUSHGATEWAY_USERNAME", PUSH_USER)
    monkeypatch.setenv("MATTER_PUSHGATEWAY_PASSWORD", PUSH_SECRET)
    seen = crawl_and_watch(site, tmp_path, {})
    assert DB_SECRET not in seen["cmdline"]  # nothing secret on the command line
    assert PUSH_SECRET not in seen["cmdline"]
    assert database.is_file()  # the database the environment named
    check_nothing_shows(seen, DB_SECRET, PUSH_SECRET)
    (run,) = crawl_runs(f"sqlite:///{database}")
    assert run["settings"]["DATABASE_URL"] == f"sqlite:///{database}?password=***"
    assert 'job="secrets"' in _pushed_jobs(pushgateway)


# -- units ------------------------------------------------------------------------------------


def test_mask_credentials():
    assert mask_credentials("postgresql://crawler:pw@db:5432/matter") == (
        "postgresql://crawler:***@db:5432/matter"
    )
    assert mask_credentials("sqlite://u:p@ss@//tmp/x") == "sqlite://u:***@//tmp/x"
    assert mask_credentials("mysql://db/m?password=pw&charset=utf8") == (
        "mysql://db/m?password=***&charset=utf8"
    )
    assert mask_credentials("'DATABASE_URL': 'postgresql://u:pw@h/d'}") == (
        "'DATABASE_URL': 'postgresql://u:***@h/d'}"
    )
    unchanged = "GET http://127.0.0.1:8800/csa-iot_products/page/2/?p_type%5B0%5D=14 a@b.c"
    assert mask_credentials(unchanged) == unchanged


def test_masked_settings_values():
    value = {
        "PROMETHEUS_PUSHGATEWAY_URL": "http://u:pw@gw:9091",
        "SCRAPYD_PASSWORD": "pw",
        "nested": {"api_token": "t", "urls": ["https://x:y@h/"]},
        "EMPTY_PASSWORD": "",
        "COUNT": 3,
    }
    assert masked(value) == {
        "PROMETHEUS_PUSHGATEWAY_URL": "http://u:***@gw:9091",
        "SCRAPYD_PASSWORD": "***",
        "nested": {"api_token": "***", "urls": ["https://x:***@h/"]},
        "EMPTY_PASSWORD": "",
        "COUNT": 3,
    }


def test_where_credentials_come_from():
    environ = {"MATTER_DATABASE_URL": "postgresql://u:pw@db/m"}
    assert resolve_database_url(Settings({"DATABASE_URL": "sqlite:///x.db"}), environ) == (
        "sqlite:///x.db"  # the setting wins
    )
    assert resolve_database_url(Settings({"DATABASE_URL": ""}), environ) == (
        "postgresql://u:pw@db/m"
    )
    assert resolve_database_url(Settings({"DATABASE_URL": ""}), {}) == (
        "sqlite:///data/matter.sqlite3"
    )

    gateway = pushgateway_from("http://u:p%40ss@gw:9091/base", {})
    assert gateway is not None
    assert (gateway.url, gateway.username, gateway.password) == ("http://gw:9091/base", "u", "p@ss")
    assert "p@ss" not in repr(gateway)
    env = {
        "MATTER_PUSHGATEWAY_URL": "http://gw:9091",
        "MATTER_PUSHGATEWAY_USERNAME": "u",
        "MATTER_PUSHGATEWAY_PASSWORD": "pw",
    }
    gateway = pushgateway_from(None, env)
    assert gateway is not None
    assert (gateway.url, gateway.username, gateway.password) == ("http://gw:9091", "u", "pw")
    assert pushgateway_from(None, {}) is None
