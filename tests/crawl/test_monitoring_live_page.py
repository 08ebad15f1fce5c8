"""The live page in real headless Chromium (Debian's, driven by Playwright) during a
crawl of the simulated site: the progress bar advances, product names holding markup
(``<script>alert(1)</script>``, ``<Labs> & Co.``) show as text and run nothing, tasks in
flight show with their age, the bottleneck verdict shows, and a Ctrl-C'd crawl closes
the page's stream and frees its port.

Playwright runs in a child process: its sync API refuses to run where an asyncio
loop may be running (pytest here runs with the asyncio reactor). That child starts
Playwright's node driver, which starts Chromium in a process group of its own: the
child gets a session of its own, and at the end, whatever happened, its group and
every group below it are killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import require_executable
from ..helpers import monitoring_address, sqlite_url, start_crawl, stop_process

BROWSE = r"""
import contextlib, json, sys
from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright

url, chromium, name, manufacturer = sys.argv[1:5]
result = {"dialogs": 0, "errors": []}


def dialog(d):
    result["dialogs"] += 1
    d.dismiss()


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=["--disable-background-networking", "--no-first-run", "--disable-gpu"],
    )
    page = browser.new_page()
    page.on("dialog", dialog)
    page.on("pageerror", lambda error: result["errors"].append(str(error)))
    page.on("console", lambda m: m.type == "error" and result["errors"].append(m.text))
    page.goto(url)
    # functions, not expression strings: the page's CSP forbids eval of strings
    above = "(v) => document.getElementById('progress').value > v"
    page.wait_for_function(above, arg=0, timeout=30000)
    first = page.eval_on_selector("#progress", "e => e.value")
    page.wait_for_function(above, arg=first, timeout=30000)
    result["progress"] = [first, page.eval_on_selector("#progress", "e => e.value")]
    product = page.locator("#tasks .product-name", has_text=name).first
    product.wait_for(timeout=30000)
    result["name"] = product.text_content()
    result["manufacturer_rows"] = page.locator("#tasks tr", has_text=manufacturer).count()
    result["scripts"] = page.evaluate("document.querySelectorAll('script').length")
    result["eta"] = page.text_content("#eta")
    result["stages"] = page.inner_text("#stages")
    result["connection"] = page.text_content("#connection")
    result["links_hidden"] = page.eval_on_selector("#links", "e => e.hidden")
    # tasks in flight, with their age, and where the crawl is held back
    page.wait_for_function(
        "() => document.querySelectorAll('#in-flight tbody tr').length > 0", timeout=30000
    )
    result["in_flight"] = page.eval_on_selector_all(
        "#in-flight tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    )
    result["in_flight_count"] = page.text_content("#in-flight-count")
    # one snapshot is one moment: between a response and the next request the slot is
    # below its limit ("none"); the page must show the ceiling within a few snapshots
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "() => ['politeness', 'idle'].includes("
            "document.getElementById('bottleneck-verdict').textContent)",
            timeout=15000,
        )
    result["verdict"] = page.text_content("#bottleneck-verdict")
    result["verdict_reason"] = page.text_content("#bottleneck-reason")
    result["queues"] = page.inner_text("#queues")
    print(json.dumps(result), flush=True)
    sys.stdin.readline()  # the test stops the crawl now
    page.wait_for_function(
        "() => document.getElementById('connection').textContent.startsWith('crawl closed')",
        timeout=60000,
    )
    print(json.dumps({"connection": page.text_content("#connection")}), flush=True)
    browser.close()
"""


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (Linux: /proc/<pid>/task/<tid>/children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the thread or process just ended
                for child in map(int, children.read_text().split()):
                    if child not in found:
                        found.add(child)
                        todo.append(child)
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill the process, its group, and the groups of everything below it.

    Its own group (start_new_session) holds Playwright's node driver; Playwright
    starts Chromium detached, in a group of its own, so that group is killed too.
    """
    groups = {process.pid}
    for pid in _descendants(process.pid):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    groups.discard(os.getpgrp())  # never this test's own group
    for group in groups:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(group, signal.SIGKILL)
    process.wait(timeout=30)


def _playwright_or_skip() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        require_executable("playwright-python-package", "pip install playwright")


@pytest.mark.slow
@pytest.mark.system
def test_live_page_in_chromium_advances_and_shows_markup_as_text(simulated_site, tmp_path):
    chromium = require_executable("chromium", "the live-page test drives headless Chromium")
    _playwright_or_skip()
    site = simulated_site(products=240, seed=2, latency_ms=100)
    truth = site.truth()
    scripted = next(record for record in truth if "<script>" in record["model"])
    labs = next(record for record in truth if "<Labs>" in record["manufacturer"])
    log_path = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        sqlite_url(tmp_path / "live.sqlite3"),
        settings={
            "MONITORING_PORT": 0,
            "CONCURRENT_REQUESTS": 2,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
            "ADAPTIVE_CONCURRENCY_ENABLED": False,
            "PROGRESS_RECENT_TASKS": 1000,  # a slow browser start still sees page 1's products
        },
        log_path=log_path,
    )
    browser = None
    try:
        url, port = monitoring_address(log_path)
        browser = subprocess.Popen(
            [sys.executable, "-c", BROWSE, url, chromium, scripted["model"], labs["manufacturer"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its node driver shares its group
        )
        line = browser.stdout.readline()
        assert line, browser.stderr.read()
        seen = json.loads(line)
        assert crawl.poll() is None, "the crawl must still run while the page is checked"
        first, later = seen["progress"]
        assert 0 < first < later < 1
        assert seen["name"] == "<script>alert(1)</script>"  # as text, not as an element
        assert seen["manufacturer_rows"] >= 1  # O'Reilly "Smart" Home <Labs> & Co.
        assert seen["scripts"] == 3  # only static/app.js, static/bottleneck.js, static/control.js
        assert seen["dialogs"] == 0
        assert seen["errors"] == []
        assert seen["connection"] == "live"
        assert seen["links_hidden"]  # no FEED_ATOM_PATH: no link
        assert re.fullmatch(r"\d+s|\d+m\d\ds|\?", seen["eta"])
        assert "list" in seen["stages"]
        assert "detail" in seen["stages"]
        # tasks in flight: id, age in seconds, stage, URL of the simulated site. Not
        # bounded by CONCURRENT_REQUESTS: a task lasts until its callback ran and its
        # item went through the pipelines, while the downloader takes the next request
        # as soon as a response leaves it
        assert 1 <= len(seen["in_flight"]) == int(seen["in_flight_count"])
        for task_id, age, stage, task_url in seen["in_flight"]:
            assert int(task_id) > 0
            assert re.fullmatch(r"\d+\.\d s", age), age
            assert stage in ("list", "detail")
            assert task_url.startswith(site.base_url)
        # 2 at a time without the controller: the slot's own limit, full
        assert seen["verdict"] in ("politeness", "idle"), seen["verdict"]
        assert seen["verdict_reason"]
        assert "queued" in seen["queues"]

        crawl.send_signal(signal.SIGINT)  # Ctrl-C
        assert crawl.wait(timeout=60) == 0
        browser.stdin.write("\n")
        browser.stdin.flush()
        closed = json.loads(browser.stdout.readline() or "{}")
        assert closed == {"connection": "crawl closed (shutdown)"}
        assert browser.wait(timeout=30) == 0
    finally:
        if browser is not None:
            _kill_tree(browser)
        stop_process(crawl)
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert f"Monitoring server on {url} stopped" in output
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
