"""How good is the progress ETA? Predicted finish at 25%, 50% and 75% against the actual one.

Two crawls of a simulated catalogue, each with the progress events file on
(``PROGRESS_EVENTS_FILE``: one snapshot a second, with progress and ETA):

- steady: the site answers with the same latency throughout;
- slows down: when the crawl reports 50% progress, the site's latency is raised
  (``site.set_faults(latency_ms=...)``), so the second half runs slower.

For each the table shows, at the first snapshot past 25%, 50% and 75%, the time
left the ETA predicted (with its +- band) against the time that was actually
left, the error, and whether the actual finish fell inside the band. Baseline,
from the same snapshots: the naive estimate ``elapsed * (1 / progress - 1)``
(average speed since the start).

Concurrency is fixed (``ADAPTIVE_CONCURRENCY_ENABLED=False``) so the slowdown is
not compensated by the adaptive controller.

    python bench/eta_accuracy.py [--products 1800] [--latency-ms 60] [--slow-factor 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, markdown_table, median

from matter_crawler.sitesim.process import SimulatedSite

THRESHOLDS = (0.25, 0.50, 0.75)


def snapshots(path: Path) -> list[dict]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written
        if event.get("type") == "snapshot":
            found.append(event)
    return found


def crawl(site: SimulatedSite, scratch: Path, name: str, options, slow_down: bool) -> list[dict]:
    events = scratch / f"{name}.jsonl"
    command = [
        sys.executable, "-m", "scrapy", "crawl", "matter_products",
        "-s", f"CSA_BASE_URL={site.base_url}",
        "-s", f"DATABASE_URL=sqlite:///{scratch / name}.sqlite3",
        "-s", "CRAWL_PROFILE=fast",
        "-s", f"CONCURRENT_REQUESTS={options.concurrency}",
        "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={options.concurrency}",
        "-s", "ADAPTIVE_CONCURRENCY_ENABLED=False",
        "-s", "PROMETHEUS_PORT=0",
        "-s", "PROGRESS_BAR=false",
        "-s", f"PROGRESS_EVENTS_FILE={events}",
        "-s", "LOG_LEVEL=WARNING",
    ]  # fmt: skip
    site.set_faults(latency_ms=options.latency_ms)
    with (scratch / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        slowed = not slow_down
        while process.poll() is None:
            time.sleep(0.2)
            if not slowed and any((s.get("progress") or 0) >= 0.5 for s in snapshots(events)):
                site.set_faults(latency_ms=options.latency_ms * options.slow_factor)
                slowed = True
    if process.returncode != 0:
        print((scratch / f"{name}.log").read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"the {name} crawl failed")
    return snapshots(events)


def accuracy(name: str, taken: list[dict]) -> list[list[object]]:
    final = taken[-1]
    if final.get("reason") != "finished":
        raise SystemExit(f"the crawl did not finish: {final.get('reason')}")
    finish = final["time"]
    rows = []
    for threshold in THRESHOLDS:
        point = next(
            s
            for s in taken
            if (s["progress"] or 0) >= threshold and s["eta"]["seconds"] is not None
        )
        actual = finish - point["time"]
        predicted, band = point["eta"]["seconds"], point["eta"]["band"]
        naive = point["elapsed"] * (1 / point["progress"] - 1)
        rows.append(
            [
                name,
                f"{threshold:.0%} (at {point['progress']:.1%})",
                point["elapsed"],
                f"{predicted:.1f} +- {band:.1f}",
                actual,
                predicted - actual,
                f"{(predicted - actual) / actual:+.0%}",
                "yes" if abs(predicted - actual) <= band else "no",
                f"{(naive - actual) / actual:+.0%}",
            ]
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=1800)
    parser.add_argument("--latency-ms", type=float, default=60)
    parser.add_argument("--slow-factor", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()

    rows = []
    durations = {}
    with (
        tempfile.TemporaryDirectory() as scratch_dir,
        SimulatedSite(products=options.products, latency_ms=options.latency_ms) as site,
    ):
        scratch = Path(scratch_dir)
        for name, slow_down in (("steady", False), ("slows down at 50%", True)):
            taken = crawl(site, scratch, name.split()[0], options, slow_down)
            durations[name] = taken[-1]["elapsed"]
            rows += accuracy(name, taken)

    print(
        f"ETA accuracy: crawls of a {options.products:,}-product simulated catalogue, "
        f"concurrency {options.concurrency}, latency {options.latency_ms:g} ms "
        f"(x{options.slow_factor:g} from 50% in the second crawl)"
    )
    print(f"Machine: {machine()}")
    print("Crawl durations: " + ", ".join(f"{k} {v:.1f} s" for k, v in durations.items()) + "\n")
    print(
        markdown_table(
            [
                "site",
                "progress",
                "elapsed s",
                "predicted left s (+- band)",
                "actual left s",
                "error s",
                "error",
                "actual in band",
                "naive estimate's error",
            ],
            rows,
        )
    )
    errors = [abs(float(row[6].rstrip("%"))) for row in rows if row[0] == "steady"]
    print(f"\nSteady site: median absolute error {median(errors):.0f}% of the time left.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
