"""The measuring half of ``bench/adaptive.py`` (run that): a crawl of the simulated site
per setting, the server-side figures of each (goodput, error answers, concurrency over
time, settling), the capacity-drop scenario and the plot.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from common import ROOT, run_measured, stop_process

from sitesim.process import SimulatedSite

RESULTS = ROOT / "bench" / "results"
PAGE_KINDS = ("list", "detail")
BIN = 0.25  # seconds per concurrency sample
SETTLE_BAND = 0.2  # settled: within 20% of the steady concurrency ...
SETTLE_SLACK = 1.0  # ... or within one request of it, whichever is wider
SETTLE_SHARE = 0.9  # ... in 90% of the 1-s bins from then on
LOG_FORMAT = "%(asctime)s.%(msecs)03d [%(name)s] %(levelname)s: %(message)s"
_DECISION = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*Adaptive \S+: concurrency (\d+) -> (\d+)"
)


@dataclass
class Run:
    name: str
    settings: dict[str, Any]
    started: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    cpu: float = 0.0
    output: str = ""

    # -- server-side figures -----------------------------------------------------

    @property
    def pages(self) -> list[dict[str, Any]]:
        return [entry for entry in self.log if entry["kind"] in PAGE_KINDS]

    def window(self) -> tuple[float, float]:
        entries = self.log
        first = min(entry["t"] for entry in entries)
        last = max(entry["t"] + entry["duration_ms"] / 1000 for entry in entries)
        return first, last

    def successes(self) -> int:
        return sum(1 for entry in self.pages if entry["status"] == 200)

    def errors(self) -> int:
        return sum(1 for entry in self.pages if is_error(entry))

    def goodput(self) -> float:
        first, last = self.window()
        return self.successes() / (last - first)

    def error_share(self) -> float:
        answered = len(self.pages)
        return self.errors() / answered if answered else 0.0

    def distinct_pages_done(self) -> int:
        return len({entry["path"] for entry in self.pages if entry["status"] == 200})


def is_error(entry: dict[str, Any]) -> bool:
    """An error answer: 5xx or 429 (a request the server never answered is not one)."""
    status = entry["status"] or 0
    return status >= 500 or status == 429


def concurrency_series(
    log: list[dict[str, Any]], start: float, end: float, *, admitted_only: bool = False
) -> list[float]:
    """Mean number of page requests open at the server in each BIN-second bin."""
    bins = [0.0] * max(1, math.ceil((end - start) / BIN))
    for entry in log:
        if entry["kind"] not in PAGE_KINDS:
            continue
        if admitted_only and entry["fault"] == "capacity":
            continue
        begin = entry["t"] - start
        finish = begin + entry["duration_ms"] / 1000
        index = max(0, int(begin // BIN))
        while index < len(bins) and index * BIN < finish:
            low, high = index * BIN, (index + 1) * BIN
            bins[index] += max(0.0, min(high, finish) - max(low, begin)) / BIN
            index += 1
    return bins


def per_second(series: list[float]) -> list[float]:
    step = round(1 / BIN)
    return [
        sum(series[i : i + step]) / len(series[i : i + step]) for i in range(0, len(series), step)
    ]


def settle_time(seconds: list[float], steady: float, *, until: int | None = None) -> float | None:
    """First second, in the band around ``steady``, from which at least SETTLE_SHARE of the
    1-s bins (up to ``until``) stay in it.

    Not every bin: the crawl itself has short gaps (a batch written to the database, the
    queue of product pages running dry until the next listing page is parsed) that show
    at a fixed concurrency as much as at ours.
    """
    until = len(seconds) if until is None else until
    band = max(SETTLE_BAND * steady, SETTLE_SLACK)
    inside = [abs(value - steady) <= band for value in seconds[:until]]
    for index in range(until):
        rest = inside[index:]
        if inside[index] and sum(rest) >= SETTLE_SHARE * len(rest):
            return float(index)
    return None


def controller_settle_time(
    decided: list[tuple[float, int]], at: float, end: float, capacity: int, level: int
) -> float | None:
    """Seconds after ``at`` until the controller's level stays near ``capacity`` until ``end``:
    within max(1, 20%) below it, or one above it (a probe). ``level`` is its level at ``at``."""
    low = capacity - max(1, round(SETTLE_BAND * capacity))

    def near(value: int) -> bool:
        return low <= value <= capacity + 1

    settled = 0.0 if near(level) else None
    for stamp, value in decided:
        if not at <= stamp < end:
            continue
        if near(value):
            if settled is None:
                settled = stamp - at
        else:
            settled = None
    return settled


def steady_concurrency(seconds: list[float]) -> float:
    """The median 1-s concurrency of the run's middle (ramp-up and the last pages left out)."""
    middle = seconds[len(seconds) // 4 : max(len(seconds) // 4 + 1, len(seconds) * 3 // 4)]
    ordered = sorted(middle)
    return ordered[len(ordered) // 2]


def crawl_command(site: SimulatedSite, database: Path, settings: dict[str, Any]) -> list[str]:
    command = [sys.executable, "-m", "scrapy", "crawl", "matter_products"]
    merged = {
        "CSA_BASE_URL": site.base_url,
        "DATABASE_URL": f"sqlite:///{database}",
        "CRAWL_PROFILE": "fast",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": LOG_FORMAT,
        **settings,
    }
    for name, value in merged.items():
        command += ["-s", f"{name}={value}"]
    return command


def run_one(site: SimulatedSite, scratch: Path, run: Run, cap_seconds: float) -> Run:
    database = scratch / f"{re.sub(r'[^a-z0-9]+', '-', run.name.lower())}.sqlite3"
    settings = {"CLOSESPIDER_TIMEOUT": cap_seconds, **run.settings}
    site.reset_stats()
    run.started = time.time()
    measurement = run_measured(crawl_command(site, database, settings), timeout=cap_seconds + 120)
    if measurement.returncode != 0:
        print(measurement.output[-3000:], file=sys.stderr)
        raise SystemExit(f"{run.name}: the crawl exited {measurement.returncode}")
    run.log = site.requests_log(since=run.started)
    run.cpu = measurement.cpu
    run.output = measurement.output
    print(
        f"  {run.name}: {run.successes()} pages in {measurement.wall:.1f}s, "
        f"{run.goodput():.1f} pages/s, {run.error_share():.2%} errors",
        flush=True,
    )
    return run


def decisions(output: str) -> list[tuple[float, int]]:
    """(epoch time, new concurrency) of each decision the extension logged."""
    found = []
    for line in output.splitlines():
        match = _DECISION.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            found.append((stamp, int(match.group(3))))
    return found


def drop_scenario(
    options: argparse.Namespace, scratch: Path
) -> tuple[list[dict[str, Any]], float, list[tuple[float, int]], list[tuple[float, int]], str]:
    """Ours alone while the capacity goes C -> drop_to -> C.

    Returns the request log, the start time, the phases, the decisions and the crawl's output.
    """
    with SimulatedSite(
        products=options.drop_products,
        seed=2,
        latency_ms=options.latency_ms,
        capacity=options.capacity,
        capacity_status=options.capacity_status,
        overload_slowdown_ms=options.overload_slowdown_ms,
    ) as site:
        log_path = scratch / "drop.log"
        total = options.first_phase + 2 * options.phase_seconds
        settings = {"ADAPTIVE_DEBUG": True, "CLOSESPIDER_TIMEOUT": total + 30}
        with log_path.open("wb") as log:
            crawl = subprocess.Popen(
                crawl_command(site, scratch / "drop.sqlite3", settings),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while site.stats()["requests_total"] == 0:
                if crawl.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the drop-scenario crawl did not start")
                time.sleep(0.05)
            started = time.time()
            phases = [(started, options.capacity)]
            time.sleep(options.first_phase)
            site.set_faults(capacity=options.drop_to)
            phases.append((time.time(), options.drop_to))
            time.sleep(options.phase_seconds)
            site.set_faults(capacity=options.capacity)
            phases.append((time.time(), options.capacity))
            time.sleep(options.phase_seconds)
            ended = time.time()
        finally:
            stop_process(crawl, signal.SIGINT, wait=60)
        log_entries = [e for e in site.requests_log(since=started - 5) if e["t"] < ended]
        output = log_path.read_text(encoding="utf-8", errors="replace")
        return log_entries, started, phases, decisions(output), output


def plot(
    runs: list[Run],
    drop: tuple[list[dict[str, Any]], float, list[tuple[float, int]], list[tuple[float, int]]],
    options: argparse.Namespace,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 9))
    for run in runs:
        first, last = run.window()
        series = concurrency_series(run.log, first, last)
        times = [index * BIN for index in range(len(series))]
        top.plot(times, series, label=run.name, linewidth=1.6 if run.name == "ours" else 0.9)
    top.axhline(
        options.capacity, color="black", linestyle=":", label=f"capacity {options.capacity}"
    )
    top.set_title(
        f"Concurrency at the server (mean open page requests per {BIN}s), "
        f"capacity {options.capacity}, latency {options.latency_ms} ms"
    )
    top.set_xlabel("seconds since the crawl's first request")
    top.set_ylabel("open requests")
    top.set_ylim(0, max(36, options.capacity * 2 + 2))
    top.legend(ncol=4, fontsize=8)

    log, started, phases, logged = drop
    end = max(entry["t"] for entry in log)
    series = concurrency_series(log, started, end)
    admitted = concurrency_series(log, started, end, admitted_only=True)
    times = [index * BIN for index in range(len(series))]
    bottom.plot(times, series, label="open at the server (all)", linewidth=0.9)
    bottom.plot(times, admitted, label="open at the server (admitted)", linewidth=0.9)
    if logged:
        xs, ys = [], []
        for stamp, level in logged:
            if stamp >= started:
                xs.append(stamp - started)
                ys.append(level)
        bottom.step(xs, ys, where="post", label="controller's concurrency", color="red")
    capacity_x = [t - started for t, _ in phases] + [end - started]
    capacity_y = [c for _, c in phases] + [phases[-1][1]]
    bottom.step(
        capacity_x, capacity_y, where="post", color="black", linestyle=":", label="capacity"
    )
    refusals = [e["t"] - started for e in log if e["fault"] == "capacity" and e["t"] >= started]
    bottom.plot(refusals, [0.3] * len(refusals), "|", color="crimson", label="refused request")
    bottom.set_title("Ours while the capacity drops and recovers")
    bottom.set_xlabel("seconds since the crawl's first request")
    bottom.set_ylabel("requests")
    bottom.legend(ncol=3, fontsize=8)
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"adaptive-{datetime.now():%Y%m%d-%H%M%S}.png"
    figure.savefig(path, dpi=110)
    return path
