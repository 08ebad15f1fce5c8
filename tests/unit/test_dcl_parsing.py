"""The DCL answers' parser, on answers saved from the simulated ledger (tests/fixtures/dcl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matter_crawler.dcl.parsing import (
    is_not_found,
    list_page_url,
    parse_list_page,
    parse_record,
    parse_versions,
    read_value,
    record_url,
    status_entry_url,
)
from matter_crawler.dcl.records import KINDS
from matter_crawler.parsing import PageParseError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dcl"
BASE = "https://dcl.example"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def page(name: str, kind: str, list_name: str | None = None):
    return parse_list_page(fixture(name), kind, BASE, f"{BASE}/page?x=1", list_name=list_name)


def test_a_first_page_gives_every_column_its_next_key_and_the_counted_total():
    first = page("vendors-first.json", "vendor")
    assert (first.next_key, first.total) == ("AAARiC8=", 300)
    assert first.records[0].values == {
        "vid": 4187,
        "vendor_name": "Xenon Connect Limited",
        "company_legal_name": "Xenon Connect Limited",
        "company_preferred_name": "Xenon",
        "vendor_landing_page_url": "https://www.xenon.example",
        "creator": "cosmos1rpu47p5se32z58qkguwj4mz632lm3fuzynlm8l",
        "schema_version": 0,
    }
    record = first.records[0]
    assert (record.kind, record.url, record.problems) == (
        "vendor",
        f"{BASE}/dcl/vendorinfo/vendors/4187",
        [],
    )
    assert record.key() == (4187,)


def test_the_last_page_has_no_next_key_and_a_page_after_a_key_no_total():
    last = page("vendors-last.json", "vendor")
    assert (last.next_key, len(last.records)) == (None, 2)
    second = page("models-second.json", "model")
    assert second.next_key is not None
    assert second.total == 0
    assert all(set(r.values) == set(KINDS["model"].columns()) for r in second.records)
    assert [r.url for r in second.records] == [
        f"{BASE}/dcl/model/models/{r.values['vid']}/{r.values['pid']}" for r in second.records
    ]


def test_compliance_records_keep_big_uint32_versions_and_the_history_list():
    record = parse_record(
        fixture("compliance-info-revoked-record.json"), "compliance", BASE, f"{BASE}/x"
    )
    values = record.values
    assert values["software_version"] == 1612100205
    assert values["status"] == 3
    assert values["history"] == [
        {
            "softwareVersionCertificationStatus": 2,
            "date": "2025-03-29T00:00:00Z",
            "reason": "",
            "cDVersionNumber": 11893,
            "schemaVersion": 0,
        }
    ]
    assert values["cd_certificate_id"] == "CSA25C5BMAT65804-24"
    assert record.url == f"{BASE}/dcl/compliance/compliance-info/44140/51429/1612100205/matter"
    listed = page("compliance-info-first.json", "compliance")
    assert listed.total == 121
    assert listed.records[0].values["software_version"] == 3458666258  # above 2**31


def test_status_list_entries_carry_their_list_and_are_named_by_list_and_key():
    provisional = page("provisional-models.json", "model_status", "provisional")
    assert [(r.values["list"], r.values["value"]) for r in provisional.records] == [
        ("provisional", True),
        ("provisional", False),  # revoked: stays in the index with value false
    ]
    assert provisional.records[1].url == (
        f"{BASE}/dcl/compliance/provisional-models#44140/51429/1612100205/matter"
    )
    revoked = page("revoked-models.json", "model_status", "revoked")
    assert (revoked.total, revoked.next_key) == (1, None)
    assert revoked.records[0].key() == ("revoked", 44140, 51429, 1612100205, "matter")


def test_a_model_version_record_reads_its_uint64_string():
    record = parse_record(fixture("version-record.json"), "model_version", BASE, f"{BASE}/x")
    assert record.values["ota_file_size"] == 3846679162
    assert record.values["software_version_valid"] is True
    assert record.url == f"{BASE}/dcl/model/versions/4955/23512/3458666258"
    assert record.problems == []
    vendor = parse_record(fixture("vendor-record.json"), "vendor", BASE, f"{BASE}/x")
    assert vendor.values["vid"] == 4187


def test_versions_answer_and_not_found():
    assert parse_versions(fixture("versions.json")) == [3458666258]
    assert is_not_found(fixture("versions-not-found.json"))
    assert not is_not_found(b"404 page not found")
    assert parse_versions(b'{"modelVersions": {"vid": 1, "pid": 2}}') == []
    with pytest.raises(PageParseError, match="softwareVersions"):
        parse_versions(b'{"modelVersions": {"softwareVersions": ["12"]}}')
    with pytest.raises(PageParseError, match="modelVersions"):
        parse_versions(b'{"code": 5}')


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (5, "int32", (5, None)),
        (-5, "int32", (-5, None)),
        (2**31, "int32", (None, "2147483648 is out of the int32 range")),
        (2**32 - 1, "uint32", (2**32 - 1, None)),
        (-1, "uint32", (None, "-1 is out of the uint32 range")),
        ("12", "uint32", (None, 'not a number: "12"')),
        (True, "int32", (None, "not a number: true")),
        (1.5, "uint32", (None, "not a number: 1.5")),
        ("18446744073709551615", "uint64", (2**64 - 1, None)),
        (
            "18446744073709551616",
            "uint64",
            (None, "18446744073709551616 is out of the uint64 range"),
        ),
        (12, "uint64", (None, "not a string of digits: 12")),
        ("١٢", "uint64", (None, 'not a string of digits: "\\u0661\\u0662"')),
        ("x", "string", ("x", None)),
        (3, "string", (None, "not a string: 3")),
        (False, "bool", (False, None)),
        ("true", "bool", (None, 'not a boolean: "true"')),
        ([{"a": 1}], "history", ([{"a": 1}], None)),
        ([1], "history", (None, "not a list of objects: [1]")),
        (None, "uint64", (0, None)),  # proto3: null (or absent) is the zero value
        (None, "history", ([], None)),
    ],
)
def test_values_by_kind(value, kind, expected):
    assert read_value(value, kind) == expected


def test_a_bad_value_is_a_problem_of_its_record_not_of_the_page():
    answer = json.loads(fixture("vendors-first.json"))
    answer["vendorInfo"][0]["schemaVersion"] = "0"
    del answer["vendorInfo"][0]["creator"]  # absent: the zero value
    answer["vendorInfo"][1]["vendorID"] = "0x10"  # the key unreadable
    answer["vendorInfo"].append(["not", "an", "object"])
    records = parse_list_page(json.dumps(answer).encode(), "vendor", BASE, f"{BASE}/p?k=1").records
    assert records[0].problems == ['schemaVersion: not a number: "0"']
    assert records[0].values["creator"] == ""
    assert records[0].url == f"{BASE}/dcl/vendorinfo/vendors/4187"
    assert records[1].problems == ['vendorID: not a number: "0x10"']
    assert records[1].url == f"{BASE}/p?k=1#entry-2"  # named by where it was found
    assert records[2].problems == ['not an object: ["not", "an", "object"]']
    assert records[2].url == f"{BASE}/p?k=1#entry-3"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", "the list page is not JSON"),
        (b"\xff\xfe", "the list page is not JSON"),
        (b"[]", "the list page is not a JSON object"),
        (b'{"pagination": {"next_key": null, "total": "0"}}', "has no 'vendorInfo' list"),
        (b'{"vendorInfo": []}', "has no pagination object"),
        (b'{"vendorInfo": [], "pagination": {"next_key": 5, "total": "0"}}', "next_key"),
        (b'{"vendorInfo": [], "pagination": {"next_key": null, "total": 3}}', "total"),
        (b'{"vendorInfo": ' + b"[" * 100_000, "nested too deeply"),
    ],
)
def test_an_answer_of_the_wrong_shape_fails_the_page(body, reason):
    with pytest.raises(PageParseError, match=reason):
        parse_list_page(body, "vendor", BASE, f"{BASE}/p")


def test_a_single_record_answer_of_the_wrong_shape_fails():
    with pytest.raises(PageParseError, match="'modelVersion'"):
        parse_record(b'{"model": {}}', "model_version", BASE, f"{BASE}/x")
    with pytest.raises(PageParseError, match="not JSON"):
        parse_record(b"", "vendor", BASE, f"{BASE}/x")
    with pytest.raises(PageParseError, match="nested too deeply"):
        parse_record(b"[" * 100_000, "vendor", BASE, f"{BASE}/x")
    assert not is_not_found(b"[" * 100_000)


def test_urls():
    # a key's + / = are escaped: the gateway form-decodes the query first
    assert list_page_url(BASE + "/", "/dcl/model/models", 7, key="ab+/c=") == (
        f"{BASE}/dcl/model/models?pagination.limit=7&pagination.key=ab%2B%2Fc%3D"
    )
    assert list_page_url(BASE, "/dcl/model/models", 7, count_total=True, offset=14) == (
        f"{BASE}/dcl/model/models?pagination.limit=7&pagination.offset=14"
        "&pagination.count_total=true"
    )
    values = {"vid": 1, "pid": 2, "software_version": 3, "certification_type": "matter"}
    assert record_url(BASE, KINDS["compliance"], values) == (
        f"{BASE}/dcl/compliance/compliance-info/1/2/3/matter"
    )
    assert status_entry_url(BASE, "certified", values) == (
        f"{BASE}/dcl/compliance/certified-models#1/2/3/matter"
    )
