"""Static SVG charts for the report: stacked bars, horizontal bars, lines.

Why a small module of our own rather than a chart library: the report must open
offline, under a strict Content-Security-Policy, and be readable without a script.
JavaScript chart libraries draw in the browser (a script to inline, nothing to see
without it); pygal draws SVG in Python but its tooltips need its JavaScript (loaded
from a CDN by default), it puts values in ``<desc>`` elements screen readers skip,
and its ``<style>`` blocks would need their own CSP allowance. These three chart
kinds are about 250 lines here, with exactly what the report needs:

- every chart is an ``<svg role="img">`` named by its ``<title>`` and described by
  its ``<desc>`` (``aria-labelledby``), and the report puts the same numbers in a
  table beside it;
- every bar, segment and point carries a ``<title>`` (the browser's own tooltip, no
  script) and ``data-series``/``data-category``/``data-value`` attributes;
- colours are the Okabe-Ito palette (distinguishable with the common colour-vision
  deficiencies), bars separated by a white edge, series named in a legend, lines
  also told apart by their markers;
- labels are real text (selectable, zoomable), thinned so they never overlap;
- every text is escaped here (:func:`esc`): catalogue text is hostile input.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .text import xml_text

#: Okabe & Ito (2008): eight colours told apart with the common colour-vision deficiencies.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#000000",  # black
    "#F0E442",  # yellow (last: weak on white)
)
OTHER_COLOUR = "#999999"
MARKERS = ("circle", "square", "diamond", "triangle")
WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 40
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def esc(value: object) -> str:
    """Text for an XML/HTML text node or a quoted attribute value."""
    return html.escape(xml_text(value), quote=True)


def colour(index: int, name: str = "") -> str:
    """The series' colour: grey for "Other", else the palette in order."""
    if name.lower() in ("other", "none", "unknown"):
        return OTHER_COLOUR
    return PALETTE[index % len(PALETTE)]


def number(value: float, percent: bool = False) -> str:
    if percent:
        return f"{value:.1f}%"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis values from 0 to at least ``top`` (about ``count`` of them)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _open(title: str, desc: str, ident: str, height: int = HEIGHT, width: int = WIDTH) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{esc(ident)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-labelledby="{esc(ident)}-title {esc(ident)}-desc" {FONT}>',
        f'<title id="{esc(ident)}-title">{esc(title)}</title>',
        f'<desc id="{esc(ident)}-desc">{esc(desc)}</desc>',
    ]


def _y_axis(ticks: Sequence[float], scale: float, bottom: float, percent: bool) -> list[str]:
    parts = []
    for tick in ticks:
        y = bottom - tick * scale
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#333">'
            f"{esc(f'{tick:g}%' if percent else number(tick))}</text>"
        )
    return parts


def _x_labels(categories: Sequence[str], centres: Sequence[float], bottom: float) -> list[str]:
    """Category labels under the axis, every n-th so that they never overlap."""
    widest = max((len(label) for label in categories), default=1) * 7 + 8
    room = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    every = max(1, math.ceil(widest / room))
    return [
        f'<text x="{x:.1f}" y="{bottom + 16:.1f}" text-anchor="middle" fill="#333">'
        f"{esc(label)}</text>"
        for index, (label, x) in enumerate(zip(categories, centres, strict=True))
        if index % every == 0
    ]


def stacked_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    desc: str,
    ident: str,
    percent: bool = False,
) -> str:
    """Vertical bars, one per category, stacked by series (``percent``: values are shares)."""
    bottom = HEIGHT - BOTTOM
    totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    ticks = nice_ticks(100.0 if percent else max(totals, default=0))
    scale = (bottom - TOP) / ticks[-1]
    slot = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    bar = max(slot * 0.8, 1.0)
    parts = _open(title, desc, ident) + _y_axis(ticks, scale, bottom, percent)
    centres = []
    for index, category in enumerate(categories):
        x = LEFT + index * slot + (slot - bar) / 2
        centres.append(x + bar / 2)
        y = bottom
        for number_, (name, values) in enumerate(series):
            value = values[index]
            if value <= 0:
                continue
            height = value * scale
            y -= height
            parts.append(
                f'<rect class="bar" x="{x:.2f}" y="{y:.2f}" width="{bar:.2f}" '
                f'height="{height:.2f}" fill="{colour(number_, name)}" stroke="#fff" '
                f'stroke-width="0.5" data-series="{esc(name)}" data-category="{esc(category)}" '
                f'data-value="{value:g}"><title>{esc(category)}, {esc(name)}: '
                f"{esc(number(value, percent))}</title></rect>"
            )
    parts += _x_labels(categories, centres, bottom)
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#333"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    desc: str,
    ident: str,
    width: int = 520,
) -> str:
    """One bar per label, longest first as given, the value written at its end."""
    row = 22
    label_width = 210
    height = TOP + row * max(len(labels), 1) + 8
    top = max(values, default=0) or 1
    span = width - label_width - RIGHT - 48
    parts = _open(title, desc, ident, height, width)
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP + index * row
        length = max(value / top * span, 1.0)
        shown = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" fill="#333">'
            f"{esc(shown)}</text>"
            f'<rect class="bar" x="{label_width}" y="{y + 3}" width="{length:.2f}" '
            f'height="{row - 6}" '
            f'fill="{PALETTE[0]}" data-series="products" data-category="{esc(label)}" '
            f'data-value="{value:g}"><title>{esc(label)}: {esc(number(value))}</title></rect>'
            f'<text x="{label_width + length + 6:.2f}" y="{y + 15}" fill="#333">'
            f"{esc(number(value))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _marker(kind: str, x: float, y: float, fill: str) -> tuple[str, str]:
    """The opening tag of a point's marker and its closing tag."""
    if kind == "square":
        tag = f'<rect x="{x - 3.5:.2f}" y="{y - 3.5:.2f}" width="7" height="7" fill="{fill}"'
        return tag, "rect"
    if kind == "diamond":
        points = f"{x:.2f},{y - 5:.2f} {x + 5:.2f},{y:.2f} {x:.2f},{y + 5:.2f} {x - 5:.2f},{y:.2f}"
        return f'<polygon points="{points}" fill="{fill}"', "polygon"
    if kind == "triangle":
        points = f"{x:.2f},{y - 5:.2f} {x + 5:.2f},{y + 4:.2f} {x - 5:.2f},{y + 4:.2f}"
        return f'<polygon points="{points}" fill="{fill}"', "polygon"
    return f'<circle cx="{x:.2f}" cy="{y:.2f}" r="4" fill="{fill}"', "circle"


def line_chart(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    desc: str,
    ident: str,
    percent: bool = True,
) -> str:
    """One line per series over the categories, a marker (shape per series) at each point."""
    bottom = HEIGHT - BOTTOM
    top = max((value for _, values in series for value in values), default=0)
    ticks = nice_ticks(min(100.0, top) if percent else top)
    scale = (bottom - TOP) / ticks[-1]
    slot = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    centres = [LEFT + slot * (index + 0.5) for index in range(len(categories))]
    parts = _open(title, desc, ident) + _y_axis(ticks, scale, bottom, percent)
    for number_, (name, values) in enumerate(series):
        fill = colour(number_, name)
        points = [(x, bottom - value * scale) for x, value in zip(centres, values, strict=True)]
        path = " ".join(f"{x:.2f},{y:.2f}" for x, y in points)
        parts.append(
            f'<polyline class="line" points="{path}" fill="none" stroke="{fill}" '
            f'stroke-width="2" data-series="{esc(name)}"/>'
        )
        marker = MARKERS[number_ % len(MARKERS)]
        for category, value, (x, y) in zip(categories, values, points, strict=True):
            tag, element = _marker(marker, x, y, fill)
            parts.append(
                f'{tag} class="point" data-series="{esc(name)}" data-category="{esc(category)}" '
                f'data-value="{value:g}"><title>{esc(category)}, {esc(name)}: '
                f"{esc(number(value, percent))}</title></{element}>"
            )
    parts += _x_labels(categories, centres, bottom)
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#333"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def legend(names: Sequence[str], *, markers: bool = False) -> str:
    """An HTML legend: a swatch (and the line chart's marker shape) and each series' name."""
    items = []
    for index, name in enumerate(names):
        fill = colour(index, name)
        if markers:
            tag, element = _marker(MARKERS[index % len(MARKERS)], 8, 7, fill)
            shape = f"{tag}></{element}>"
        else:
            shape = f'<rect x="1" y="1" width="12" height="12" fill="{fill}"></rect>'
        items.append(
            f'<li><svg width="16" height="14" aria-hidden="true">{shape}</svg>{esc(name)}</li>'
        )
    return f'<ul class="legend">{"".join(items)}</ul>'
