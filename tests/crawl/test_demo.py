"""``make demo``'s script, as the README shows it, on a small catalogue.

It crawls the simulated catalogue, checks the database against the site's truth,
crawls the simulated ledger and ends with the cross-check compared with the
findings the site seeded; each step's line is what the README promises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ..helpers import PROJECT_ROOT


def test_demo_crawls_the_catalogue_and_the_ledger_and_ends_with_the_crosscheck(
    tmp_path: Path,
) -> None:
    database = tmp_path / "demo.sqlite3"
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--products", "240", "--database", str(database)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "Stored 240 products (240 new), 20 listing pages" in out
    assert "It equals the site's ground truth: all 240 products, every field." in out
    assert re.search(r"Read the ledger in [\d.]+ s: \d+ requests\.", out)
    summary = re.search(
        r"Cross-check of 240 listed products with the DCL .*: (\d+) consistent", out
    )
    assert summary, out[-2000:]
    found = re.search(r"It found exactly the (\d+) disagreements the site seeded", out)
    assert found, out[-2000:]
    assert int(found.group(1)) > 0
    assert database.exists()
