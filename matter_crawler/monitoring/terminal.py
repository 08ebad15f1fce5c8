"""Progress in the terminal: a log line every few seconds, and a bar when stderr is a terminal.

The log line reads like
``list 120/498 pages, details 1,300/~5,970, 35 items/s, ETA 2m10s +-15s``
(``~``: the total is extrapolated while listing pages are still being read).

The bar is redrawn in place on stderr (``\\r`` and erase-line), only when stderr
is a terminal, so it never reaches a log file or a pipe. Log records printed to
the same terminal would land on the bar's line, so a logging filter on those
handlers erases the bar first; the next snapshot redraws it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from typing import IO, Any

ERASE_LINE = "\r\x1b[K"


def format_duration(seconds: float | None, *, unknown: str = "?", decimals: int = 0) -> str:
    """``45s``, ``2m10s``, ``1h02m``; ``unknown`` when not known (None, NaN, infinite).

    The crawler's one duration format: the ETA here, a run's duration in ``scrapy runs``
    (:func:`matter_crawler.commands._text.duration`, with ``decimals=1``: ``0.4s``).
    ``decimals`` applies below a minute only.
    """
    if seconds is None or not math.isfinite(seconds):
        return unknown
    if round(seconds, decimals) < 60:
        return f"{seconds:.{decimals}f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _count(value: float | None) -> str:
    return "?" if value is None else f"{round(value):,}"


def _rate(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def progress_line(snapshot: dict[str, Any]) -> str:
    """One line of progress for the log (see the module docstring)."""
    parts = []
    for name, stage in snapshot["stages"].items():
        total = _count(stage["total"])
        if stage.get("estimated"):
            total = f"~{total}"
        done = _count(stage["done"])
        failed = f" ({stage['failed']:,} failed)" if stage["failed"] else ""
        if name == "list":
            parts.append(f"list {done}/{total} pages{failed}")
        elif name == "detail":
            parts.append(f"details {done}/{total}{failed}")
        else:
            parts.append(f"{name} {done}/{total}{failed}")
    parts.append(f"{_rate(snapshot['rates']['items'])} items/s")
    requests = snapshot["requests"]
    if requests["retries"]:
        parts.append(f"{requests['retries']:,} retries")
    eta = snapshot["eta"]
    if snapshot.get("finished"):
        parts.append(
            f"finished ({snapshot.get('reason')}) in {format_duration(snapshot['elapsed'])}"
        )
    else:
        band = f" +-{format_duration(eta['band'])}" if eta["band"] is not None else ""
        parts.append(f"ETA {format_duration(eta['seconds'])}{band}")
    return ", ".join(parts)


class ProgressBar:
    """A one-line bar redrawn in place on a terminal stream."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        self.full, self.empty = ("\u2588", "\u2591") if "utf" in encoding else ("#", "-")
        self.shown = False
        self._filter = _EraseBarFilter(self)
        self._handlers: list[logging.Handler] = []

    @staticmethod
    def wanted(setting: Any, stream: IO[str] | None = None) -> bool:
        """``PROGRESS_BAR``: true, false, or auto (when the stream is a terminal)."""
        value = str(setting).strip().lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off", "none", ""}:
            return False
        stream = stream if stream is not None else sys.stderr
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def render(self, snapshot: dict[str, Any], columns: int) -> str:
        share = snapshot.get("progress")
        width = max(10, min(30, columns // 4))
        filled = round(width * share) if share is not None else 0
        percent = f"{share:4.0%}" if share is not None else "  ?%"
        text = f"[{self.full * filled}{self.empty * (width - filled)}] {percent} "
        text += progress_line(snapshot)
        return text[: max(1, columns - 1)]  # a wrapped line could not be redrawn in place

    def draw(self, snapshot: dict[str, Any]) -> None:
        if not self._handlers:
            self._attach()
        columns = shutil.get_terminal_size((100, 24)).columns
        self._write(ERASE_LINE + self.render(snapshot, columns))
        self.shown = True

    def erase(self) -> None:
        if self.shown:
            self._write(ERASE_LINE)
            self.shown = False

    def close(self) -> None:
        self.erase()
        for handler in self._handlers:
            handler.removeFilter(self._filter)
        self._handlers.clear()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _attach(self) -> None:
        """Erase the bar before any log record printed to the same terminal."""
        try:
            ours = os.fstat(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            return
        for handler in logging.getLogger().handlers:
            stream = getattr(handler, "stream", None)
            try:
                theirs = os.fstat(stream.fileno()) if stream is not None else None
            except (AttributeError, OSError, ValueError):
                continue
            if theirs is not None and (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                handler.addFilter(self._filter)
                self._handlers.append(handler)


class _EraseBarFilter(logging.Filter):
    def __init__(self, bar: ProgressBar) -> None:
        super().__init__()
        self.bar = bar

    def filter(self, record: logging.LogRecord) -> bool:
        self.bar.erase()
        return True
