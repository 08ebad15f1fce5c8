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
                                 [--concurrency 4] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, markdown_table, median, stop_process

from sitesim.process import SimulatedSite

THRESHOLDS = (0.25, 0.50, 0.75)


class SnapshotReader:
    """The snapshots appended to a crawl's events file, read as they come.

    Each call reads only what was written since the last one (from a byte
    offset); a line still being written waits for its newline.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.snapshots: list[dict] = []

    def read_new(self) -> list[dict]:
        try:
            with self.path.open("rb") as events:
                events.seek(self.offset)
                data = events.read()
        except FileNotFoundError:
            return []  # the crawl has not opened it yet
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        decoded = (json.loads(line) for line in lines if line)
        new = [event for event in decoded if event.get("type") == "snapshot"]
        self.snapshots += new
        return new


def crawl(site: SimulatedSite, scratch: Path, name: str, options, slow_down: bool) -> list[dict]:
    events = SnapshotReader(scratch / f"{name}.jsonl")
    command = [
        sys.executable, "-m", "scrapy", "crawl", "matter_products",
        "-s", f"CSA_BASE_URL={site.base_url}",
        "-s", f"DATABASE_URL=sqlite:///{scratch / name}.sqlite3",
        "-s", "CRAWL_PROFILE=fast",
        "-s", f"CONCURRENT_REQUESTS={options.concurrency}",
        "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={options.concurrency}",
        "-s", "ADAPTIVE_CONCURRENCY_ENABLED=False",
        "-s", "MONITORING_PORT=0",
        "-s", "PROGRESS_BAR=false",
        "-s", f"PROGRESS_EVENTS_FILE={events.path}",
        "-s", "LOG_LEVEL=WARNING",
    ]  # fmt: skip
    site.set_faults(latency_ms=options.latency_ms)
    log_path = scratch / f"{name}.log"
    deadline = time.monotonic() + options.timeout
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        slowed = not slow_down
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"the {name} crawl did not finish within {options.timeout:g} s")
            time.sleep(0.2)
            new = events.read_new()
            if not slowed and any((s.get("progress") or 0) >= 0.5 for s in new):
                site.set_faults(latency_ms=options.latency_ms * options.slow_factor)
                slowed = True
    finally:
        stop_process(process, wait=30)
    if process.returncode != 0:
        print(log_path.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"the {name} crawl failed")
    events.read_new()
    return events.snapshots


def first_past(name: str, taken: list[dict], threshold: float) -> dict:
    """The first snapshot before the end at or past ``threshold`` progress with an ETA."""
    for snapshot in taken:
        if snapshot["finished"]:
            break  # the closing snapshot: nothing is left to predict
        if (snapshot["progress"] or 0) >= threshold and snapshot["eta"]["seconds"] is not None:
            return snapshot
    reached = max((s["progress"] or 0 for s in taken if not s["finished"]), default=0)
    raise SystemExit(
        f"{name}: no snapshot with an ETA at {threshold:.0%} progress or more "
        f"(the last one before the end was at {reached:.1%}): make the crawl longer"
    )


def accuracy(name: str, taken: list[dict]) -> list[list[object]]:
    if not taken:
        raise SystemExit(f"{name}: the events file has no snapshot")
    final = taken[-1]
    if final.get("reason") != "finished":
        raise SystemExit(f"the crawl did not finish: {final.get('reason')}")
    finish = final["time"]
    rows = []
    for threshold in THRESHOLDS:
        point = first_past(name, taken, threshold)
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
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds each crawl may take at most"
    )
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
