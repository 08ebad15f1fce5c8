"""Adaptive concurrency against fixed settings and stock AutoThrottle, on a site with a capacity.

The simulated site serves at most C page requests at once (``--capacity``,
default 16); beyond that it refuses with 503 (or 429 + Retry-After: 1 with
``--capacity-status 429``) after ``overload_latency_ms`` (100 ms), and while it
refuses, the requests it accepts slow down (``--overload-slowdown-ms``, 2 ms per
refusal of the last second). Every page takes ``--latency-ms`` (200 ms), so the
best possible goodput is C / latency.

One run, same catalogue, each crawl a ``scrapy crawl matter_products`` child
process (profile ``fast``) capped at ``--cap-seconds``:

- fixed concurrency 1, 4, 8, 16, 32 (``ADAPTIVE_CONCURRENCY_ENABLED=False``,
  ``CONCURRENT_REQUESTS_PER_DOMAIN=N``, ``DOWNLOAD_DELAY=0``);
- stock AutoThrottle at its defaults, and told the capacity
  (``AUTOTHROTTLE_TARGET_CONCURRENCY=C``, which a real user never knows);
- ours (``ADAPTIVE_CONCURRENCY_ENABLED``, the default).

Every figure comes from the server's side (its request log): successful pages
per second between the first request and the last answer, the share of error
answers among page answers, the crawl's real concurrency over time and the time
it took to settle (from the first request until the concurrency, in 1-second
bins, stays within 20% of its steady value). All crawls keep the project's
classified retries (with backoff) and its circuit breaker: that is the crawler
a user runs, so an overloaded setting pays for its refusals the way it would in
production. A second scenario runs ours alone while the capacity drops from C
to ``--drop-to`` and comes back, and measures how long it takes to settle again
each time (target: under 30 s). A PNG plot of concurrency over time goes to
``bench/results/``.

    python bench/adaptive.py                        # about 7 minutes
    python bench/adaptive.py --products 1000 --cap-seconds 20 --phase-seconds 35  # quicker
    python bench/adaptive.py --quick --only ours     # a smoke run: about 1 minute

``--quick`` shortens everything (400 products, 10-s crawls, a 5/12/12-s drop
scenario): the figures are then too short to settle anything, only a check that
the script and the crawls run.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from common import ROOT, machine, markdown_table, run_measured, stop_process

from matter_crawler.sitesim.process import SimulatedSite

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--capacity-status", type=int, choices=(503, 429), default=503)
    parser.add_argument(
        "--overload-slowdown-ms",
        type=float,
        default=2.0,
        help="latency an accepted page takes per refusal of the last second",
    )
    parser.add_argument("--cap-seconds", type=float, default=35.0, help="longest crawl")
    parser.add_argument("--drop-to", type=int, default=4)
    parser.add_argument("--drop-products", type=int, default=6000)
    parser.add_argument("--first-phase", type=float, default=20.0)
    parser.add_argument("--phase-seconds", type=float, default=40.0)
    parser.add_argument("--only", help="comma-separated run names (for trying things out)")
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (overrides the sizes above)"
    )
    options = parser.parse_args()
    if options.quick:
        options.products, options.cap_seconds = 400, 10.0
        options.drop_products, options.first_phase, options.phase_seconds = 1500, 5.0, 12.0
    capacity = options.capacity

    def fixed(n: int) -> dict[str, Any]:
        return {
            "ADAPTIVE_CONCURRENCY_ENABLED": False,
            "CONCURRENT_REQUESTS_PER_DOMAIN": n,
            "CONCURRENT_REQUESTS": max(n, 32),
            "DOWNLOAD_DELAY": 0,
        }

    autothrottle = {"ADAPTIVE_CONCURRENCY_ENABLED": False, "AUTOTHROTTLE_ENABLED": True}
    runs = [Run(f"fixed {n}", fixed(n)) for n in (1, 4, 8, 16, 32)]
    runs += [
        Run("AutoThrottle defaults", autothrottle),
        Run(
            f"AutoThrottle told C={capacity}",
            {**autothrottle, "AUTOTHROTTLE_TARGET_CONCURRENCY": capacity},
        ),
        Run("ours", {}),
    ]
    if options.only:
        wanted = {name.strip() for name in options.only.split(",")}
        runs = [run for run in runs if run.name in wanted]

    print(
        f"Adaptive concurrency: simulated site with capacity {capacity} "
        f"(beyond it: {options.capacity_status} after 100 ms, accepted pages "
        f"{options.overload_slowdown_ms:g} ms slower per refusal of the last second), "
        f"{options.latency_ms} ms a page, "
        f"{options.products:,} products; each crawl capped at {options.cap_seconds:.0f}s",
        flush=True,
    )
    print(f"Machine: {machine()}\n", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        with SimulatedSite(
            products=options.products,
            seed=1,
            latency_ms=options.latency_ms,
            capacity=capacity,
            capacity_status=options.capacity_status,
            overload_slowdown_ms=options.overload_slowdown_ms,
        ) as site:
            catalogue_pages = options.products + math.ceil(options.products / 12)
            for run in runs:
                run_one(site, scratch, run, options.cap_seconds)
        print("  capacity drop scenario (ours)...", flush=True)
        drop = drop_scenario(options, scratch)

    rows = []
    figures: dict[str, tuple[float, float]] = {}
    for run in runs:
        first, last = run.window()
        seconds = per_second(concurrency_series(run.log, first, last))
        steady = steady_concurrency(seconds)
        settled = settle_time(seconds, steady, until=max(1, len(seconds) * 3 // 4))
        figures[run.name] = (run.goodput(), run.error_share())
        rows.append(
            [
                run.name,
                run.goodput(),
                f"{run.error_share():.2%}",
                steady,
                settled_text(settled, steady),
                f"{run.distinct_pages_done() / catalogue_pages:.0%}",
                run.cpu / max(1, run.successes()) * 1000,
            ]
        )
    print()
    print(
        markdown_table(
            [
                "crawl",
                "pages/s (successful)",
                "error answers",
                "steady concurrency",
                "settled after (s)",
                "catalogue done",
                "CPU s / 1,000 pages",
            ],
            rows,
        )
    )

    status = 0
    if "ours" in figures:
        ours_rate, ours_errors = figures["ours"]
        fixed_runs = {name: rate for name, (rate, _) in figures.items() if name.startswith("fixed")}
        comparisons = []
        if fixed_runs:
            best = max(fixed_runs, key=fixed_runs.__getitem__)
            comparisons.append((f"best fixed ({best})", fixed_runs[best], 0.9))
        for name, target in (
            ("AutoThrottle defaults", 1.5),
            (f"AutoThrottle told C={capacity}", 0.9),
        ):
            if name in figures:
                comparisons.append((name, figures[name][0], target))
        ratio_rows = []
        for name, rate, target in comparisons:
            ratio = ours_rate / rate if rate else math.inf
            met = ratio >= target
            status |= 0 if met else 1
            ratio_rows.append([f"ours vs {name}", f"{ratio:.2f}x", f">= {target}x", _mark(met)])
        met = ours_errors < 0.02
        status |= 0 if met else 1
        ratio_rows.append(["ours: error answers", f"{ours_errors:.2%}", "< 2%", _mark(met)])
        print()
        print(markdown_table(["comparison", "measured", "target", "met"], ratio_rows))

    log, started, phases, decided, output = drop
    print()
    drop_rows = []
    end = max(entry["t"] for entry in log)
    seconds = per_second(concurrency_series(log, started, end))
    level = 1
    for index, (at, phase_capacity) in enumerate(phases):
        phase_end = phases[index + 1][0] if index + 1 < len(phases) else end
        begin, finish = int(at - started), int(phase_end - started)
        settled = settle_time(seconds[begin:finish], phase_capacity)
        controller = controller_settle_time(decided, at, phase_end, phase_capacity, level)
        level = next((v for t, v in reversed(decided) if t < phase_end), level)
        in_phase = [e for e in log if at <= e["t"] < phase_end and e["kind"] in PAGE_KINDS]
        ok = sum(1 for e in in_phase if e["status"] == 200)
        bad = sum(1 for e in in_phase if is_error(e))
        within = settled is not None and settled < 30
        if index > 0:
            status |= 0 if within else 1
        drop_rows.append(
            [
                f"{phase_capacity} from {at - started:.0f}s",
                "never" if settled is None else f"{settled:.0f}",
                "never" if controller is None else f"{controller:.1f}",
                ok / max(1e-9, phase_end - at),
                f"{bad / max(1, ok + bad):.2%}",
                _mark(within) if index > 0 else "(start)",
            ]
        )
    print(
        markdown_table(
            [
                "capacity",
                "settled after (s), server side",
                "controller settled after (s)",
                "pages/s",
                "error answers",
                "within 30 s",
            ],
            drop_rows,
        )
    )
    breaker = [line.split("INFO: ")[-1].split("WARNING: ")[-1] for line in output.splitlines()]
    breaker = [line for line in breaker if line.startswith("Circuit for")]
    if breaker:
        print("Circuit breaker during the drop scenario: " + "; ".join(breaker))
    path = plot(runs, drop[:4], options)
    crawl_log = path.with_suffix(".drop.log")
    crawl_log.write_text(output, encoding="utf-8")
    print(
        "\nServer-side figures (the site's request log). Every crawl runs the whole project: "
        "classified retries with backoff and the circuit breaker are on for all of them, so "
        "refused requests are retried later and a setting that keeps overloading the site "
        "trips the breaker, as it would in production. 'settled after': seconds from the "
        "first request (or the capacity change) until the concurrency seen by the server "
        "(1-s means) is within 20% (at least 1 request) of its steady value (in the drop "
        "scenario: of the new capacity) and stays there in 90% of the seconds that follow; "
        "'controller settled': until the extension's own level stays within 20% below the "
        "capacity or one above it (a probe)."
    )
    print(f"Plot: {path}")
    print(f"Log of the drop-scenario crawl: {crawl_log}")
    return status


def settled_text(settled: float | None, steady: float) -> str:
    if steady < 0.5:
        return "n/a (held by the breaker)"  # nothing steady to settle at
    return "never" if settled is None else f"{settled:.0f}"


def _mark(met: bool) -> str:
    return "yes" if met else "NO"


if __name__ == "__main__":
    sys.exit(main())
