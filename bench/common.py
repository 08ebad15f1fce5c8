"""Shared helpers for the benchmark scripts: measured child processes, machine facts, tables."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# verify.py's own URL-to-path rule: one definition of what "the same record" means
from matter_crawler.parsing.urls import url_path  # noqa: E402
from matter_crawler.verify import TRUTH_FIELDS  # noqa: E402


@dataclass
class Measurement:
    """What one child process cost: wall and CPU seconds, peak resident memory."""

    wall: float
    user: float
    system: float
    peak_mib: float
    returncode: int
    output: str

    @property
    def cpu(self) -> float:
        return self.user + self.system


def _high_water_mark_kib(pid: int) -> int:
    """VmHWM of a running process (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_measured(
    command: Sequence[str],
    *,
    cwd: Path = ROOT,
    timeout: float = 3600,
    env: Mapping[str, str] | None = None,
) -> Measurement:
    """Run a command; CPU from wait4 (its own rusage), peak memory from VmHWM.

    ``ru_maxrss`` would count the forked copy of this (large) benchmark process
    before the child's exec, so the peak is sampled from ``/proc/<pid>/status``
    instead: VmHWM belongs to the exec'd program alone and never decreases.
    """
    scratch = Path(os.environ.get("TMPDIR", "/tmp"))
    log_path = scratch / f"bench-{os.getpid()}-{time.monotonic_ns()}.log"
    try:
        with log_path.open("w+b") as log:
            started = time.monotonic()
            process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            deadline = started + timeout
            peak_kib = 0
            while True:
                peak_kib = max(peak_kib, _high_water_mark_kib(process.pid))
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    process.kill()
                    pid, status, usage = os.wait4(process.pid, 0)
                    break
                time.sleep(0.02)
            wall = time.monotonic() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            log.seek(0)
            output = log.read().decode("utf-8", "replace")
    finally:  # an interrupted run leaves no log behind
        log_path.unlink(missing_ok=True)
    return Measurement(
        wall=wall,
        user=usage.ru_utime,
        system=usage.ru_stime,
        peak_mib=peak_kib / 1024,
        returncode=process.returncode,
        output=output,
    )


def source_module(path: str) -> tuple[str, str] | None:
    """``(kind, dotted module)`` of a source file's path, kind ``ours``, ``library`` or
    ``stdlib``; None for what is none of them (frozen modules, C built-ins)."""
    if match := re.search(r"matter_crawler/([\w/]+)\.py$", path):
        return "ours", "matter_crawler." + match.group(1).replace("/", ".")
    # a library's file, or the standard library's (site-packages lies inside lib/python3.x)
    for kind, pattern in (
        ("library", r"site-packages/(.+?)"),
        ("stdlib", r"/lib/python3\.\d+/(.+?)"),
    ):
        if match := re.search(pattern + r"(?:\.py)?$", path):
            return kind, match.group(1).replace("/", ".")
    return None


def machine() -> str:
    """One line describing the machine the figures come from."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import scrapy

    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"Scrapy {scrapy.__version__}, {platform.system()} {platform.release()}"
    )


def stop_process(
    process: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 60.0
) -> None:
    """Send ``sig`` if it still runs and wait; kill if it does not end. Never leaves it running."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load_average() -> str:
    """The 1/5/15-minute load averages: figures taken on a busy machine say so."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def item_records(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Exported items (ProductItem fields, e.g. a JSON-lines feed) as ground-truth records.

    The same conversion :func:`matter_crawler.verify.stored_records` applies to
    the products table (the truth's fields, URLs as paths), so that
    :func:`~matter_crawler.verify.diff_records` judges a crawler that writes
    JSON exactly as it judges matter-crawler's database.
    """
    records = []
    for item in items:
        record = {name: item.get(name) for name in TRUTH_FIELDS}
        record["url"] = url_path(record["url"])
        record["compliance_document_url"] = url_path(record["compliance_document_url"])
        records.append(record)
    return records


def read_dataset(storage_dir: Path) -> list[dict[str, Any]]:
    """The items of a finished Crawlee crawl's default dataset (one JSON file per item)."""
    folder = storage_dir / "datasets" / "default"
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.json"))
        if not path.name.startswith("__")  # __metadata__.json
    ]


def last_json_line(output: str) -> dict[str, Any]:
    """The last line of a script's output that is a JSON object (warnings may follow it)."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON result in the output: {output[-500:]!r}")
