"""Plain-text output of the commands: aligned tables, UTC times, durations, JSON.

Values in a table or cut to one line are terminal-safe
(:func:`matter_crawler.safe_text.terminal_safe`): text from the crawled site never
reaches the terminal as a control sequence. JSON output escapes the same characters
as JSON escapes (the same JSON value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime
from typing import Any

from ..monitoring.terminal import format_duration
from ..safe_text import terminal_safe

# What json.dumps(ensure_ascii=False) leaves raw that a terminal would obey: DEL, the C1
# controls, line/paragraph separators and bidi controls (it escapes C0 itself).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028-\u202e\u2066-\u2069]")


def utc_time(value: datetime | None) -> str:
    """``2026-11-05 12:34:56`` (UTC, whole seconds) or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``12.3s``, ``4m05s``, ``2h03m`` or ``-``: the crawler's one duration format
    (:func:`~matter_crawler.monitoring.terminal.format_duration`), tenths below a minute."""
    return format_duration(seconds, unknown="-", decimals=1)


def one_line(text: str | None, width: int) -> str:
    """The text on one line, terminal-safe, cut to ``width`` characters with an ellipsis."""
    if not text:
        return ""
    flat = terminal_safe(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Collection[int] = ()
) -> str:
    """An aligned text table of terminal-safe cells; columns whose index is in ``right``
    are right-aligned."""
    cells = [[str(header) for header in headers]] + [
        ["" if value is None else terminal_safe(value) for value in row] for row in rows
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
    """Indented JSON, non-ASCII text as it is, control and bidi characters escaped."""
    text = json.dumps(value, ensure_ascii=False, indent=2, default=json_default)
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
