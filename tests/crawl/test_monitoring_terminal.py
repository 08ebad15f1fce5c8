"""A crawl whose stderr is a terminal (a pseudo-terminal here) draws a progress bar
in place, erases it before every log line, and leaves it out of log files."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from ..helpers import PROJECT_ROOT, crawl_command, sqlite_url

SIZE_VARIABLES = ("COLUMNS", "LINES")


def _run_on_a_terminal(command: list[str], timeout: float = 120) -> str:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # without COLUMNS and LINES, which Python's terminal size reads before the terminal's
    # own: GNU readline, once imported by the test process, exports COLUMNS=80 and LINES=24
    # (it has no terminal), and xdist's workers inherit them in os.environ
    environment = {name: value for name, value in os.environ.items() if name not in SIZE_VARIABLES}
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"the crawl did not finish within {timeout}s:\n"
                    + b"".join(chunks).decode(errors="replace")[-3000:]
                )
            # wait for output at most until the deadline: a bare os.read would block
            readable, _, _ = select.select([leader], [], [], left)
            if not readable:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return b"".join(chunks).decode("utf-8", errors="replace")


@pytest.mark.slow
def test_progress_bar_on_a_terminal_only(simulated_site, tmp_path):
    # about 7 s of crawling (132 pages, 100 ms each, 2 at a time): several bars at 1 s apart
    site = simulated_site(products=120, seed=9, latency_ms=100)
    log_file = tmp_path / "crawl.log"
    command = crawl_command(
        site.base_url,
        sqlite_url(tmp_path / "tty.sqlite3"),
        settings={
            "MONITORING_PORT": 0,
            "CONCURRENT_REQUESTS": 2,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
            "ADAPTIVE_CONCURRENCY_ENABLED": False,
            "PROGRESS_LOG_INTERVAL": 2,
        },
    )
    screen = _run_on_a_terminal(command)
    bars = re.findall(r"\r\x1b\[K\[([\u2588\u2591#-]+)\] +(\d+|\?)% (list [^\r\n]*)", screen)
    assert len(bars) >= 3, screen[-3000:]
    assert any(percent not in ("?", "0") for _, percent, _ in bars)
    assert all("items/s" in text for _, _, text in bars)
    for line in screen.replace("\r\n", "\n").split("\n"):
        if " INFO: " in line:
            # the bar was erased before the record: the visible line starts with its date
            visible = line.rsplit("\x1b[K", 1)[-1]
            assert re.match(r"\d{4}-\d\d-\d\d ", visible), repr(line)
    assert "Progress: list " in screen

    # the same crawl logging to a file: the terminal still gets the bar, the file never
    # (a shorter crawl: 4 listing pages and their 48 products, about 3 s)
    command += ["-s", f"LOG_FILE={log_file}", "-a", "mode=full", "-a", "refresh=all"]
    command += ["-a", "max_pages=4"]
    screen = _run_on_a_terminal(command)
    assert "\r\x1b[K[" in screen
    logged = log_file.read_text()
    assert "Progress: list " in logged
    assert "\x1b[K" not in logged
    assert "\r" not in logged
