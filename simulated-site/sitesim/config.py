"""The site's runtime options: one table serves the command line and ``/__sim__/faults``.

Every option that can be given on the command line (except the catalogue's
size and seed, and where to listen) can also be changed while the site runs,
with the same name in underscores and the same validation, so a test can never
set at runtime a value the CLI would reject, or the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from . import hostile_script

DEFAULT_ERROR_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True, slots=True)
class Settings:
    """Fault and presentation options in force (immutable; replaced on change)."""

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    js_only_rate: float = 0.0
    latency_ms: float = 0.0
    latency_dist: str = "fixed"
    outage: tuple[float, float] | None = None  # (start, seconds) relative to an anchor
    capacity: int = 0
    capacity_status: int = 503
    overload_latency_ms: float = 100.0
    overload_slowdown_ms: float = 2.0
    only: str = "both"
    error_statuses: tuple[int, ...] = DEFAULT_ERROR_STATUSES
    retry_after: int = 2
    hang_ms: float = 60_000.0
    outage_mode: str = "503"
    past_end: str = "404"
    variant_rate: float = 0.04
    request_log_size: int = 200_000
    # JavaScript-only shells also try to reach these URLs (hostile_script.py)
    hostile_script: tuple[str, ...] = ()
    # integrity faults (see drift.py and docs/sitesim.md): markup that changes during a
    # crawl, listing pages that answer as if past the end, a pagination that lies
    drift: str = "none"
    hide_pages: tuple[int, int] | None = None  # first and last listing page hidden
    claim_last_page: int = 0  # 0: the pagination shows the real last page

    def updated(self, changes: dict[str, Any]) -> Settings:
        """A copy with ``changes`` (JSON names and values) applied and validated.

        Raises ValueError naming the offending option; unknown names are errors
        too, so a typo in a test cannot silently leave a fault switched off.
        """
        parsed = {}
        for name, value in changes.items():
            option = OPTIONS.get(name)
            if option is None:
                raise ValueError(f"unknown option {name!r}")
            try:
                parsed[name] = option.parse(value)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return replace(self, **parsed)

    def as_json(self) -> dict[str, Any]:
        """The options as JSON-ready values (the form ``updated`` accepts)."""
        data = asdict(self)
        data["outage"] = None if self.outage is None else _format_outage(self.outage)
        data["error_statuses"] = list(self.error_statuses)
        data["hostile_script"] = list(self.hostile_script)
        data["hide_pages"] = None if self.hide_pages is None else _format_pages(self.hide_pages)
        return data


@dataclass(frozen=True, slots=True)
class Option:
    """One option: how to parse it (from CLI text or a JSON value) and its help."""

    parse: Callable[[Any], Any]
    help: str
    metavar: str | None = None


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _integer(value: Any) -> int:
    number = _number(value)
    if number != int(number):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(number)


def rate(value: Any) -> float:
    """A share in [0, 1]."""
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value!r}")
    return number


def non_negative(value: Any) -> float:
    """A number >= 0 (milliseconds)."""
    number = _number(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


def non_negative_int(value: Any) -> int:
    """An integer >= 0."""
    number = _integer(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


def choice(*allowed: str) -> Callable[[Any], str]:
    """A parser accepting one of ``allowed`` (numbers compared as text: 503 == "503")."""

    def parse(value: Any) -> str:
        text = str(value)
        if isinstance(value, bool) or text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")
        return text

    return parse


def capacity_status(value: Any) -> int:
    """The status of requests over capacity: 503 or 429."""
    return int(choice("503", "429")(value))


def outage(value: Any) -> tuple[float, float] | None:
    """``"START,SECONDS"`` (or a [start, seconds] list); null or "" clears it."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple) or len(parts) != 2:
        raise ValueError(f"expected START,SECONDS, got {value!r}")
    start, seconds = (_number(part) for part in parts)
    if start < 0 or seconds <= 0:
        raise ValueError(f"START must be >= 0 and SECONDS > 0, got {value!r}")
    return (start, seconds)


def error_statuses(value: Any) -> tuple[int, ...]:
    """A comma-separated list (or JSON list) of HTTP error statuses (400..599)."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple) or not parts:
        raise ValueError(f"expected a list like 500,502,503,504, got {value!r}")
    statuses = tuple(_integer(part) for part in parts)
    if any(not 400 <= status <= 599 for status in statuses):
        raise ValueError(f"statuses must be 400..599, got {value!r}")
    return statuses


def page_range(value: Any) -> tuple[int, int] | None:
    """``"A-B"`` or ``"A"`` (listing pages, 1-based); null or "" clears it."""
    if value is None or value == "":
        return None
    text = str(value)
    first, _, last = text.partition("-")
    start = non_negative_int(first.strip())
    end = non_negative_int(last.strip()) if last.strip() else start
    if start < 1 or end < start:
        raise ValueError(f"expected pages A-B with 1 <= A <= B, got {value!r}")
    return (start, end)


def _format_pages(pages: tuple[int, int]) -> str:
    return f"{pages[0]}-{pages[1]}"


def _format_outage(window: tuple[float, float]) -> str:
    return ",".join(f"{value:g}" for value in window)


OPTIONS: dict[str, Option] = {
    "error_rate": Option(rate, "share of page requests answered with an error status", "RATE"),
    "throttle_rate": Option(rate, "share of page requests answered 429 + Retry-After", "RATE"),
    "timeout_rate": Option(rate, "share of page requests that hang --hang-ms first", "RATE"),
    "reset_rate": Option(rate, "share of page requests reset mid-body", "RATE"),
    "truncate_rate": Option(rate, "share of page requests cut before </html>", "RATE"),
    "js_only_rate": Option(rate, "share of pages (per page) served as a JS-only shell", "RATE"),
    "latency_ms": Option(non_negative, "mean latency added to each page request", "MS"),
    "latency_dist": Option(
        choice("fixed", "uniform", "exponential"),
        "latency distribution (uniform: 0..2x the mean)",
        "fixed|uniform|exponential",
    ),
    "outage": Option(
        outage, "total outage from START s after start (or the call) for SECONDS", "START,SECONDS"
    ),
    "capacity": Option(non_negative_int, "at most C page requests served at once (0 = off)", "C"),
    "capacity_status": Option(capacity_status, "status of requests over capacity", "503|429"),
    "overload_latency_ms": Option(non_negative, "delay before answering over capacity", "MS"),
    "overload_slowdown_ms": Option(
        non_negative,
        "latency added to an accepted page request per refusal over capacity in the last second",
        "MS",
    ),
    "only": Option(
        choice("list", "detail", "both", "dcl"),
        "which pages faults apply to (both: every kind, --dcl paths included)",
        "list|detail|both|dcl",
    ),
    "error_statuses": Option(error_statuses, "statuses an error picks from", "500,502,503,504"),
    "retry_after": Option(non_negative_int, "seconds a 429 asks the client to wait", "SECONDS"),
    "hang_ms": Option(non_negative, "how long a timeout fault hangs before answering", "MS"),
    "outage_mode": Option(choice("503", "reset"), "outage answer: 503 or abort", "503|reset"),
    "past_end": Option(
        choice("404", "redirect"), "listing page past the end: 404 or 302 to page 1", "404|redirect"
    ),
    "variant_rate": Option(rate, "share of pages using each markup variant", "RATE"),
    "request_log_size": Option(non_negative_int, "entries kept in the request log", "N"),
    "hostile_script": Option(
        hostile_script.target_list,
        "JavaScript-only shells also try to reach these URLs in every way a page can "
        "(see hostile_script.py)",
        "URL,URL",
    ),
    "drift": Option(
        choice("none", "list", "detail", "labels"),
        "markup drift: list (card classes renamed), detail (field-list classes renamed), "
        "labels (field labels and the company class renamed)",
        "none|list|detail|labels",
    ),
    "hide_pages": Option(
        page_range, "listing pages A..B answer as if past the end (see --past-end)", "A-B"
    ),
    "claim_last_page": Option(
        non_negative_int, "the pagination claims this last page (0: the real one)", "N"
    ),
}
