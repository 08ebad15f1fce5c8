"""The issue-19 table of ``run_all.py``: six figures from the sections of the same run.

Each figure is taken from the raw results the crawl, start-up and scale sections
left in the report (``Report.raw``), shown beside the value of the issue-10 run
(docs/benchmarks.md, 2026-12-02) and its target, and judged MET or MISSED. A figure
whose section was skipped or failed is "not measured" and MISSED.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from report import Report, mark
from startup_section import startup_excess

TARGET_SECOND_HALF = 0.90  # "flat rate kept": the scale section's own target


@dataclass(frozen=True)
class Figure:
    name: str
    before: str  # the issue-10 run's value, as the issue states it
    wanted: str
    threshold: float
    at_most: bool
    unit: str  # "x", "MiB" or "s"


FIGURES = (
    Figure("CPU per page vs. bare Scrapy, every component on", "0.89x", "<= 0.6x", 0.6, True, "x"),
    Figure("pages/s vs. bare Scrapy", "1.13x", ">= 1.5x", 1.5, False, "x"),
    Figure("pages/s vs. the plain aiohttp client (limit)", "0.09x", ">= 0.15x", 0.15, False, "x"),
    Figure(
        "peak memory, 6,000-product crawl, vs. bare Scrapy", "1.55x", "<= 1.15x", 1.15, True, "x"
    ),
    Figure(
        "peak memory, 100,000 products with JOBDIR (second half >= 90% of the first)",
        "173 MiB",
        "<= 150 MiB",
        150,
        True,
        "MiB",
    ),
    Figure("fixed start-up CPU above bare Scrapy", "~1.2 s", "<= 0.3 s", 0.3, True, "s"),
)


def _ratio(medians: dict[str, Any], name: str, baseline: str, key: str) -> float | None:
    mine, theirs = medians.get(name), medians.get(baseline)
    if not mine or not theirs or not theirs.get(key):
        return None
    return mine[key] / theirs[key]


def measured(raw: dict[str, Any]) -> list[float | None]:
    """The six figures, in the order of FIGURES (None: not measured in this run)."""
    crawl = raw.get("crawl", {}).get("medians", {})
    scale = raw.get("scale")
    startup = raw.get("startup")
    scale_peak = None
    if scale and not scale.get("problems"):
        first, second = scale["first_half_pages_per_s"], scale["second_half_pages_per_s"]
        # the peak counts only with the rate kept: a crawl that slows down is no answer
        if first and second and second / first >= TARGET_SECOND_HALF:
            scale_peak = scale["peak_mib"]
    return [
        _ratio(crawl, "matter", "bare", "cpu_per_1000"),
        _ratio(crawl, "matter", "bare", "pages_per_s"),
        _ratio(crawl, "matter", "limit", "pages_per_s"),
        _ratio(crawl, "matter", "bare", "peak_mib"),
        scale_peak,
        startup_excess(startup) if startup else None,
    ]


def shown(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:.2f} s"


def issue19_section(report: Report) -> None:
    rows = []
    scale = report.raw.get("scale")
    for target, value in zip(FIGURES, measured(report.raw), strict=True):
        figure = target
        if scale and figure.unit == "MiB" and scale["products"] != 100_000:
            # a smaller --scale-products: say so, the target stays the 100,000 one's
            figure = replace(figure, name=figure.name.replace("100,000", f"{scale['products']:,}"))
        if value is None:
            rows.append([figure.name, figure.before, figure.wanted, "not measured", "MISSED"])
            continue
        met = value <= figure.threshold if figure.at_most else value >= figure.threshold
        value_text = shown(value, figure.unit)
        rows.append([figure.name, figure.before, figure.wanted, value_text, mark(met)])
    report.raw["issue19"] = [
        {"figure": figure.name, "value": value}
        for figure, value in zip(FIGURES, measured(report.raw), strict=True)
    ]
    report.text(
        "## Issue 19: the next targets\n\n"
        'From the sections above (same run, same site). "Issue 10 run" is the value of '
        "2026-12-02 in docs/benchmarks.md."
    )
    report.table(["figure", "issue 10 run", "target", "this run", ""], rows)
