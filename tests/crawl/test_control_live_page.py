"""The live page's control buttons in real headless Chromium during a crawl of the simulated
site: a page of another origin (the simulated site's) cannot pause the crawl, by form post or
by fetch; the live page asks for the token once, pauses (the site then sees no request) and
resumes with its buttons.

Playwright runs in a child process, as in test_monitoring_live_page.py (whose process-tree
clean-up this reuses).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import require_executable
from ..helpers import monitoring_address, sqlite_url, start_crawl, stop_process, wait_for
from .test_monitoring_live_page import _kill_tree, _playwright_or_skip

BROWSE = r"""
import json, sys
from playwright.sync_api import sync_playwright

url, chromium, token, other_origin = sys.argv[1:5]
result = {"dialogs": 0, "errors": []}


def say(payload):
    print(json.dumps(payload), flush=True)
    sys.stdin.readline()  # the test checks the crawl, then lets the browser go on


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=["--disable-background-networking", "--no-first-run", "--disable-gpu"],
    )
    # a page of another origin, in the same browser, tries to pause the crawl
    attacker = browser.new_page()
    attacker.goto(other_origin)
    result["fetch_with_headers"] = attacker.evaluate(
        '''(u) => fetch(u, {method: "POST", headers: {"X-Matter-Control": "1",
              "Authorization": "Bearer guess"}}).then(r => "sent: " + r.status, e => "blocked")''',
        url + "control/pause",
    )
    result["no_cors_post"] = attacker.evaluate(
        '''(u) => fetch(u, {method: "POST", mode: "no-cors", body: "x=1"})
              .then(r => "opaque", e => "blocked")''',
        url + "control/pause",
    )
    attacker.evaluate(
        '''(u) => { const f = document.createElement("form"); f.method = "post"; f.action = u;
              document.body.appendChild(f); f.submit(); }''',
        url + "control/pause",
    )
    attacker.wait_for_load_state()
    result["form_post_answer"] = attacker.text_content("body")
    attacker.close()
    say(result)

    page = browser.new_page()
    page.on("dialog", lambda d: (result.__setitem__("dialogs", result["dialogs"] + 1), d.dismiss()))
    page.on("pageerror", lambda error: result["errors"].append(str(error)))
    page.on("console", lambda m: m.type == "error" and result["errors"].append(m.text))
    page.goto(url)
    page.wait_for_selector("#control", state="visible", timeout=30000)
    state = "(s) => document.getElementById('control-state').textContent === s"
    page.wait_for_function(state, arg="running", timeout=30000)
    page.click("#control-pause")
    page.wait_for_selector("#control-ask", state="visible", timeout=10000)
    result["token_file_shown"] = page.text_content("#control-token-file")
    page.fill("#control-token", token)
    page.click("#control-use")
    page.wait_for_function(state, arg="paused", timeout=60000)
    result["paused_html_has_token"] = token in page.content()
    say({"state": page.text_content("#control-state")})

    page.click("#control-resume")
    page.wait_for_function(state, arg="running", timeout=30000)
    result["asked_again"] = page.is_visible("#control-ask")
    result["message"] = page.text_content("#control-message")
    say(result)
    browser.close()
"""


def _control_state(url: str) -> str:
    with urllib.request.urlopen(url + "control", timeout=30) as answer:
        return json.loads(answer.read())["state"]


@pytest.mark.slow
@pytest.mark.system
def test_live_page_pauses_and_resumes_with_its_buttons(simulated_site, tmp_path):
    chromium = require_executable("chromium", "the live-page test drives headless Chromium")
    _playwright_or_skip()
    site = simulated_site(products=900, seed=23, latency_ms=80)
    database_file = tmp_path / "live.sqlite3"
    log_path = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        sqlite_url(database_file),
        settings={"MONITORING_PORT": 0, "CONCURRENT_REQUESTS": 2},
        log_path=log_path,
    )
    browser = None
    try:
        url, _ = monitoring_address(log_path)
        token_file = Path(f"{database_file}.control-token")
        wait_for(token_file.exists, message="the token file")
        token = token_file.read_text().strip()
        browser = subprocess.Popen(
            [sys.executable, "-c", BROWSE, url, chromium, token, site.base_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its node driver shares its group
        )

        def next_report() -> dict:
            line = browser.stdout.readline()
            assert line, browser.stderr.read()
            return json.loads(line)

        def go_on() -> None:
            browser.stdin.write("\n")
            browser.stdin.flush()

        attempts = next_report()
        assert attempts["fetch_with_headers"] == "blocked"  # its preflight got no CORS answer
        assert attempts["no_cors_post"] == "opaque"  # sent, and refused by the server:
        assert "cross-origin request refused" in attempts["form_post_answer"]
        assert _control_state(url) == "running"
        go_on()

        assert next_report() == {"state": "paused"}
        since = time.time()
        time.sleep(2.0)
        assert site.requests_log(since=since) == []
        assert crawl.poll() is None
        go_on()

        seen = next_report()
        go_on()
        assert browser.wait(timeout=30) == 0
        assert seen["token_file_shown"] == str(token_file)
        assert seen["paused_html_has_token"] is False
        assert seen["asked_again"] is False  # the token was asked for once
        assert seen["message"] == ""  # no refusal, no error
        assert seen["dialogs"] == 0
        assert seen["errors"] == []
        wait_for(lambda: site.requests_log(since=since), timeout=30, message="requests again")
    finally:
        if browser is not None:
            _kill_tree(browser)
        stop_process(crawl, wait=120)
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert "Crawl paused (live control)" in output
    assert "Crawl resumed (live control)" in output
    # the no-cors post and the form post reached the server and were refused there
    assert "'control/refused': 2," in output
