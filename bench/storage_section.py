"""Section 2 of ``run_all.py``: the project's BatchStorePipeline, batched and one by one.

``--storage-items`` products through ``bench/store_throughput.py`` at the
project's ``STORE_BATCH_SIZE`` and at 1, into SQLite files and, when Debian's
postgresql package is installed, into PostgreSQL databases on a local server
started for the run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import ROOT, last_json_line, load_average, markdown_table, median, run_measured
from report import Report, ratio, status_problem, target_row

from matter_crawler import settings as project_settings
from tests.postgresql import PostgreSQLServer, PostgreSQLUnavailable

BENCH = Path(__file__).resolve().parent
# -- targets (issue 10) ----------------------------------------------------------------
TARGET_BATCH_ITEMS_PER_S = 30_000
TARGET_BATCH_VS_SINGLE = 20.0


def storage_section(options: argparse.Namespace, scratch: Path, report: Report) -> None:
    truth_file = scratch / "storage-truth.jsonl"
    dump = run_measured(
        [
            sys.executable, "-m", "sitesim",
            "--products", str(options.storage_items), "--seed", str(options.seed),
            "--dump-truth", str(truth_file),
        ],
        cwd=ROOT,
    )  # fmt: skip
    if dump.returncode != 0:
        raise SystemExit(f"could not write the storage benchmark's records:\n{dump.output}")
    batch_size = project_settings.STORE_BATCH_SIZE
    sizes = {"batch": batch_size, "single": 1}
    with storage_backends(scratch) as backends:
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            backend: {name: [] for name in sizes} for backend in backends
        }
        load_before = load_average()
        for round_ in range(options.repeat):
            for backend, (fresh_database, environment) in backends.items():
                for name, size in sizes.items():
                    database, drop = fresh_database(f"store_{name}_{round_}")
                    measurement = run_measured(
                        [
                            sys.executable, str(BENCH / "store_throughput.py"), str(truth_file),
                            database, "--batch-size", str(size),
                        ],
                        cwd=ROOT,
                        env={**os.environ, **environment},
                    )  # fmt: skip
                    result: dict[str, Any] = {"problems": status_problem(measurement)}
                    if not result["problems"]:
                        result.update(last_json_line(measurement.output))
                        if result["differences"]:
                            result["problems"].append(
                                f"{result['differences']} differences from the records stored, "
                                f"e.g. {result['first_differences'][0]}"
                            )
                    result["peak_mib"] = measurement.peak_mib
                    results[backend][name].append(result)
                    drop()
                    shown = f"{result.get('items_per_second', 0):,.0f} items/s"
                    print(
                        f"  round {round_ + 1}/{options.repeat} store {backend} {name}: {shown}"
                        + (f", FAILED: {result['problems'][0]}" if result["problems"] else ""),
                        file=sys.stderr,
                        flush=True,
                    )
        load_after = load_average()
        missing = backends.missing

    def rate(backend: str, name: str) -> float | None:
        if any(result["problems"] for result in results[backend][name]):
            return None
        return median([result["items_per_second"] for result in results[backend][name]])

    rows = []
    pipelines = (
        ("batch", f"BatchStorePipeline, STORE_BATCH_SIZE={batch_size} (the default)"),
        ("single", "the same pipeline, STORE_BATCH_SIZE=1 (one commit per item)"),
    )
    for backend, (name, what) in ((b, p) for b in results for p in pipelines):
        value = rate(backend, name)
        label = f"{STORAGE_BACKENDS[backend]}: {what}"
        if value is None:
            rows.append([label, "FAILED", "-", "-", "-"])
            continue
        done = results[backend][name]
        rows.append(
            [
                label,
                "ok",
                value,
                median([r["cpu_seconds"] / r["items"] * 1e6 for r in done]),
                ratio(value, rate(backend, "single")),
            ]
        )
    report.section(
        f"Storage: {options.storage_items:,} products into a fresh database",
        f"Medians of {options.repeat} round(s). {load_before.capitalize()} before, "
        f"{load_after} after. Every run's table is compared with the records afterwards. "
        "SQLite: a new file (WAL, synchronous=NORMAL). PostgreSQL: a new database on a "
        "local server started for the benchmark (tests/postgresql.py) with "
        "synchronous_commit=off, the same durability as SQLite's NORMAL in WAL mode; "
        "CPU is the benchmark process's only, not the server's."
        + (f" {missing}" if missing else ""),
        markdown_table(
            ["pipeline", "stored vs. records", "items/s", "CPU µs / item", "vs. one per item"],
            rows,
        ),
    )
    batch_rate, single_rate = rate("sqlite", "batch"), rate("sqlite", "single")
    report.table(
        ["target", "wanted", "measured", ""],
        [
            target_row(
                "batch storage items/s (SQLite)", f">= {TARGET_BATCH_ITEMS_PER_S:,}",
                batch_rate, TARGET_BATCH_ITEMS_PER_S, "items/s",
            ),
            target_row(
                "batch vs. one commit per item (SQLite)", f">= {TARGET_BATCH_VS_SINGLE:.0f}x",
                batch_rate / single_rate if batch_rate and single_rate else None,
                TARGET_BATCH_VS_SINGLE, "x",
            ),
        ],
    )  # fmt: skip
    report.raw["storage"] = {"items": options.storage_items, "batch_size": batch_size, **results}


STORAGE_BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
#: PostgreSQL as durable as SQLite in WAL mode with synchronous=NORMAL: commits are not
#: flushed one by one, a crash loses the last ones and corrupts nothing.
POSTGRESQL_BENCH_SETTINGS = {"synchronous_commit": "off"}


class StorageBackends(dict):
    """backend -> (fresh_database(name) -> (database argument, drop), client environment)."""

    missing = ""


@contextmanager
def storage_backends(scratch: Path) -> Iterator[StorageBackends]:
    """SQLite files in ``scratch``, and a PostgreSQL server when the package is installed."""
    backends = StorageBackends()

    def sqlite_file(name: str) -> tuple[str, Callable[[], None]]:
        path = scratch / f"{name}.sqlite3"
        return str(path), lambda: path.unlink(missing_ok=True)

    backends["sqlite"] = (sqlite_file, {})
    try:
        server = PostgreSQLServer(POSTGRESQL_BENCH_SETTINGS)
    except PostgreSQLUnavailable as why:
        backends.missing = f"PostgreSQL not measured: {why}."
        yield backends
        return
    with server:

        def postgresql_database(name: str) -> tuple[str, Callable[[], None]]:
            return server.create_database(name), lambda: server.drop_database(name)

        backends["postgresql"] = (postgresql_database, server.environment())
        yield backends
