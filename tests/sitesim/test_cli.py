"""The command line: validation, --dump-truth, the banner, clean stop, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from sitesim.process import BANNER, SimulatedSite, SiteStartError
from sitesim.truth import TRUTH_KEYS

from ..helpers import free_port
from .webclient import fetch


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "sitesim", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-rate", "-0.1"], "--error-rate: must be between 0 and 1"),
        (["--throttle-rate", "1.5"], "--throttle-rate: must be between 0 and 1"),
        (["--js-only-rate", "abc"], "expected a number"),
        (["--products", "9"], "--products: must be 10..100000"),
        (["--products", "100001"], "--products: must be 10..100000"),
        (["--outage", "5"], "--outage: expected START,SECONDS"),
        (["--outage", "5,0"], "SECONDS > 0"),
        (["--outage", "x,3"], "expected a number"),
        (["--only", "sometimes"], "--only: must be one of list, detail, both"),
        (["--latency-dist", "normal"], "--latency-dist"),
        (["--capacity", "-1"], "--capacity: must not be negative"),
        (["--capacity-status", "500"], "--capacity-status"),
        (["--error-statuses", "200,500"], "--error-statuses: statuses must be 400..599"),
        (["--latency-ms", "-5"], "--latency-ms: must not be negative"),
        (["--port", "70000"], "--port"),
        (["--past-end", "410"], "--past-end"),
        (["--unknown-flag"], "unrecognized arguments"),
    ],
)
def test_bad_values_exit_non_zero_with_a_message(args: list[str], message: str) -> None:
    result = _run(*args, "--dump-truth", os.devnull)
    assert result.returncode != 0
    assert "error:" in result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_dump_truth_writes_one_line_per_product(tmp_path: os.PathLike[str]) -> None:
    out = f"{tmp_path}/truth.jsonl"
    result = _run("--products", "37", "--seed", "5", "--dump-truth", out)
    assert result.returncode == 0, result.stderr
    with open(out, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    assert len(records) == 37
    assert all(tuple(r) == TRUTH_KEYS for r in records)
    with SimulatedSite(products=37, seed=5) as site:
        assert site.truth() == records, "the dump and the live truth agree"


def test_banner_and_clean_stop_on_sigterm() -> None:
    site = SimulatedSite(products=10).start()
    try:
        assert site.base_url.startswith("http://127.0.0.1:")
        process = site._process
        assert process is not None
        os.kill(site.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        site.stop()
    assert BANNER.strip() == "matter-crawler sitesim listening on"


def test_start_failure_reports_stderr() -> None:
    with pytest.raises(SiteStartError, match="must be between 0 and 1"):
        SimulatedSite(products=10, error_rate=2).start()
    port = free_port()
    with (
        SimulatedSite(products=10, port=port),
        pytest.raises(SiteStartError, match="cannot listen"),
    ):
        SimulatedSite(products=10, port=port).start()


def _pages(site: SimulatedSite) -> list[bytes]:
    truth = site.truth()
    urls = [site.listing_url(n) for n in (1, 2, 5)]
    urls += [site.url(r["url"]) for r in truth[:5] + truth[-2:]]
    urls.append(site.url("/csa_product/missing/"))
    return [fetch(url).body for url in urls]


def test_same_seed_gives_byte_identical_pages_other_seed_differs() -> None:
    port = free_port()  # the same port: links carry the address, so bytes can match
    runs = []
    for seed in (1, 1, 2):
        with SimulatedSite(products=200, seed=seed, port=port, variant_rate=0.3) as site:
            runs.append(_pages(site))
    assert runs[0] == runs[1]
    differing = [a != b for a, b in zip(runs[0], runs[2], strict=True)]
    assert sum(differing) >= len(differing) - 1  # only the 404 page may be the same
