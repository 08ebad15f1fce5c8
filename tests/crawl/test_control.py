"""Live control of a real crawl of the simulated site, through its real monitoring server:
``scrapy control`` pauses (the site sees no request while paused), resumes, switches the
profile within the politeness ceiling and stops; a resume from JOBDIR then loses nothing.
Requests a web page or another client could send without the token are refused.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ..helpers import (
    PROJECT_ROOT,
    crawl_runs,
    database_differences,
    monitoring_address,
    query,
    run_crawl,
    scrapy_control,
    sqlite_url,
    start_crawl,
    stop_process,
    wait_for,
)

PAUSED_SPAN = 3.0  # seconds the test watches the site for requests while the crawl is paused


def raw(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request exactly as given (Host defaults to this server's own)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        given = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        if body is not None:
            given["Content-Length"] = str(len(body))
        for name, value in given.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "control", timeout=30) as answer:
        return json.loads(answer.read())


def bounds(url: str) -> dict[str, int]:
    """The adaptive controller's concurrency bounds for 127.0.0.1, from /metrics."""
    with urllib.request.urlopen(url + "metrics", timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    found = {}
    for line in lines:
        if line.startswith("matter_crawler_adaptive_concurrency_bound{") and (
            'domain="127.0.0.1"' in line
        ):
            found[re.search(r'bound="(\w+)"', line).group(1)] = int(float(line.split()[-1]))
    return found


def events(path: Path, kind: str) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [event for event in map(json.loads, lines) if event["type"] == kind]


@pytest.mark.slow
def test_pause_holds_resume_profile_stop_and_resume_from_jobdir(simulated_site, tmp_path):
    site = simulated_site(products=500, seed=21, latency_ms=150)
    truth = site.truth()
    database = sqlite_url(tmp_path / "control.sqlite3")
    jobdir = tmp_path / "job"
    events_file = tmp_path / "events.jsonl"
    log_path = tmp_path / "crawl.log"
    settings = {
        "MONITORING_PORT": 0,
        "JOBDIR": str(jobdir),
        "CRAWL_PROFILE": "polite",
        "ADAPTIVE_MIN_DELAY": 0.0,  # explicit: stays whatever the profile
        "ADAPTIVE_DOMAIN_LIMITS": {"127.0.0.1": {"max_concurrency": 4}},
        "STORE_FLUSH_INTERVAL": 0.5,
        "PROGRESS_EVENTS_FILE": str(events_file),
    }
    crawl = start_crawl(site.base_url, database, settings=settings, log_path=log_path)
    try:
        url, _ = monitoring_address(log_path)
        token_file = jobdir / "matter_crawler.control-token"
        wait_for(token_file.exists, message="the token file")
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40
        described = state(url)
        assert described["token_file"] == str(token_file)
        assert (described["state"], described["profile"]) == ("running", "polite")
        wait_for(
            lambda: site.stats()["by_kind"].get("detail", 0) >= 10,
            timeout=120,
            message="product pages",
        )

        # pause: once the command returns, nothing in flight and no new request
        paused = scrapy_control(url, "pause")
        assert (paused["state"], paused["in_flight"]) == ("paused", 0)
        since = time.time()
        time.sleep(PAUSED_SPAN)
        assert site.requests_log(since=since - 0.05) == []
        assert site.stats()["open_requests"] == 0
        with urllib.request.urlopen(url + "status", timeout=30) as answer:
            snapshot = json.loads(answer.read())
        assert snapshot["paused"] is True
        assert crawl.poll() is None
        # the crawl's state was saved at the pause (what a clean close saves)
        saved = json.loads((jobdir / "matter_crawler.state.json").read_text())
        assert saved["counters"]["downloader/request_count"] > 0

        # resume: requests again
        resumed = scrapy_control(url, "resume")
        assert resumed["state"] == "running"
        assert resumed["paused_seconds"] >= PAUSED_SPAN
        wait_for(lambda: site.requests_log(since=since), timeout=30, message="new requests")

        # profile: fast, within the politeness ceiling (4 at a time for 127.0.0.1): polite
        # never had more than 3 requests out, fast climbs to the ceiling and no further
        assert bounds(url) == {"min": 1, "max": 3}
        switched = scrapy_control(url, "profile", "fast")
        assert switched["profile"] == "fast"
        assert bounds(url) == {"min": 1, "max": 4}
        site.reset_stats()
        wait_for(
            lambda: site.stats()["max_concurrency"] >= 4, timeout=120, message="4 requests out"
        )
        wait_for(lambda: site.stats()["requests_total"] >= 40, timeout=120, message="crawling on")
        assert site.stats()["max_concurrency"] == 4

        # stop, from a pause: graceful, as Ctrl-C; the token file goes with the crawl
        assert scrapy_control(url, "pause")["state"] == "paused"
        assert scrapy_control(url, "stop")["state"] == "stopping"
        assert crawl.wait(timeout=120) == 0
    finally:
        stop_process(crawl)
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert token not in output
    assert "Crawl paused (live control)" in output
    assert "Profile polite -> fast (live control): 1-32 requests at a time, 0.00-10.00 s" in output
    assert not token_file.exists()
    assert [(e["state"], e["profile"]) for e in events(events_file, "run")] == [
        ("paused", "polite"),
        ("resumed", "polite"),
        ("profile", "fast"),
        ("paused", "fast"),
        ("stopping", "fast"),
    ]
    assert token not in events_file.read_text()
    (run,) = crawl_runs(database)
    assert (run["status"], run["finish_reason"]) == ("stopped", "shutdown")
    stored = query(database, "select count(*) from products")[0][0]
    assert 0 < stored < len(truth)

    # resume with the same JOBDIR: the rest, nothing lost, nothing twice
    resumed_crawl = run_crawl(site.base_url, database, settings=settings)
    resumed_crawl.check()
    assert "Resuming a full crawl" in resumed_crawl.output
    assert database_differences(database, truth) == []
    assert query(database, "select count(*), count(distinct url) from products") == [
        (len(truth), len(truth))
    ]
    (run,) = crawl_runs(database)
    assert (run["status"], run["sessions"]) == ("finished", 2)


def test_requests_without_the_token_or_from_a_web_page_are_refused(simulated_site, tmp_path):
    site = simulated_site(products=400, seed=22, latency_ms=100)
    database_file = tmp_path / "refusals.sqlite3"
    log_path = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        sqlite_url(database_file),
        settings={"MONITORING_PORT": 0, "CONCURRENT_REQUESTS": 2},
        log_path=log_path,
    )
    try:
        url, port = monitoring_address(log_path)
        token_file = Path(f"{database_file}.control-token")  # no JOBDIR: next to the database
        wait_for(token_file.exists, message="the token file")
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        good = {"X-Matter-Control": "1", "Authorization": f"Bearer {token}"}
        refused = {
            "no token": ("POST", {"X-Matter-Control": "1"}, 401),
            "wrong token": (
                "POST",
                {"X-Matter-Control": "1", "Authorization": f"Bearer {token[:-2]}xx"},
                401,
            ),
            "no custom header": ("POST", {"Authorization": f"Bearer {token}"}, 403),
            # what a cross-origin <form method=post> sends: no custom header, an Origin
            "cross-origin form post": (
                "POST",
                {
                    "Origin": "http://attacker.example",
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Sec-Fetch-Site": "cross-site",
                },
                403,
            ),
            # even with every header right (a page cannot set them without a preflight)
            "cross-origin with the token": (
                "POST",
                {**good, "Origin": "http://attacker.example"},
                403,
            ),
            "cross-site fetch": ("POST", {**good, "Sec-Fetch-Site": "cross-site"}, 403),
            "same-site fetch": ("POST", {**good, "Sec-Fetch-Site": "same-site"}, 403),
            "GET": ("GET", good, 405),
            "preflight": (
                "OPTIONS",
                {
                    "Origin": "http://attacker.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,x-matter-control",
                },
                405,
            ),
            "wrong Host": ("POST", {**good, "Host": f"attacker.example:{port}"}, 421),
        }
        for what, (method, headers, expected) in refused.items():
            status, answer_headers, body = raw(port, method, "/control/pause", headers, b"x=1")
            assert status == expected, (what, status, body)
            if status == 401:
                assert answer_headers["www-authenticate"].startswith("Bearer"), what
            assert not [h for h in answer_headers if h.startswith("access-control-")], what
            assert token.encode() not in body
        # scrapy control with a wrong token, or a token file it cannot read: one line, exit 1
        for extra, environment, expected in (
            ([], {"MATTER_CONTROL_TOKEN": "wrong"}, "HTTP 401 a valid control token is required"),
            (["--token-file", str(tmp_path / "none")], {}, "cannot read the control token"),
        ):
            failed = subprocess.run(
                [sys.executable, "-m", "scrapy", "control", "pause", "--url", url, *extra],
                cwd=PROJECT_ROOT,
                env={**os.environ, **environment},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert failed.returncode == 1
            assert failed.stderr.startswith("scrapy control: error: ")
            assert expected in failed.stderr
        assert state(url)["state"] == "running"  # nothing paused it
        assert crawl.poll() is None

        # the right request from this server's own origin (the live page) is carried out
        status, _, body = raw(port, "POST", "/control/pause", {**good, "Origin": url[:-1]})
        assert status == 200, body
        assert json.loads(body)["state"] in ("pausing", "paused")
        status, _, body = raw(port, "POST", "/control/profile", good, b'{"profile": "turbo"}')
        assert status == 400, body
        status, _, body = raw(port, "POST", "/control/resume", good)
        assert (status, json.loads(body)["state"]) == (200, "running")

        # the token is nowhere the server serves
        for path in ("", "static/app.js", "static/control.js", "status", "metrics", "control"):
            with urllib.request.urlopen(url + path, timeout=30) as answer:
                assert token.encode() not in answer.read(), path
    finally:
        stop_process(crawl, wait=120)
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert token not in output
    assert not token_file.exists()


def test_a_crawl_killed_while_paused_loses_nothing(simulated_site, tmp_path):
    """The pause saves the crawl's state (its counters exact at the pause, where the periodic
    save would be up to 30 s old); killed then, the crawl resumes from the database."""
    site = simulated_site(products=200, seed=24, latency_ms=60)
    truth = site.truth()
    database = sqlite_url(tmp_path / "killed.sqlite3")
    jobdir = tmp_path / "job"
    log_path = tmp_path / "crawl.log"
    settings = {"MONITORING_PORT": 0, "JOBDIR": str(jobdir), "CONCURRENT_REQUESTS": 4}
    crawl = start_crawl(site.base_url, database, settings=settings, log_path=log_path)
    try:
        url, _ = monitoring_address(log_path)
        wait_for(
            lambda: site.stats()["by_kind"].get("detail", 0) >= 30,
            timeout=120,
            message="product pages",
        )
        assert scrapy_control(url, "pause")["state"] == "paused"
        sent = site.stats()["requests_total"]
        saved = json.loads((jobdir / "matter_crawler.state.json").read_text())
        assert saved["counters"]["downloader/request_count"] == sent
        crawl.kill()
        crawl.wait(timeout=30)
    finally:
        stop_process(crawl)
    assert sent < len(truth)
    resumed = run_crawl(site.base_url, database, settings=settings)
    resumed.check()
    assert "did not stop cleanly" in resumed.output
    assert database_differences(database, truth) == []
    assert query(database, "select count(*), count(distinct url) from products") == [
        (len(truth), len(truth))
    ]
