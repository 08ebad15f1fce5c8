"""Plain-text output of the commands: aligned tables, UTC times, durations, JSON."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime
from typing import Any


def utc_time(value: datetime | None) -> str:
    """``2026-11-05 12:34:56`` (UTC, whole seconds) or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``12.3s``, ``4m05s``, ``2h03m`` or ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def one_line(text: str | None, width: int) -> str:
    """The text on one line, cut to ``width`` characters with an ellipsis."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Collection[int] = ()
) -> str:
    """An aligned text table; columns whose index is in ``right`` are right-aligned."""
    cells = [[str(header) for header in headers]] + [
        ["" if value is None else str(value) for value in row] for row in rows
    ]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]

    def render(row: list[str]) -> str:
        parts = [
            value.rjust(width) if index in right else value.ljust(width)
            for index, (value, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = [render(cells[0]), "  ".join("-" * width for width in widths)]
    lines += [render(row) for row in cells[1:]]
    return "\n".join(lines)


def json_default(value: Any) -> Any:
    """``json.dumps`` ``default=``: ISO 8601 for dates and times."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=json_default)
