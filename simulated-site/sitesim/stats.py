"""The server's own account of what it served (``/__sim__/stats`` and ``/__sim__/requests``).

Tests check a crawler's behaviour from the server's side with it: how many
requests of each kind arrived, what they were answered, which faults were
served, and how many requests were open at once (a crawler's real
concurrency, which its own settings do not prove). ``/__sim__/`` requests are
never counted.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .faults import FAULT_KINDS

KINDS = ("list", "detail", "other")
# requests to the simulated DCL (--dcl): listed in by_kind once one arrived
DCL_KIND = "dcl"
# by_status key for requests that never got a status line (connection aborted
# by an outage in reset mode, or closed by the client before the answer).
ABORTED = "aborted"


@dataclass(slots=True)
class Visit:
    """One page request from arrival to its end, as the account records it."""

    t: float
    path: str
    kind: str
    generation: int
    fault: str | None = None
    retry_after: str | None = None
    admitted: bool = False  # counted against the capacity limit while open
    pending: Any = None  # the IDelayedCall that will answer it, if delayed
    done: bool = False


@dataclass(slots=True)
class Stats:
    """Counters since start or the last reset, plus a ring buffer of requests."""

    started_at: float
    log_size: int
    generation: int = 0
    requests_total: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)
    open_requests: int = 0
    max_concurrency: int = 0
    log: deque[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.log = deque(maxlen=self.log_size)

    def reset(self, now: float) -> None:
        """Zero everything; requests still open count in ``open_requests`` only."""
        self.generation += 1
        self.started_at = now
        self.requests_total = 0
        self.by_kind.clear()
        self.by_status.clear()
        self.faults.clear()
        self.per_second.clear()
        self.max_concurrency = self.open_requests
        self.log.clear()

    def resize_log(self, size: int) -> None:
        """Change the ring buffer's size, keeping the newest entries."""
        self.log_size = size
        self.log = deque(self.log, maxlen=size)

    def arrive(self, t: float, path: str, kind: str) -> Visit:
        """Count a request at its arrival; it is open until :meth:`finish`."""
        self.requests_total += 1
        self.by_kind[kind] += 1
        self.per_second[int(t - self.started_at)] += 1
        self.open_requests += 1
        self.max_concurrency = max(self.max_concurrency, self.open_requests)
        return Visit(t=t, path=path, kind=kind, generation=self.generation)

    def fault(self, visit: Visit, name: str) -> None:
        """Record that ``visit`` is served the fault ``name``."""
        if visit.fault is None:
            visit.fault = name
        if visit.generation == self.generation:
            self.faults[name] += 1

    def finish(self, visit: Visit, status: int | None, now: float) -> None:
        """Close ``visit``: answered with ``status``, or aborted (None)."""
        self.open_requests -= 1
        if visit.generation != self.generation:
            return  # arrived before a reset: not part of this account
        self.by_status[ABORTED if status is None else str(status)] += 1
        self.log.append(
            {
                "t": visit.t,
                "path": visit.path,
                "kind": visit.kind,
                "status": status,
                "fault": visit.fault,
                "retry_after": visit.retry_after,
                "duration_ms": round((now - visit.t) * 1000.0, 3),
            }
        )

    def snapshot(self) -> dict[str, Any]:
        """The account as JSON-ready data."""
        return {
            "requests_total": self.requests_total,
            "by_kind": {kind: self.by_kind[kind] for kind in KINDS}
            | ({DCL_KIND: self.by_kind[DCL_KIND]} if self.by_kind[DCL_KIND] else {}),
            "by_status": dict(sorted(self.by_status.items())),
            "faults": {kind: self.faults[kind] for kind in FAULT_KINDS},
            "max_concurrency": self.max_concurrency,
            "open_requests": self.open_requests,
            "rps": [[second, count] for second, count in sorted(self.per_second.items())],
            "started_at": self.started_at,
        }

    def requests(self, since: float | None = None) -> list[dict[str, Any]]:
        """The request log (oldest first), optionally only arrivals at or after ``since``."""
        if since is None:
            return list(self.log)
        return [entry for entry in self.log if entry["t"] >= since]
