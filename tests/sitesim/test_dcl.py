"""The simulated Distributed Compliance Ledger (``--dcl``).

Its answers must be what the contract (docs/dcl/openapi-excerpt.yml) says, field by
field and type by type, as the cosmos-sdk gateway writes them; its lists must page
like ``Paginate`` does; and its ground truth must be exactly the disagreements a
cross-check finds, derived here from what the site serves (dclcheck.py).
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from sitesim.config import Settings
from sitesim.process import SimulatedSite

from .dclcheck import LIST_FIELDS, Contract, canonical, derive_findings, get_json, walk
from .webclient import fetch

PRODUCTS, SEED = 600, 2


@pytest.fixture(scope="module")
def dcl_site() -> Iterator[SimulatedSite]:
    with SimulatedSite(products=PRODUCTS, seed=SEED, dcl=True) as running:
        yield running


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract()


@pytest.fixture(scope="module")
def ledger(dcl_site: SimulatedSite, contract: Contract) -> dict[str, list[dict]]:
    """Every list of the ledger, walked 50 records a page, each page validated."""
    return {path: walk(dcl_site.base_url, path, contract, limit=50) for path in LIST_FIELDS}


def test_every_list_answers_as_the_contract_says(
    dcl_site: SimulatedSite, ledger: dict[str, list[dict]]
) -> None:
    assert len(ledger["/dcl/vendorinfo/vendors"]) == 300
    assert len(ledger["/dcl/compliance/compliance-info"]) > PRODUCTS * 0.95
    statuses = {
        c["softwareVersionCertificationStatus"] for c in ledger["/dcl/compliance/compliance-info"]
    }
    assert statuses == {1, 2, 3}
    # written as Go writes JSON: compact, HTML-sensitive characters escaped
    raw = fetch(dcl_site.url("/dcl/vendorinfo/vendors?pagination.limit=300")).body
    assert b"\\u003cLabs\\u003e \\u0026 Co." in raw
    assert b"<" not in raw
    assert raw.startswith(b'{"vendorInfo":[{"vendorID":')
    # store-key order: VID, PID, software version
    for path in ("/dcl/model/models", "/dcl/compliance/compliance-info"):
        order = [(r["vid"], r["pid"], r.get("softwareVersion", 0)) for r in ledger[path]]
        assert order == sorted(order)
    # 64-bit integers are strings, 32-bit ones numbers, also beyond int32
    assert any(c["softwareVersion"] > 2**31 for c in ledger["/dcl/compliance/compliance-info"])


def test_every_record_path_answers_as_the_contract_says(
    dcl_site: SimulatedSite, contract: Contract, ledger: dict[str, list[dict]]
) -> None:
    base = dcl_site.base_url
    for vendor in ledger["/dcl/vendorinfo/vendors"][:25]:
        status, body = get_json(base, f"/dcl/vendorinfo/vendors/{vendor['vendorID']}")
        contract.validate("/dcl/vendorinfo/vendors/{vendorID}", status, body)
        assert body["vendorInfo"] == vendor
    for record in ledger["/dcl/compliance/compliance-info"][
        :: len(ledger["/dcl/compliance/compliance-info"]) // 25
    ]:
        vid, pid, version = record["vid"], record["pid"], record["softwareVersion"]
        answers = {
            "/dcl/model/models/{vid}": f"/dcl/model/models/{vid}",
            "/dcl/model/models/{vid}/{pid}": f"/dcl/model/models/{vid}/{pid}",
            "/dcl/model/versions/{vid}/{pid}": f"/dcl/model/versions/{vid}/{pid}",
            "/dcl/model/versions/{vid}/{pid}/{softwareVersion}": f"/dcl/model/versions/{vid}/{pid}/{version}",
            "/dcl/compliance/compliance-info/{vid}/{pid}/{softwareVersion}/{certificationType}": (
                f"/dcl/compliance/compliance-info/{vid}/{pid}/{version}/matter"
            ),
        }
        bodies = {}
        for template, path in answers.items():
            status, bodies[template] = get_json(base, path)
            assert status == 200, (path, bodies[template])
            contract.validate(template, status, bodies[template])
        assert (
            bodies[
                "/dcl/compliance/compliance-info/{vid}/{pid}/{softwareVersion}/{certificationType}"
            ]["complianceInfo"]
            == record
        )
        version_record = bodies["/dcl/model/versions/{vid}/{pid}/{softwareVersion}"]["modelVersion"]
        assert version_record["softwareVersionString"] == record["softwareVersionString"]
        assert isinstance(version_record["otaFileSize"], str)  # uint64
        assert (
            version
            in bodies["/dcl/model/versions/{vid}/{pid}"]["modelVersions"]["softwareVersions"]
        )
        products = bodies["/dcl/model/models/{vid}"]["vendorProducts"]["products"]
        assert pid in {product["pid"] for product in products}
    # ids parse like Go's strconv with base 0
    first = ledger["/dcl/model/models"][0]
    status, body = get_json(base, f"/dcl/model/models/{first['vid']:#x}/{first['pid']:#x}")
    assert status == 200
    assert body["model"] == first


@pytest.mark.parametrize(
    ("path", "template", "status", "code"),
    [
        ("/dcl/vendorinfo/vendors/1", "/dcl/vendorinfo/vendors/{vendorID}", 404, 5),
        ("/dcl/model/models/1/2", "/dcl/model/models/{vid}/{pid}", 404, 5),
        ("/dcl/model/models/abc", "/dcl/model/models/{vid}", 400, 3),
        (
            "/dcl/model/versions/1/2/99999999999",
            "/dcl/model/versions/{vid}/{pid}/{softwareVersion}",
            400,
            3,
        ),
        (
            "/dcl/compliance/compliance-info/1/2/3/matter",
            "/dcl/compliance/compliance-info/{vid}/{pid}/{softwareVersion}/{certificationType}",
            404,
            5,
        ),
        ("/dcl/model/models?pagination.limit=x", "/dcl/model/models", 400, 3),
        ("/dcl/model/models?pagination.count_total=yes", "/dcl/model/models", 400, 3),
        ("/dcl/model/models?pagination.offset=1&pagination.key=AAAA", "/dcl/model/models", 500, 13),
        ("/dcl/model/models?pagination.key=++8=", "/dcl/model/models", 400, 3),  # '+' is a space
    ],
)
def test_errors_answer_as_the_gateway_does(
    dcl_site: SimulatedSite, contract: Contract, path: str, template: str, status: int, code: int
) -> None:
    reply = fetch(dcl_site.url(path))
    body = json.loads(reply.body)
    assert (reply.status, body["code"]) == (status, code), body
    contract.validate(template, reply.status, body)
    assert body["details"] == []


@pytest.mark.parametrize("path", list(LIST_FIELDS))
def test_pagination_loses_and_repeats_nothing(
    dcl_site: SimulatedSite, ledger: dict[str, list[dict]], path: str
) -> None:
    base, name, everything = dcl_site.base_url, LIST_FIELDS[path], ledger[path]
    assert everything
    identity = [json.dumps(r, sort_keys=True) for r in everything]
    assert len(set(identity)) == len(identity)
    by_key = walk(base, path, limit=7)
    assert by_key == everything
    # offsets with count_total: the total, and the same records
    offset, by_offset = 0, []
    while True:
        status, body = get_json(base, path, offset=offset, limit=7, count_total="true")
        assert status == 200
        assert body["pagination"]["total"] == str(len(everything))
        by_offset += body[name]
        offset += 7
        if body["pagination"]["next_key"] is None:
            break
    assert by_offset == everything
    assert walk(base, path, limit=5, reverse="true") == everything[::-1]
    # one page of all: next_key null; a key never counts; no limit = 100 and a total
    status, body = get_json(base, path, limit=len(everything))
    assert body[name] == everything
    assert body["pagination"] == {"next_key": None, "total": "0"}
    status, body = get_json(base, path, limit=3)
    status, keyed = get_json(
        base, path, limit=3, key=body["pagination"]["next_key"], count_total="true"
    )
    assert keyed[name] == everything[3:6]
    assert keyed["pagination"]["total"] == "0"
    status, body = get_json(base, path)
    assert body[name] == everything[:100]
    assert body["pagination"]["total"] == str(len(everything))
    assert (body["pagination"]["next_key"] is None) == (len(everything) <= 100)
    # the key is the store key: vid (and pid...) big-endian, as the real ledger's
    if len(everything) > 1:
        status, body = get_json(base, path, limit=1)
        key = base64.b64decode(body["pagination"]["next_key"])
        second = everything[1]
        assert int.from_bytes(key[:4], "big") == second.get("vendorID", second.get("vid"))


def test_ground_truth_lists_exactly_the_seeded_disagreements(
    dcl_site: SimulatedSite, ledger: dict[str, list[dict]]
) -> None:
    truth = dcl_site.truth()
    expected = dcl_site.crosscheck()
    findings, consistent = derive_findings(
        truth,
        ledger["/dcl/vendorinfo/vendors"],
        ledger["/dcl/model/models"],
        ledger["/dcl/compliance/compliance-info"],
    )
    assert canonical(expected["findings"]) == canonical(findings)
    assert expected["consistent"] == consistent
    assert expected["products"] == len(truth)
    assert all(count > 0 for count in expected["counts"].values()), expected["counts"]
    assert all(count > 0 for count in expected["field_counts"].values()), expected["field_counts"]
    # the seeded disagreements are as docs/sitesim.md describes them
    per_class, per_field = max(1, PRODUCTS // 200), max(1, PRODUCTS // 300)
    assert expected["counts"] | {"field_mismatch": 0} == {
        "missing_on_dcl": per_class,
        "absent_from_catalogue": per_class,
        "revoked_but_listed": per_class,
        "field_mismatch": 0,
    }
    for name, count in expected["field_counts"].items():
        assert count >= 1 if name == "vendor_name" else count == per_field, name
    per_vendor = Counter(product["vid"] for product in truth)
    renamed = {f["vid"] for f in expected["findings"] if f["field"] == "vendor_name"}
    assert len(renamed) == 1
    assert per_vendor[f"0x{renamed.pop():04X}"] == min(per_vendor.values())
    models = {(m["vid"], m["pid"]) for m in ledger["/dcl/model/models"]}
    missing = [f for f in expected["findings"] if f["class"] == "missing_on_dcl"]
    assert 0 < sum((f["vid"], f["pid"]) in models for f in missing) < len(missing)
    for finding in expected["findings"]:
        catalogue, dcl = finding["catalogue"], finding["dcl"]
        if finding["field"] == "certification_date":
            assert 1 <= (date.fromisoformat(dcl[:10]) - date.fromisoformat(catalogue)).days <= 60
        elif finding["field"] == "software_version":
            assert dcl == f"{catalogue}.1"
        elif finding["field"] == "vendor_name":
            assert dcl == f"{catalogue} International"
        elif finding["field"] == "product_name":
            assert dcl == f"{catalogue} Gen 2"
    for record in ledger["/dcl/compliance/compliance-info"]:
        if record["softwareVersionCertificationStatus"] == 3:
            assert [item["softwareVersionCertificationStatus"] for item in record["history"]] == [2]
            assert record["history"][0]["date"] < record["date"]
    # the three model lists agree with the compliance records' statuses
    status_of = {
        (c["vid"], c["pid"], c["softwareVersion"]): c["softwareVersionCertificationStatus"]
        for c in ledger["/dcl/compliance/compliance-info"]
    }
    for path, status in (
        ("/dcl/compliance/certified-models", 2),
        ("/dcl/compliance/provisional-models", 1),
        ("/dcl/compliance/revoked-models", 3),
    ):
        for entry in ledger[path]:
            key = (entry["vid"], entry["pid"], entry["softwareVersion"])
            assert entry["value"] == (status_of[key] == status), (path, entry)
        trues = {(e["vid"], e["pid"], e["softwareVersion"]) for e in ledger[path] if e["value"]}
        assert trues == {key for key, value in status_of.items() if value == status}
        if status == 1:  # provisional records: as many as absent ones, and not findings
            assert len(trues) == per_class


def test_ground_truth_with_hostile_products_and_shared_models() -> None:
    """Hostile products a crawler cannot store are not on the ledger; products that
    share a VID/PID (many at this size) share one model."""
    with SimulatedSite(products=3000, seed=1, dcl=True, hostile=True, hostile_parsing=True) as site:
        lists = {path: walk(site.base_url, path, limit=1000) for path in LIST_FIELDS}
        findings, consistent = derive_findings(
            site.truth(),
            lists["/dcl/vendorinfo/vendors"],
            lists["/dcl/model/models"],
            lists["/dcl/compliance/compliance-info"],
        )
        expected = site.crosscheck()
    assert canonical(expected["findings"]) == canonical(findings)
    assert expected["consistent"] == consistent
    records = Counter((c["vid"], c["pid"]) for c in lists["/dcl/compliance/compliance-info"])
    assert any(count > 1 for count in records.values())  # shared models exist at this size
    assert expected["field_counts"]["product_name"] > 3000 // 300  # seeded + shared models


def test_dump_crosscheck_is_the_served_truth(dcl_site: SimulatedSite, tmp_path: Path) -> None:
    out = tmp_path / "crosscheck.json"
    command = [sys.executable, "-m", "sitesim", "--products", str(PRODUCTS)]
    command += ["--seed", str(SEED), "--dump-crosscheck", str(out)]
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    assert json.loads(out.read_text(encoding="utf-8")) == dcl_site.crosscheck()
    command[-1] = "-"
    printed = subprocess.run(command, check=True, timeout=120, capture_output=True, text=True)
    assert json.loads(printed.stdout) == dcl_site.crosscheck()


def test_ledger_truth_is_what_the_paths_serve(
    dcl_site: SimulatedSite, contract: Contract, ledger: dict[str, list[dict]]
) -> None:
    truth = dcl_site.dcl_truth()
    assert truth["vendor"] == ledger["/dcl/vendorinfo/vendors"]
    assert truth["model"] == ledger["/dcl/model/models"]
    assert truth["compliance"] == ledger["/dcl/compliance/compliance-info"]
    statuses = [
        {"list": path.rsplit("/", 1)[1].removesuffix("-models"), **record}
        for path in LIST_FIELDS
        if path.endswith("-models")
        for record in ledger[path]
    ]
    key = lambda r: (r["list"], r["vid"], r["pid"], r["softwareVersion"])  # noqa: E731
    assert sorted(truth["model_status"], key=key) == sorted(statuses, key=key)
    # the model versions have no list path: each model's versions, then each version
    base = dcl_site.base_url
    served = []
    for model in ledger["/dcl/model/models"]:
        vid, pid = model["vid"], model["pid"]
        _, versions = get_json(base, f"/dcl/model/versions/{vid}/{pid}")
        for number in versions["modelVersions"]["softwareVersions"]:
            _, answer = get_json(base, f"/dcl/model/versions/{vid}/{pid}/{number}")
            served.append(answer["modelVersion"])
    assert truth["model_version"] == served
    command = [sys.executable, "-m", "sitesim", "--products", str(PRODUCTS), "--seed", str(SEED)]
    out = subprocess.run(
        [*command, "--dump-dcl", "-"],
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert json.loads(out.stdout) == truth


def test_faults_apply_to_the_dcl_paths(dcl_site: SimulatedSite) -> None:
    path = "/dcl/vendorinfo/vendors?pagination.limit=2"
    try:
        dcl_site.reset_stats()
        dcl_site.set_faults(error_rate=1, only="dcl")
        assert fetch(dcl_site.url(path)).status in Settings().error_statuses
        assert fetch(dcl_site.listing_url(1)).status == 200  # only the ledger's paths
        dcl_site.set_faults(error_rate=0, throttle_rate=1, only="both")
        reply = fetch(dcl_site.url(path))
        assert reply.status == 429
        assert "retry-after" in reply.headers
        dcl_site.set_faults(throttle_rate=0, outage="0,30")
        assert fetch(dcl_site.url(path)).status == 503
        dcl_site.set_faults(outage=None, truncate_rate=1, js_only_rate=1)
        reply = fetch(dcl_site.url(path))  # JSON is never cut, nor turned into a shell
        assert reply.status == 200
        assert json.loads(reply.body)["vendorInfo"]
        dcl_site.set_faults(truncate_rate=0, js_only_rate=0, latency_ms=300)
        assert fetch(dcl_site.url(path)).elapsed >= 0.3
        dcl_site.set_faults(latency_ms=0, timeout_rate=1, hang_ms=400)
        reply = fetch(dcl_site.url(path))
        assert reply.status == 200
        assert reply.elapsed >= 0.4
        dcl_site.set_faults(timeout_rate=0, reset_rate=1)
        with pytest.raises((ConnectionError, http.client.IncompleteRead)):
            fetch(dcl_site.url(path))
        stats = dcl_site.stats()
        assert stats["by_kind"]["dcl"] == 7
        assert stats["faults"]["error"] == 1
    finally:
        dcl_site.set_faults(**Settings().as_json())
        dcl_site.reset_stats()
    assert fetch(dcl_site.url(path)).status == 200


def test_ground_truth_refused_once_the_catalogue_changed() -> None:
    with SimulatedSite(products=60, seed=4, dcl=True) as site:
        assert site.crosscheck()["products"] == 60
        site.mutate(change=1)
        with pytest.raises(ValueError, match="HTTP 409"):
            site.crosscheck()


def test_an_unknown_dcl_path_is_the_gateways_plain_404(dcl_site: SimulatedSite) -> None:
    reply = fetch(dcl_site.url("/dcl/model/nothing"))
    assert reply.status == 404
    assert reply.headers["content-type"].startswith("text/plain")


def test_without_dcl_there_is_no_ledger(site: SimulatedSite) -> None:
    assert fetch(site.url("/dcl/vendorinfo/vendors")).status == 404
    with pytest.raises(ValueError, match="HTTP 404"):
        site.crosscheck()
