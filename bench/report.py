"""The report of ``run_all.py``: markdown printed as it is made, and the verdicts.

Each section adds its table and its targets, judged MET or MISSED
(:func:`target_row`); :meth:`Report.write` keeps the text in
``bench/results/benchmarks.md`` and every section's raw figures in
``benchmarks.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import Measurement, markdown_table


def status_problem(measurement: Measurement) -> list[str]:
    """A failed child process as a problem line (its exit status and last output), or none."""
    if measurement.returncode == 0:
        return []
    tail = " | ".join(measurement.output.strip().splitlines()[-3:])
    return [f"exit status {measurement.returncode}: {tail[-300:]}"]


def mark(met: bool) -> str:
    """The verdict on one target."""
    return "MET" if met else "MISSED"


def ratio(value: float | None, baseline: float | None) -> str:
    """``value`` against ``baseline`` as ``1.23x`` (``-`` when either is missing)."""
    if value is None or not baseline:
        return "-"
    return f"{value / baseline:.2f}x"


def target_row(
    name: str, wanted: str, value: float | None, threshold: float, unit: str, *, at_most=False
) -> list[str]:
    if value is None:
        return [name, wanted, "not measured (a run failed)", "MISSED"]
    met = value <= threshold if at_most else value >= threshold
    if unit == "%":
        shown = f"{value:.0%}"
    elif unit == "x":
        shown = f"{value:.2f}x"
    else:
        shown = f"{value:,.0f} {unit}"
    return [name, wanted, shown, mark(met)]


class Report:
    """Markdown printed as it is made, and kept for bench/results/benchmarks.md."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.raw: dict[str, Any] = {}

    def text(self, text: str) -> None:
        self.parts.append(text)
        print(text + "\n", flush=True)

    def section(self, title: str, note: str, table: str) -> None:
        self.text(f"## {title}\n\n{note}\n\n{table}")

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.text(markdown_table(headers, rows))

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "benchmarks.md").write_text("\n\n".join(self.parts) + "\n", encoding="utf-8")
        (folder / "benchmarks.json").write_text(
            json.dumps(self.raw, indent=1, default=str) + "\n", encoding="utf-8"
        )
