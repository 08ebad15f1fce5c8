"""``scrapy crosscheck`` on a real crawl of the simulated site, against the site's ground truth.

The simulated site serves its catalogue and, with ``dcl=True``, a ledger with a
seeded, known set of disagreements of every class. The catalogue is crawled for
real (``scrapy crawl matter_products`` into a SQLite file), and so is the ledger
(``scrapy crawl dcl`` into the same file; tests/crawl/test_dcl_crawl.py checks that
such a crawl stores every record as the site serves it).

Then ``scrapy crosscheck --json`` must equal ``site.crosscheck()`` exactly, the
``-o`` files must hold the same findings, and a second check after one changed and
one corrected ledger row must tell each finding's first and last appearance.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from ..helpers import PROJECT_ROOT, query, run_crawl, sqlite_url
from . import test_monitoring_pushgateway

pytestmark = pytest.mark.xdist_group(__name__)

PRODUCTS, SEED = 600, 1
#: a real Pushgateway on a free port (the push-at-close test's fixture)
pushgateway = test_monitoring_pushgateway.pushgateway
#: What a finding is, in the ground truth.
FINDING_KEYS = ("class", "vid", "pid", "certificate_id", "field", "catalogue", "dcl")


def scrapy(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args, "-s", f"DATABASE_URL={database_url}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def core(finding: dict[str, Any]) -> dict[str, Any]:
    return {key: finding[key] for key in FINDING_KEYS}


def ordered(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(core(finding), sort_keys=True) for finding in findings)


def check_json(database_url: str, *args: str) -> dict[str, Any]:
    return json.loads(ok(scrapy(database_url, "crosscheck", "--json", *args)).stdout)


def summary(document: dict[str, Any]) -> dict[str, Any]:
    return {key: document[key] for key in ("products", "consistent", "counts", "field_counts")}


class Checked:
    def __init__(self, site: Any, url: str, path: Path, expected: dict[str, Any]) -> None:
        self.site = site
        self.url = url
        self.path = path
        self.expected = expected

    def copy(self, name: str) -> str:
        target = self.path.with_name(f"{name}.sqlite3")
        shutil.copy(self.path, target)
        return sqlite_url(target)


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> Iterator[Checked]:
    from sitesim.process import SimulatedSite

    path = tmp_path_factory.mktemp("crosscheck") / "matter.sqlite3"
    url = sqlite_url(path)
    with SimulatedSite(products=PRODUCTS, seed=SEED, dcl=True) as site:
        run_crawl(site.base_url, url).check()
        run_crawl(
            site.base_url, url, spider="dcl", settings={"DCL_BASE_URL": site.base_url}
        ).check()
        yield Checked(site, url, path, site.crosscheck())


def test_the_check_finds_exactly_the_seeded_disagreements(checked):
    url = checked.copy("exact")
    expected = checked.expected
    # every class and every field is seeded: the check is tested on each
    assert all(expected["counts"].values())
    assert all(expected["field_counts"].values())

    document = check_json(url)
    assert summary(document) == summary(expected)
    assert ordered(document["findings"]) == ordered(expected["findings"])
    assert len(document["findings"]) == len(expected["findings"])
    assert document["check"] == 1
    for finding in document["findings"]:
        assert (finding["first_check"], finding["last_check"]) == (1, 1)
        assert finding["first_seen"] == finding["last_seen"] == document["checked_at"]
        assert (finding["product_url"] is None) == (finding["class"] == "absent_from_catalogue")

    (run,) = query(url, "SELECT id, products, consistent, findings, counts FROM crosscheck_runs")
    assert run[1:4] == (expected["products"], expected["consistent"], len(expected["findings"]))
    counts = json.loads(run[4])
    assert (counts["counts"], counts["field_counts"]) == (
        expected["counts"],
        expected["field_counts"],
    )
    stored = query(
        url,
        "SELECT finding_class, vid, pid, certificate_id, field, catalogue_value, dcl_value "
        "FROM crosscheck_findings WHERE check_id = 1",
    )
    assert ordered(
        [
            dict(
                zip(
                    FINDING_KEYS,
                    (*row[:5], *(json.loads(v) if v else None for v in row[5:])),
                    strict=True,
                )
            )
            for row in stored
        ]
    ) == ordered(expected["findings"])


def test_a_second_check_tells_each_findings_first_and_last_appearance(checked):
    url = checked.copy("history")
    first = check_json(url)
    corrected = next(f for f in first["findings"] if f["field"] == "transport")
    # a consistent product's record gets another family id: a new finding
    findings_of = {(f["vid"], f["pid"]) for f in first["findings"]}
    vid, pid, certificate = next(
        row
        for row in query(
            url,
            "SELECT vid, pid, cd_certificate_id FROM dcl_compliance WHERE status = 2 "
            "ORDER BY vid, pid",
        )
        if (row[0], row[1]) not in findings_of
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE dcl_compliance SET transport = :catalogue "
                "WHERE vid = :vid AND pid = :pid AND cd_certificate_id = :certificate"
            ),
            {
                "catalogue": ",".join(corrected["catalogue"]),
                "vid": corrected["vid"],
                "pid": corrected["pid"],
                "certificate": corrected["certificate_id"],
            },
        )
        conn.execute(
            text(
                "UPDATE dcl_compliance SET family_id = 'FAM-CHANGED' "
                "WHERE vid = :vid AND pid = :pid AND cd_certificate_id = :certificate"
            ),
            {"vid": vid, "pid": pid, "certificate": certificate},
        )
    engine.dispose()

    second = check_json(url)
    assert second["check"] == 2
    before = {json.dumps(core(f), sort_keys=True) for f in first["findings"]}
    after = {json.dumps(core(f), sort_keys=True): f for f in second["findings"]}
    (new,) = [f for key, f in after.items() if key not in before]
    assert (new["vid"], new["pid"], new["field"], new["dcl"]) == (
        vid,
        pid,
        "family_id",
        "FAM-CHANGED",
    )
    assert (new["first_check"], new["last_check"]) == (2, 2)
    assert new["first_seen"] == second["checked_at"]
    assert json.dumps(core(corrected), sort_keys=True) not in after
    assert len(after) == len(before)  # one more, one fewer
    for key, finding in after.items():
        if key in before:
            assert (finding["first_check"], finding["last_check"]) == (1, 2), finding
            assert finding["first_seen"] == first["checked_at"]
            assert finding["last_seen"] == second["checked_at"]
    assert second["counts"]["field_mismatch"] == first["counts"]["field_mismatch"]
    assert second["field_counts"]["transport"] == first["field_counts"]["transport"] - 1
    assert second["field_counts"]["family_id"] == first["field_counts"]["family_id"] + 1
    assert second["consistent"] == first["consistent"]  # one product fixed, one broken

    # the corrected finding's last appearance is the first check
    spans = query(
        url,
        "SELECT MIN(check_id), MAX(check_id) FROM crosscheck_findings "
        f"WHERE vid = {corrected['vid']} AND pid = {corrected['pid']} AND field = 'transport'",
    )
    assert spans == [(1, 1)]

    # --no-store: the history of what is stored, nothing added
    third = check_json(url, "--no-store")
    assert third["check"] is None
    assert ordered(third["findings"]) == ordered(second["findings"])
    assert all(f["last_check"] == 2 for f in third["findings"])
    assert query(url, "SELECT COUNT(*) FROM crosscheck_runs") == [(2,)]


def from_csv(name: str, value: str) -> Any:
    if value == "":
        return None
    if name in ("vid", "pid"):
        return int(value)
    if name in ("catalogue", "dcl"):
        return json.loads(value)
    return value


def test_the_findings_files_hold_the_same_findings(checked, tmp_path):
    url = checked.copy("files")
    expected = ordered(checked.expected["findings"])
    ok(scrapy(url, "crosscheck", "-o", str(tmp_path / "f.csv")))
    with (tmp_path / "f.csv").open(newline="", encoding="utf-8") as stream:
        rows = [{k: from_csv(k, v) for k, v in row.items()} for row in csv.DictReader(stream)]
    assert ordered(rows) == expected

    ok(scrapy(url, "crosscheck", "--no-store", "-o", str(tmp_path / "f.jsonl")))
    lines = (tmp_path / "f.jsonl").read_text(encoding="utf-8").splitlines()
    assert ordered([json.loads(line) for line in lines]) == expected

    ok(scrapy(url, "crosscheck", "--no-store", "-o", str(tmp_path / "f.xlsx")))
    sheet = openpyxl.load_workbook(tmp_path / "f.xlsx")["findings"]
    header, *cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    rows = []
    for values in cells:
        row = dict(zip(header, values, strict=True))
        for name in ("catalogue", "dcl"):
            row[name] = None if row[name] is None else json.loads(row[name])
        rows.append(row)
    assert ordered(rows) == expected

    # an existing file only with --force; refused before anything is stored
    refused = scrapy(url, "crosscheck", "-o", str(tmp_path / "f.csv"))
    assert refused.returncode == 1
    assert "f.csv exists: add --force to replace it" in refused.stderr
    assert query(url, "SELECT COUNT(*) FROM crosscheck_runs") == [(1,)]
    ok(scrapy(url, "crosscheck", "--no-store", "--force", "-o", str(tmp_path / "f.csv")))


def test_the_terminal_table_and_the_class_filter(checked):
    url = checked.copy("table")
    expected = checked.expected
    output = ok(scrapy(url, "crosscheck", "--no-store", "--limit", "0")).stdout
    assert f"{expected['products']} listed products" in output
    assert f"{expected['consistent']} consistent" in output
    for name, count in {**expected["counts"], **expected["field_counts"]}.items():
        assert re.search(rf"^{name}\s+{count}$", output, re.MULTILINE), name
    for finding in expected["findings"]:
        vid_pid = rf"0x{finding['vid']:04X}\s+0x{finding['pid']:04X}\s+{finding['certificate_id']}"
        assert re.search(rf"^{finding['class']}\s+{vid_pid}", output, re.MULTILINE), finding

    only = check_json(url, "--no-store", "--class", "revoked_but_listed")
    assert {f["class"] for f in only["findings"]} == {"revoked_but_listed"}
    assert len(only["findings"]) == expected["counts"]["revoked_but_listed"]
    assert only["counts"] == expected["counts"]  # the counts are the whole check's


def test_without_dcl_records_or_products_it_fails_clearly(checked):
    url = checked.copy("empty-dcl")
    query(url, "SELECT 1")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM dcl_compliance"))
    engine.dispose()
    result = scrapy(url, "crosscheck")
    assert result.returncode == 1
    assert "no DCL records" in result.stderr
    assert "scrapy crawl dcl" in result.stderr
    assert "Traceback" not in result.stderr

    url = checked.copy("no-products")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE products SET delisted_at = CURRENT_TIMESTAMP"))
    engine.dispose()
    result = scrapy(url, "crosscheck")
    assert result.returncode == 1
    assert "no listed products" in result.stderr
    assert query(url, "SELECT COUNT(*) FROM crosscheck_runs") == [(0,)]


def pushed_samples(gateway: str, job: str) -> dict[tuple[str, tuple], float]:
    """The Pushgateway's samples of ``job``'s group: (name, other labels) -> value."""
    with urllib.request.urlopen(f"{gateway}/metrics", timeout=10) as answer:
        families = text_string_to_metric_families(answer.read().decode())
    found = {}
    for family in families:
        for sample in family.samples:
            if sample.labels.get("job") == job and sample.name.startswith(
                "matter_crawler_crosscheck_"
            ):
                labels = {k: v for k, v in sample.labels.items() if k not in ("job", "instance")}
                found[sample.name, tuple(sorted(labels.items()))] = sample.value
    return found


def expected_samples(document: dict[str, Any], spider: str) -> dict[tuple[str, tuple], float]:
    checked_at = datetime.fromisoformat(document["checked_at"]).timestamp()
    expected = {
        ("matter_crawler_crosscheck_products", (("spider", spider),)): document["products"],
        ("matter_crawler_crosscheck_consistent", (("spider", spider),)): document["consistent"],
        ("matter_crawler_crosscheck_time_seconds", (("spider", spider),)): checked_at,
    }
    for name, count in document["counts"].items():
        expected["matter_crawler_crosscheck_findings", (("class", name), ("spider", spider))] = (
            count
        )
    for name, count in document["field_counts"].items():
        key = ("matter_crawler_crosscheck_field_mismatches", (("field", name), ("spider", spider)))
        expected[key] = count
    return expected


@pytest.mark.system
def test_the_latest_check_is_pushed_and_exported_by_crawls(checked, pushgateway):
    url = checked.copy("metrics")
    pushed = scrapy(url, "crosscheck", "--json", "-s", f"PROMETHEUS_PUSHGATEWAY_URL={pushgateway}")
    document = json.loads(ok(pushed).stdout)
    assert f"pushed the check's metrics to {pushgateway}" in pushed.stderr
    assert pushed_samples(pushgateway, "crosscheck") == expected_samples(document, "crosscheck")

    # a crawl of the same database exports the latest check too (here: its push at close)
    run_crawl(
        checked.site.base_url,
        url,
        settings={"PROMETHEUS_PUSHGATEWAY_URL": pushgateway, "MONITORING_PORT": 0},
        args={"_job": "cc-crawl"},
    ).check()
    assert pushed_samples(pushgateway, "cc-crawl") == expected_samples(document, "matter_products")
    # a check not stored is not pushed
    ok(scrapy(url, "crosscheck", "--no-store", "-s", f"PROMETHEUS_PUSHGATEWAY_URL={pushgateway}"))
    assert pushed_samples(pushgateway, "crosscheck") == expected_samples(document, "crosscheck")
