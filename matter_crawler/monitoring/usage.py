"""What the crawl process uses: CPU time, the reactor thread's CPU demand, rates over a window.

Read once a second by the progress aggregator (:mod:`.progress`), never per request.
"""

from __future__ import annotations

import os
from collections import deque


class WindowedRate:
    """The rate of a cumulative reading over about the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.readings: deque[tuple[float, float]] = deque()

    def update(self, now: float, value: float) -> float | None:
        readings = self.readings
        readings.append((now, value))
        while len(readings) > 2 and now - readings[1][0] >= self.window:
            readings.popleft()
        first_time, first_value = readings[0]
        if now <= first_time:
            return None
        return (value - first_value) / (now - first_time)


def process_cpu_seconds() -> float:
    """User and system CPU time of this process so far."""
    times = os.times()
    return times.user + times.system


def reactor_thread_demand_seconds() -> float | None:
    """Seconds the main thread (the reactor's) ran or waited for a CPU so far (Linux's
    ``/proc/self/schedstat``; None elsewhere). Waiting counts: on a machine busy with
    other work the crawl is short of CPU all the same."""
    try:
        with open("/proc/self/schedstat", "rb") as schedstat:
            running, waiting = schedstat.read().split()[:2]
    except (OSError, ValueError):
        return None
    return (int(running) + int(waiting)) / 1e9
