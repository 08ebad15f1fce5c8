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
import sys
import tempfile
from pathlib import Path
from typing import Any

from adaptive_runs import (
    PAGE_KINDS,
    Run,
    concurrency_series,
    controller_settle_time,
    drop_scenario,
    is_error,
    per_second,
    plot,
    run_one,
    settle_time,
    steady_concurrency,
)
from common import machine, markdown_table

from sitesim.process import SimulatedSite


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
