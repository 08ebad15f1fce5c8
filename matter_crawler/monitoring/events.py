"""The event hub: task events and snapshots to an events file and to live subscribers.

Events, each one JSON object with a ``type``:

- ``task``: a request reached the downloader (``outcome`` ``started``, with its
  task ``id``), or its task ended (the same ``id`` and ``duration_ms``): it was
  handled (``done``), retried (``retry``), failed for good (``failed``), its
  item was rejected (``invalid``), it was redirected (``redirected``), its
  redirect dropped as a duplicate (``dropped``) or the crawl closed first
  (``cancelled``) (:mod:`matter_crawler.monitoring.tasks`); with ``t`` (epoch
  seconds), ``stage``, ``url`` and what is known (``status``, ``name`` and
  ``manufacturer`` of a product, ``failure_class``, ``reason``...). A ``failed``
  or ``invalid`` event without an ``id`` is about something that never reached
  the downloader (an off-site link, an item refused by the database).
- ``stage``: a stage started or completed (``stage``, ``state``); ``run`` /
  ``finished`` when the crawl ends.
- ``batch``: a batch was committed to the database (``size``, ``seconds``).
- ``snapshot``: the progress aggregator's snapshot, once a second.
- ``run``: the live control changed the run (``state``: ``paused``, ``resumed``,
  ``stopping``, ``profile``; with ``t`` and ``profile``).
- ``closed``: the crawl closed (``reason``), last of all.

Per request the hub keeps a small tuple in a ring of recent finished tasks (so
a page opened mid-crawl shows what just finished, and, from the task tracker,
what is in flight) and does nothing else unless someone listens: JSON is
encoded once per event, and only while an events file is open or a subscriber
(a browser on ``/events``) is connected.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from time import time
from typing import IO, Any

logger = logging.getLogger(__name__)

#: A live subscriber receives (event type, JSON text).
Subscriber = Callable[[str, str], None]

_Task = tuple[float, str, str | None, str | None, dict[str, Any]]
#: The tasks in flight, as (stage, url, fields with ``id`` and ``t``) for a new subscriber.
InFlight = Callable[[], Iterable[tuple[str | None, str, dict[str, Any]]]]


def encode(kind: str, payload: dict[str, Any]) -> str:
    """One event as compact JSON (ASCII only: safe in SSE and in any line reader)."""
    return json.dumps({"type": kind, **payload}, separators=(",", ":"), default=str)


def _task_payload(task: _Task) -> dict[str, Any]:
    moment, outcome, stage, url, fields = task
    return {"t": round(moment, 3), "outcome": outcome, "stage": stage, "url": url, **fields}


class EventHub:
    def __init__(self, recent: int = 100) -> None:
        self.recent: deque[_Task] = deque(maxlen=max(0, recent))
        self.subscribers: list[Subscriber] = []
        self.latest_snapshot: dict[str, Any] | None = None
        self.closed: dict[str, Any] | None = None
        self.stages: list[dict[str, Any]] = []  # every stage event, replayed to a new subscriber
        self.in_flight: InFlight | None = None
        self._file: IO[str] | None = None
        self.path: Path | None = None

    @property
    def listening(self) -> bool:
        return self._file is not None or bool(self.subscribers)

    # -- producers -----------------------------------------------------------------------

    def task(self, outcome: str, stage: str | None, url: str | None, **fields: Any) -> None:
        """Record a task event; O(1), encoded only if someone listens."""
        task = (time(), outcome, stage, url, fields)
        if outcome != "started":  # the tracker knows what is in flight
            self.recent.append(task)
        if self._file is not None or self.subscribers:
            self._send("task", encode("task", _task_payload(task)))

    def event(self, kind: str, **payload: Any) -> None:
        """A ``stage`` or ``batch`` event (a few per crawl, or one per batch)."""
        payload = {"t": round(time(), 3), **payload}
        if kind == "stage":
            self.stages.append(payload)
        if self._file is not None or self.subscribers:
            self._send(kind, encode(kind, payload))

    def snapshot(self, snapshot: dict[str, Any]) -> None:
        self.latest_snapshot = snapshot
        if self._file is not None or self.subscribers:
            self._send("snapshot", encode("snapshot", snapshot))
        if self._file is not None:
            self._file.flush()  # once a second: a tail -f sees the crawl live

    def run(self, state: str, **fields: Any) -> None:
        """Record a change of the run made by the live control (rare: always encoded)."""
        self._send("run", encode("run", {"state": state, **fields}))

    def close(self, reason: str) -> None:
        """Send ``closed`` and close the events file (idempotent)."""
        if self.closed is not None:
            return
        self.closed = {"reason": reason, "t": round(time(), 3)}
        if self.listening:
            self._send("closed", encode("closed", self.closed))
        if self._file is not None:
            try:
                self._file.close()
            except OSError as error:
                logger.error("Closing the events file %s failed: %s", self.path, error)
            self._file = None

    # -- consumers -----------------------------------------------------------------------

    def open_file(self, path: Path) -> None:
        """Append events to ``path`` as JSON lines (its directory is created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self.path = path
        logger.info("Writing progress events to %s", path)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a live subscriber: it first gets the latest snapshot, the stages so far, the
        recent finished tasks and the tasks in flight."""
        if self.latest_snapshot is not None:
            subscriber("snapshot", encode("snapshot", self.latest_snapshot))
        for stage in list(self.stages):
            subscriber("stage", encode("stage", stage))
        for task in list(self.recent):
            subscriber("task", encode("task", _task_payload(task)))
        if self.in_flight is not None and self.closed is None:
            for stage, url, fields in list(self.in_flight()):
                payload = {"outcome": "started", "stage": stage, "url": url, **fields}
                subscriber("task", encode("task", payload))
        if self.closed is not None:
            subscriber("closed", encode("closed", self.closed))
        self.subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    def _send(self, kind: str, data: str) -> None:
        if self._file is not None:
            try:
                self._file.write(data + "\n")
            except OSError as error:
                logger.error("Writing to the events file %s failed: %s", self.path, error)
                self._file = None
        for subscriber in list(self.subscribers):
            try:
                subscriber(kind, data)
            except Exception:
                logger.exception("An event subscriber failed; dropping it")
                self.unsubscribe(subscriber)
