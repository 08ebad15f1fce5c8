"""``scrapy record-site`` against pages built to exhaust its memory (issue 15, "Files and
secrets").

A small HTTP server in the test stands in front of the simulated site (12
products): it passes every page through, links rewritten to itself, except three
product pages: a real gzip decompression bomb (128 MiB of zeros, about 130 KB on
the wire, announced as ``Content-Encoding: gzip``), a page larger than the limit
sent without a Content-Length, and a page in an encoding nobody asked for. The
recorder runs as ``python -m scrapy record-site``, as a user runs it; its peak
memory is the kernel's account of the child (``VmHWM``).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from matter_crawler.recording.limits import PageTooLarge, gunzip_bounded
from matter_crawler.recording.recorder import RecordOptions, SiteRecorder
from sitesim.process import SimulatedSite

from ..helpers import PROJECT_ROOT
from ..loopback import LoopbackServer, QuietHandler

BOMB_BYTES = 128 * 1024 * 1024
LIMIT = 1024 * 1024


class HostileFront(LoopbackServer):
    """The simulated site behind a server that turns three product pages hostile."""

    def __init__(self, site: SimulatedSite, bomb: str, flood: str, brotli: str) -> None:
        self.site = site
        self.hits: dict[str, int] = {}
        front = self
        bomb_body = gzip.compress(b"\0" * BOMB_BYTES, compresslevel=9)

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                front.hits[path] = front.hits.get(path, 0) + 1
                if path == bomb:
                    self.answer(200, bomb_body, {"Content-Encoding": "gzip"})
                elif path == flood:
                    self._flood()
                elif path == brotli:
                    self.answer(200, b"\x1b\x00\x00", {"Content-Encoding": "br"})
                else:
                    self._pass_through()

            def _flood(self) -> None:
                """4 MiB of page, chunked: no Content-Length to refuse it by."""
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=UTF-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"<p>" + b"x" * 65530 + b"</p>"
                try:
                    for _ in range(64):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the recorder hung up: what it should do

            def _pass_through(self) -> None:
                try:
                    with urllib.request.urlopen(front.site.base_url + self.path) as answer:
                        status, body = answer.status, answer.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                body = body.replace(front.site.base_url.encode(), front.url.encode())
                self.answer(status, body, {})

        super().__init__(Handler)


@pytest.fixture
def hostile_front() -> Iterator[tuple[HostileFront, list[str]]]:
    with SimulatedSite(products=12, seed=1) as site:
        paths = [record["url"] for record in site.truth()]
        front = HostileFront(site, bomb=paths[0], flood=paths[1], brotli=paths[2])
        try:
            yield front, paths
        finally:
            front.stop()


def test_a_decompression_bomb_is_refused_and_costs_no_memory(hostile_front, tmp_path):
    front, paths = hostile_front
    directory = tmp_path / "recording"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scrapy",
            "record-site",
            "-o",
            str(directory),
            "--listing-sample",
            "0",
            "--detail-sample",
            "all",
            "--delay",
            "0",
            "--attempts",
            "1",
            "--max-page-size",
            str(LIMIT),
            "-s",
            f"CSA_BASE_URL={front.url}",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak = 0  # the child's peak resident memory (VmHWM: since its exec, not pytest's)
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            break
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)
        time.sleep(0.05)
    out, err = process.communicate(timeout=300)
    stdout, stderr = out.decode(), err.decode()

    # the three hostile pages were refused, each with its reason; the rest recorded
    assert process.returncode == 1, stderr  # pages could not be recorded
    assert "Traceback" not in stderr
    assert "could not be recorded: 3" in stdout
    assert f"{paths[0]} (refused: over {LIMIT:,} bytes decompressed (--max-page-size))" in stdout
    assert f"{paths[1]} (refused: over {LIMIT:,} bytes sent (--max-page-size))" in stdout
    assert f"{paths[2]} (refused: Content-Encoding 'br', which was not asked for)" in stdout
    detail = json.loads((directory / "detail.json").read_text(encoding="utf-8"))
    recorded = {i["request"]["uri"].removeprefix(front.url) for i in detail["http_interactions"]}
    assert recorded == set(paths[3:])
    bodies = [i["response"]["body"].get("string", "") for i in detail["http_interactions"]]
    assert max(len(body) for body in bodies) < LIMIT
    # each asked for once, never again: the same page would be as large
    assert [front.hits[path] for path in paths[:3]] == [1, 1, 1]
    # the bomb cost no memory: far below the 128 MiB it holds
    assert peak < 200 * 1024 * 1024, f"peak resident memory {peak / 2**20:.0f} MiB"
    print(f"record-site peak resident memory: {peak / 2**20:.0f} MiB")


def test_gunzip_bounded():
    page = b"<html>" + b"x" * 1000 + b"</html>"
    assert gunzip_bounded(gzip.compress(page), 2000) == page
    with pytest.raises(PageTooLarge, match="over 1,000 bytes decompressed"):
        gunzip_bounded(gzip.compress(page), 1000)
    with pytest.raises(PageTooLarge, match="does not decompress"):
        gunzip_bounded(b"not gzip at all", 1000)


def test_a_retry_after_that_is_not_a_number_backs_off_instead_of_failing(tmp_path):
    """``Retry-After: ²`` is a digit to ``str.isdigit()`` that ``float()`` refuses: the
    recorder raised ValueError on it; now it reads the header as the crawl does."""
    import requests  # the recorder's HTTP library (betamax records through it)

    with SimulatedSite(products=40, seed=3, hostile_parsing=True) as site:
        entry = next(e for e in site.hostile() if e["kind"] == "bad_retry_after")
        answer = requests.get(site.url(entry["url"]), timeout=10)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "\u00b2"
    options = RecordOptions(
        directory=tmp_path,
        base_url=site.base_url,
        listing_query="",
        user_agent="matter-crawler tests",
        listing_sample=0,
        detail_sample=0,
        max_page_bytes=LIMIT,
        delay=1.0,
        timeout=10.0,
        retry_after_max=300.0,
        attempts=3,
        seed=1,
    )
    recorder = SiteRecorder(options, log=lambda message: None)
    assert recorder._retry_wait(answer, 1) == 1.0  # the backoff: 2 ** 0 * delay
    assert recorder._retry_wait(answer, 3) == 4.0
    answer.headers["Retry-After"] = "7"
    assert recorder._retry_wait(answer, 1) == 7.0
