"""The report ``scrapy record-site`` prints when it is done."""

from __future__ import annotations

from typing import Any

from .cassettes import CASSETTES
from .recorder import RecordOptions, RecordReport

#: at most this many entries of each list are printed
SHOWN = 20


def render_summary(options: RecordOptions, report: RecordReport, summary: dict[str, Any]) -> str:
    """What was recorded, what was not and why, and what the parsers made of it.

    ``summary`` is what :func:`~.expectations.write_expectations` returned.
    """
    directory = options.directory
    lines = [
        f"Recorded {options.base_url} into {directory}/ "
        f"({', '.join(f'{name}.json' for name in CASSETTES)}):",
        f"  listing pages: {report.fetched['listing']} fetched, {report.replayed['listing']} "
        f"already recorded (the site shows {report.site_pages} pages)",
        f"  product pages: {report.fetched['detail']} fetched, {report.replayed['detail']} "
        "already recorded",
        f"  expectations: {summary['path']} ({summary['listing']} listing pages, "
        f"{summary['products']} products): review it, then commit the directory",
    ]
    if summary["unknown_labels"]:
        named = ", ".join(
            f"{label!r} ({count} pages)" for label, count in summary["unknown_labels"].most_common()
        )
        lines.append(f"  labels the parser does not know (kept in extra_fields): {named}")
    for title, items in (
        ("could not be recorded", report.failed),
        ("disallowed by robots.txt", report.disallowed),
        ("product links to other sites (not recorded)", report.offsite),
        ("pages the parser cannot read fully", summary["problems"]),
        ("warnings", report.warnings),
    ):
        if items:
            lines.append(f"  {title}: {len(items)}")
            lines += [f"    {item}" for item in items[:SHOWN]]
    if summary["disagreements"]:
        lines.append(
            f"  the parser now reads {len(summary['disagreements'])} recorded pages differently "
            "from the reviewed expectations (kept; --rewrite-expectations replaces them):"
        )
        lines += [f"    {url}" for url in summary["disagreements"][:SHOWN]]
    return "\n".join(lines)
