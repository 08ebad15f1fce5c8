"""The report as one self-contained HTML file: inline styles and SVG, no script, no network.

Everything the page shows is in the file: the style sheet in one ``<style>``
element, the charts as inline SVG (:mod:`.svg`), the numbers behind each chart in a
table under it. It loads nothing and runs no script; its own Content-Security-Policy
(a ``<meta>`` element) says so to the browser: nothing may be fetched, and only the
one style sheet, named by its SHA-256, applies. So even a catalogue value that got
past the escaping could neither run nor load anything.

Every value from the database is escaped (:func:`~.svg.esc`); a product's link is
written only when it is an http(s) URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .report_data import ReportData, class_counts, field_counts
from .svg import esc, horizontal_bars, legend, line_chart, number, stacked_bars

STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, sans-serif; color: #1a1a1a; margin: 0 auto; max-width: 1080px;
  padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
.muted { color: #555; }
dl.totals { display: flex; flex-wrap: wrap; gap: 8px 32px; margin: 16px 0; }
dl.totals div { min-width: 120px; }
dl.totals dt { color: #555; font-size: 12px; }
dl.totals dd { margin: 0; font-size: 22px; font-weight: 600; }
figure { margin: 8px 0 16px; }
figure svg.chart { width: 100%; height: auto; }
figcaption { color: #333; margin-bottom: 4px; }
ul.legend { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap;
  gap: 4px 16px; }
ul.legend li { display: flex; align-items: center; gap: 4px; }
details { margin: 4px 0 8px; }
summary { cursor: pointer; color: #0b57a4; }
table { border-collapse: collapse; margin: 6px 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 3px 8px; text-align: left;
  vertical-align: top; }
th { background: #f4f4f4; }
td.num, th.num { text-align: right; }
tfoot td { font-weight: 600; border-top: 2px solid #999; }
.two { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 16px; }
a { color: #0b57a4; }
#table-newest td:nth-child(1), #table-newest td:nth-child(5) { white-space: nowrap; }
"""


NUMERIC_CLASS = ' class="num"'


def style_hash(style: str) -> str:
    """The CSP source of an inline style element's exact text."""
    digest = hashlib.sha256(style.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(style: str) -> str:
    return (
        f"default-src 'none'; style-src {style_hash(style)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def _cell(value: Any, numeric: bool = False) -> str:
    if numeric and isinstance(value, int | float):
        return f'<td class="num">{esc(number(value))}</td>'
    return f"<td>{esc('' if value is None else value)}</td>"


def table(
    ident: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[int] = (),
    footer: Sequence[Any] | None = None,
    caption: str | None = None,
) -> str:
    """An HTML table; cells of the ``numeric`` columns right-aligned with thousands separators."""
    head = "".join(
        f'<th scope="col"{NUMERIC_CLASS if index in numeric else ""}>{esc(name)}</th>'
        for index, name in enumerate(headers)
    )
    body = "".join(
        "<tr>" + "".join(_cell(v, index in numeric) for index, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    foot = ""
    if footer is not None:
        foot = (
            "<tfoot><tr>"
            + "".join(_cell(value, index in numeric) for index, value in enumerate(footer))
            + "</tr></tfoot>"
        )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        f'<table id="{esc(ident)}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody>{foot}</table>"
    )


def numbers(
    ident: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], **options: Any
) -> str:
    """A chart's numbers, folded under it."""
    inner = table(ident, headers, rows, **options)
    return f"<details><summary>The numbers</summary>{inner}</details>"


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _link(url: str | None, text: str) -> str:
    if url and url.lower().startswith(("https://", "http://")):
        return f'<a href="{esc(url)}">{esc(text)}</a>'
    return esc(text)


def _percent_series(
    series: dict[str, list[int]], totals: Sequence[int]
) -> list[tuple[str, list[float]]]:
    return [
        (
            name,
            [
                round(100.0 * value / total, 2) if total else 0.0
                for value, total in zip(counts, totals, strict=True)
            ],
        )
        for name, counts in series.items()
    ]


def _window(data: ReportData) -> str:
    if data.since and data.until:
        return f"certified from {data.since} to {data.until}"
    if data.since:
        return f"certified since {data.since}"
    if data.until:
        return f"certified up to {data.until}"
    return "all certification dates"


def section_totals(data: ReportData) -> str:
    items = [
        ("listed", "listed products"),
        ("vendors", "manufacturers"),
        ("delisted", "delisted (all time)"),
        ("pending_dead_letters", "dead letters pending"),
    ]
    parts = "".join(
        f'<div><dt>{esc(label)}</dt><dd data-key="{esc(key)}">'
        f"{esc(number(data.totals[key]))}</dd></div>"
        for key, label in items
    )
    return f'<dl class="totals" id="totals">{parts}</dl>'


def section_per_month(data: ReportData) -> str:
    groups = list(data.per_month)
    chart = stacked_bars(
        data.months,
        [(group, data.per_month[group]) for group in groups],
        title="Certifications per month by device-type group",
        desc=f"Listed products by month of certification, stacked by device-type group; "
        f"{len(data.months)} months, {sum(map(sum, data.per_month.values()))} products.",
        ident="chart-per-month",
    )
    rows = [
        [
            name,
            *(data.per_month[group][index] for group in groups),
            sum(data.per_month[group][index] for group in groups),
        ]
        for index, name in enumerate(data.months)
    ]
    footer = [
        "total",
        *(sum(data.per_month[group]) for group in groups),
        sum(sum(counts) for counts in data.per_month.values()),
    ]
    numeric = range(1, len(groups) + 2)
    return (
        '<section id="per-month"><h2>Certifications per month</h2><figure>'
        f"{chart}{legend(groups)}"
        "<figcaption>Listed products by the month of their certification, "
        "by device-type group.</figcaption></figure>"
        + numbers(
            "table-per-month", ["month", *groups, "total"], rows, numeric=numeric, footer=footer
        )
        + "</section>"
    )


def section_vendors(data: ReportData) -> str:
    def block(ident: str, title: str, vendors: list[tuple[str, int]]) -> str:
        chart = horizontal_bars(
            [name for name, _ in vendors],
            [n for _, n in vendors],
            title=title,
            desc=f"{len(vendors)} manufacturers with the most listed products, most first.",
            ident=f"chart-{ident}",
        )
        return f"<figure><figcaption>{esc(title)}</figcaption>{chart}</figure>" + numbers(
            f"table-{ident}", ["manufacturer", "products"], vendors, numeric=[1]
        )

    recent = f"Top manufacturers, certified since {data.recent_from}"
    every = "Top manufacturers, " + _window(data)
    return (
        '<section id="vendors"><h2>Top manufacturers</h2><div class="two">'
        f"<div>{block('vendors-all', every, data.vendors_all)}</div>"
        f"<div>{block('vendors-recent', recent, data.vendors_recent)}</div>"
        "</div></section>"
    )


def section_transports(data: ReportData) -> str:
    names = list(data.transports)
    shares = _percent_series(data.transports, data.quarter_totals)
    chart = line_chart(
        data.quarters,
        shares,
        title="Transport mix per quarter",
        desc="Share of the products certified each quarter that support each transport; "
        "a product with several transports counts for each.",
        ident="chart-transports",
    )
    rows = [
        [name, data.quarter_totals[index], *(data.transports[t][index] for t in names)]
        for index, name in enumerate(data.quarters)
    ]
    return (
        '<section id="transports"><h2>Transport mix over time</h2><figure>'
        f"{chart}{legend(names, markers=True)}"
        "<figcaption>Share of each quarter's certifications supporting each transport "
        "(products may support several).</figcaption></figure>"
        + numbers(
            "table-transports",
            ["quarter", "products", *names],
            rows,
            numeric=range(1, len(names) + 2),
        )
        + "</section>"
    )


def section_specs(data: ReportData) -> str:
    versions = list(data.specs)
    shares = _percent_series(data.specs, data.quarter_totals)
    chart = stacked_bars(
        data.quarters,
        shares,
        title="Specification-version adoption per quarter",
        desc="Share of each quarter's certifications by Matter specification version.",
        ident="chart-specs",
        percent=True,
    )
    rows = [
        [name, data.quarter_totals[index], *(data.specs[v][index] for v in versions)]
        for index, name in enumerate(data.quarters)
    ]
    return (
        '<section id="specs"><h2>Specification-version adoption</h2><figure>'
        f"{chart}{legend(['Matter ' + v if v != 'unknown' else v for v in versions])}"
        "<figcaption>Share of each quarter's certifications by the Matter "
        "specification version they were certified against.</figcaption></figure>"
        + numbers(
            "table-specs",
            ["quarter", "products", *versions],
            rows,
            numeric=range(1, len(versions) + 2),
        )
        + "</section>"
    )


def section_newest(data: ReportData) -> str:
    headers = [
        "certified",
        "manufacturer",
        "model",
        "device type",
        "certificate",
        "VID/PID",
        "transport",
        "spec",
    ]
    rows = []
    for product in data.newest:
        transport = ", ".join(str(t) for t in (product["transport_interface"] or []))
        rows.append(
            "<tr>"
            f"<td>{esc(product['certification_date'])}</td>"
            f"<td>{esc(product['manufacturer'] or '')}</td>"
            f"<td>{_link(product['url'], product['model'] or product['url'])}</td>"
            f"<td>{esc(product['device_type'] or '')}</td>"
            f"<td>{esc(product['certificate_id'] or '')}</td>"
            f"<td>{esc(product['vid'] or '?')}/{esc(product['pid'] or '?')}</td>"
            f"<td>{esc(transport)}</td>"
            f"<td>{esc(product['specification_version'] or '')}</td>"
            "</tr>"
        )
    head = "".join(f'<th scope="col">{esc(name)}</th>' for name in headers)
    return (
        f'<section id="newest"><h2>Newest certifications</h2>'
        f'<p class="muted">The {len(rows)} most recently certified listed products.</p>'
        f'<table id="table-newest"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def section_runs(data: ReportData) -> str:
    headers = [
        "run",
        "spider",
        "started (UTC)",
        "status",
        "mode",
        "duration",
        "pages",
        "requests",
        "new",
        "changed",
        "delisted",
        "dead letters",
        "errors",
    ]
    rows = [
        [
            run["id"],
            run["spider"],
            _utc(run["started_at"]),
            run["status"],
            run["mode"] or "",
            _duration(run["duration_seconds"]),
            run["pages_crawled"] or 0,
            run["requests"] or 0,
            run["products_new"] or 0,
            run["products_changed"] or 0,
            run["products_delisted"] or 0,
            run["dead_letters"] or 0,
            run["errors"] or 0,
        ]
        for run in data.runs
    ]
    totals = data.run_totals
    footer = [
        f"{totals['runs']} runs",
        "",
        "",
        "",
        "",
        _duration(totals["duration_seconds"]),
        "",
        "",
        totals["new"],
        totals["changed"],
        totals["delisted"],
        "",
        "",
    ]
    note = (
        f"The newest {len(rows)} of {totals['runs']} runs."
        if totals["runs"] > len(rows)
        else f"{len(rows)} runs."
    )
    return (
        f'<section id="runs"><h2>Crawl history</h2><p class="muted">{esc(note)} '
        "The totals cover every run in the period.</p>"
        + table("table-runs", headers, rows, numeric=[0, 6, 7, 8, 9, 10, 11, 12], footer=footer)
        + "</section>"
    )


def section_checks(data: ReportData) -> str:
    if not data.checks:
        return ""
    latest = data.checks[0]
    classes = class_counts(latest)
    fields = field_counts(latest)
    summary = table(
        "table-check-classes",
        ["finding class", "findings"],
        sorted(classes.items()),
        numeric=[1],
        caption=f"Check {latest['id']} ({_utc(latest['checked_at'])} UTC): "
        f"{latest['products']} products, {latest['consistent']} consistent, "
        f"{latest['findings']} findings",
    )
    field_table = table(
        "table-check-fields", ["field", "mismatches"], sorted(fields.items()), numeric=[1]
    )
    history = table(
        "table-checks",
        ["check", "checked (UTC)", "products", "consistent", "findings"],
        [
            [c["id"], _utc(c["checked_at"]), c["products"], c["consistent"], c["findings"]]
            for c in data.checks
        ],
        numeric=[0, 2, 3, 4],
    )
    return (
        '<section id="crosscheck"><h2>Cross-check with the DCL</h2>'
        '<p class="muted">The catalogue against the Distributed Compliance Ledger '
        "(<code>scrapy crosscheck</code>): the latest check, and the recent ones.</p>"
        f'<div class="two"><div>{summary}</div><div>{field_table}</div></div>{history}</section>'
    )


def render_report(data: ReportData, *, title: str = "Matter certified products") -> str:
    """The whole HTML document."""
    sections = [
        section_totals(data),
        section_per_month(data),
        section_vendors(data),
        section_transports(data),
        section_specs(data),
        section_newest(data),
        section_runs(data),
        section_checks(data),
    ]
    generated = _utc(data.generated_at)
    meta = json.dumps(
        {
            "since": str(data.since) if data.since else None,
            "until": str(data.until) if data.until else None,
            "generated_at": generated,
        }
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" '
        f'content="{esc(content_security_policy(STYLE))}">'
        f'<meta name="generator" content="matter-crawler" data-report="{esc(meta)}">'
        f"<title>{esc(title)}: report</title>"
        '<link rel="icon" href="data:,">'
        f"<style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>"
        f'<p class="muted">Report of the crawled catalogue, {esc(_window(data))}; '
        f"generated {esc(generated)} UTC by matter-crawler.</p></header>"
        f"<main>{''.join(sections)}</main></body></html>\n"
    )
