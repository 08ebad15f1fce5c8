"""A Scrapy extension for ``bench/memory_profile.py``: what a crawl holds at its peak.

Starts ``tracemalloc`` when the engine starts (imports and start-up are outside
it: ``bench/import_cost.py`` measures those), takes a snapshot then, checks the
traced total every ``TRACEMALLOC_PROBE_INTERVAL`` seconds and takes a new snapshot
whenever it passed the last one by 5%, and at ``spider_closed`` writes the growth
from the first snapshot to the largest as JSON to ``TRACEMALLOC_PROBE_OUT``.

Only Python's own allocations are traced: lxml's and SQLite's C heaps are not
(the driver compares the total with the process's resident memory).
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import create_looping_call

from matter_crawler.extensions.memusage import peak_resident_bytes


class TracemallocProbe:
    def __init__(self, crawler: Crawler, out: Path, interval: float, frames: int) -> None:
        self.crawler = crawler
        self.out = out
        self.interval = interval
        self.frames = frames
        self.baseline: tracemalloc.Snapshot | None = None
        self.peak: tracemalloc.Snapshot | None = None
        self.peak_traced = 0
        self.peak_at = 0.0
        self.started = 0.0
        self.snapshot_seconds = 0.0
        self.resident_at_start: int | None = None
        self.loop: Any = None
        crawler.signals.connect(self.engine_started, signal=signals.engine_started)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TracemallocProbe:
        settings = crawler.settings
        return cls(
            crawler,
            Path(settings.get("TRACEMALLOC_PROBE_OUT", "tracemalloc-probe.json")),
            settings.getfloat("TRACEMALLOC_PROBE_INTERVAL", 2.0),
            # deep enough to reach the component that asked for the memory; each frame
            # more slows every allocation
            settings.getint("TRACEMALLOC_PROBE_FRAMES", 6),
        )

    def _snapshot(self) -> tracemalloc.Snapshot:
        started = time.process_time()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        self.snapshot_seconds += time.process_time() - started
        return snapshot

    def engine_started(self) -> None:
        tracemalloc.start(self.frames)
        self.started = time.monotonic()
        self.baseline = self.peak = self._snapshot()
        self.resident_at_start = peak_resident_bytes()
        self.loop = create_looping_call(self.check)
        self.loop.start(self.interval, now=False)

    def check(self) -> None:
        traced, _ = tracemalloc.get_traced_memory()
        if traced > self.peak_traced * 1.05:
            self.peak = self._snapshot()
            self.peak_traced = traced
            self.peak_at = time.monotonic() - self.started

    def spider_closed(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.check()
        assert self.baseline is not None
        assert self.peak is not None
        _, traced_peak = tracemalloc.get_traced_memory()
        growth = self.peak.compare_to(self.baseline, "traceback")
        report = {
            "peak_snapshot_at_s": round(self.peak_at, 1),
            "traced_at_peak_snapshot": self.peak_traced,
            "traced_peak": traced_peak,
            "resident_peak": peak_resident_bytes(),
            "resident_at_engine_start": self.resident_at_start,
            "snapshot_cpu_s": round(self.snapshot_seconds, 2),
            "growth": [
                {
                    "bytes": stat.size_diff,
                    "blocks": stat.count_diff,
                    "traceback": [f"{frame.filename}:{frame.lineno}" for frame in stat.traceback],
                }
                for stat in growth
                if stat.size_diff > 0
            ],
        }
        tracemalloc.stop()
        self.out.write_text(json.dumps(report))
