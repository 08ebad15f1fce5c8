"""The cross-check's rules (matter_crawler.dcl.crosscheck), each on small hand-made rows."""

from __future__ import annotations

from datetime import date

import pytest

from matter_crawler.dcl.crosscheck import (
    CLASSES,
    FIELDS,
    CrosscheckResult,
    Finding,
    crosscheck,
    ledger_date,
    ledger_transports,
)

VID, PID = 0x1234, 0x0042


def product(**values):
    row = {
        "url": "https://csa-iot.org/csa_product/lamp/",
        "vid_int": VID,
        "pid_int": PID,
        "certificate_id": "CSA24000MAT00001-24",
        "certification_date": date(2024, 5, 17),
        "software_version": "1.2.0",
        "firmware_version": "7",
        "family_id": "FAM1",
        "transport_interface": ["Wi-Fi", "Thread"],
        "manufacturer": "Acme Lighting",
        "model": "Lamp A1",
    }
    row.update(values)
    return row


def record(**values):
    row = {
        "vid": VID,
        "pid": PID,
        "software_version": 10,
        "certification_type": "matter",
        "software_version_string": "1.2.0",
        "status": 2,
        "date": "2024-05-17T00:00:00Z",
        "cd_certificate_id": "CSA24000MAT00001-24",
        "transport": "wi-fi,thread",
        "family_id": "FAM1",
    }
    row.update(values)
    return row


VENDORS = [{"vid": VID, "vendor_name": "Acme Lighting"}]
MODELS = [{"vid": VID, "pid": PID, "product_name": "Lamp A1"}]


def check(products, compliance, vendors=VENDORS, models=MODELS) -> CrosscheckResult:
    return crosscheck(products, compliance, vendors, models)


def only(result: CrosscheckResult) -> Finding:
    (finding,) = result.findings
    return finding


def test_a_product_equal_to_its_record_is_consistent():
    result = check([product()], [record()])
    assert result.findings == []
    assert (result.products, result.consistent) == (1, 1)
    assert result.counts() == dict.fromkeys(CLASSES, 0)
    assert result.field_counts() == dict.fromkeys(FIELDS, 0)


def test_no_record_of_the_vid_pid_is_missing_on_dcl():
    other = record(pid=PID + 1)
    result = check(
        [product()], [other], models=[*MODELS, {"vid": VID, "pid": PID + 1, "product_name": "x"}]
    )
    missing = [f for f in result.findings if f.finding_class == "missing_on_dcl"]
    assert [(f.vid, f.pid, f.certificate_id, f.field, f.catalogue, f.dcl) for f in missing] == [
        (VID, PID, "CSA24000MAT00001-24", None, None, None)
    ]
    assert missing[0].product_url == product()["url"]
    assert result.consistent == 0


def test_another_certification_type_does_not_count():
    result = check([product()], [record(certification_type="zigbee")])
    assert only(result).finding_class == "missing_on_dcl"


def test_a_certified_record_no_product_matched_is_absent_from_catalogue():
    result = check([], [record(pid=7, cd_certificate_id="CSA24000MAT00009-00")])
    finding = only(result)
    assert (finding.finding_class, finding.vid, finding.pid, finding.certificate_id) == (
        "absent_from_catalogue",
        VID,
        7,
        "CSA24000MAT00009-00",
    )
    assert finding.product_url is None
    assert (result.products, result.consistent) == (0, 0)


@pytest.mark.parametrize("status", [1, 3])
def test_provisional_and_revoked_records_no_product_matched_are_not_findings(status):
    assert check([], [record(status=status)]).findings == []


def test_a_matched_revoked_record_is_revoked_but_listed_and_its_fields_are_not_compared():
    result = check([product()], [record(status=3, family_id="OTHER", transport="ethernet")])
    finding = only(result)
    assert finding.finding_class == "revoked_but_listed"
    assert (finding.field, finding.catalogue, finding.dcl) == (None, None, None)
    assert result.consistent == 0


def test_the_certificate_id_falls_back_to_the_newest_unclaimed_record():
    older = record(software_version=5, cd_certificate_id="CSA24000MAT00007-00")
    newer = record(software_version=9, cd_certificate_id="CSA24000MAT00008-00")
    result = check([product()], [older, newer])
    assert [
        (f.finding_class, f.certificate_id, f.field, f.catalogue, f.dcl) for f in result.findings
    ] == [
        # the older record, certified and matched by no product
        ("absent_from_catalogue", "CSA24000MAT00007-00", None, None, None),
        (
            "field_mismatch",
            "CSA24000MAT00001-24",
            "certificate_id",
            "CSA24000MAT00001-24",
            "CSA24000MAT00008-00",
        ),
    ]
    assert result.consistent == 0


def test_the_fallback_skips_records_another_product_matches_by_certificate_id():
    mine = record(software_version=5, cd_certificate_id="CSA24000MAT00007-00")
    theirs = record(software_version=9, cd_certificate_id="CSA24000MAT00002-00")
    other = product(
        url="https://csa-iot.org/csa_product/other/", certificate_id=theirs["cd_certificate_id"]
    )
    result = check([product(), other], [mine, theirs])
    (finding,) = result.findings
    assert (finding.product_url, finding.field, finding.dcl) == (
        product()["url"],
        "certificate_id",
        "CSA24000MAT00007-00",
    )
    assert (result.products, result.consistent) == (2, 1)


def test_a_fallback_to_a_revoked_record_is_only_revoked_but_listed():
    revoked = record(status=3, cd_certificate_id="CSA24000MAT00007-00")
    assert only(check([product()], [revoked])).finding_class == "revoked_but_listed"


def test_an_exact_match_is_compared_with_its_newest_version():
    old = record(software_version=1, software_version_string="1.0")
    new = record(software_version=2, software_version_string="1.2.0")
    result = check([product()], [old, new])
    assert result.findings == []  # the older record is matched too: not absent


def test_every_field_disagreement_with_both_values_as_stated():
    ledger = record(
        date="2024-06-01T00:00:00Z",
        software_version_string="1.2.0.1",
        family_id="FAM2",
        transport="thread",
    )
    vendors = [{"vid": VID, "vendor_name": "Acme Lighting International"}]
    models = [{"vid": VID, "pid": PID, "product_name": "Lamp A1 Gen 2"}]
    result = check([product()], [ledger], vendors, models)
    assert [(f.field, f.catalogue, f.dcl) for f in result.findings] == sorted(
        [
            ("certification_date", "2024-05-17", "2024-06-01T00:00:00Z"),
            ("software_version", "1.2.0", "1.2.0.1"),
            ("family_id", "FAM1", "FAM2"),
            ("transport", ["Wi-Fi", "Thread"], "thread"),
            ("vendor_name", "Acme Lighting", "Acme Lighting International"),
            ("product_name", "Lamp A1", "Lamp A1 Gen 2"),
        ]
    )
    assert {f.finding_class for f in result.findings} == {"field_mismatch"}
    assert result.consistent == 0
    assert result.counts()["field_mismatch"] == 6
    assert result.field_counts() == {**dict.fromkeys(FIELDS, 1), "certificate_id": 0}


def test_the_date_compares_only_the_date_part():
    assert check([product()], [record(date="2024-05-17T23:59:59+02:00")]).findings == []
    assert ledger_date("2024-05-17T00:00:00Z") == "2024-05-17"
    assert ledger_date("") == ""


def test_the_software_version_falls_back_to_the_firmware_version():
    firmware = product(software_version=None, firmware_version="1.2.0")
    assert check([firmware], [record()]).findings == []
    finding = only(check([product(software_version=None)], [record()]))
    assert (finding.field, finding.catalogue, finding.dcl) == ("software_version", "7", "1.2.0")


def test_the_software_version_is_not_compared_when_the_catalogue_states_neither():
    silent = product(software_version=None, firmware_version="")
    assert check([silent], [record(software_version_string="9.9")]).findings == []


def test_a_missing_family_id_counts_as_empty():
    assert check([product(family_id=None)], [record(family_id="")]).findings == []
    finding = only(check([product(family_id=None)], [record()]))
    assert (finding.field, finding.catalogue, finding.dcl) == ("family_id", None, "FAM1")


def test_transports_compare_as_sets_case_insensitively():
    reordered = product(transport_interface=["THREAD", "wi-fi"])
    assert check([reordered], [record(transport="Wi-Fi, Thread")]).findings == []
    none = product(transport_interface=[])
    assert check([none], [record(transport="")]).findings == []
    finding = only(check([none], [record()]))
    assert (finding.field, finding.catalogue, finding.dcl) == ("transport", [], "wi-fi,thread")
    assert ledger_transports("a, ,B") == {"a", "b"}


def test_vendor_and_model_records_the_ledger_lacks_disagree_with_null():
    result = check([product()], [record()], vendors=[], models=[])
    assert [(f.field, f.dcl) for f in result.findings] == [
        ("product_name", None),
        ("vendor_name", None),
    ]


def test_the_names_are_read_from_the_products_own_vid_and_pid():
    vendors = [*VENDORS, {"vid": VID + 1, "vendor_name": "Other"}]
    models = [*MODELS, {"vid": VID, "pid": PID + 1, "product_name": "Other"}]
    assert check([product()], [record()], vendors, models).findings == []


def test_products_sharing_a_record_are_each_compared():
    twin = product(url="https://csa-iot.org/csa_product/twin/", model="Lamp A1 Mini")
    result = check([product(), twin], [record()])
    finding = only(result)
    assert (finding.product_url, finding.field) == (twin["url"], "product_name")
    assert (result.products, result.consistent) == (2, 1)


def test_products_without_vid_or_pid_are_left_out():
    result = check([product(url="u", vid_int=None), product()], [record()])
    assert (result.products, result.consistent, result.unkeyed) == (1, 1, ["u"])


def test_findings_sorted_and_summary_in_the_ground_truths_shape():
    absent = record(vid=1, pid=1, cd_certificate_id="CSA24000MAT00003-00")
    result = check([product(family_id="X"), product(url="v", vid_int=9)], [record(), absent])
    summary = result.summary()
    assert list(summary) == ["products", "consistent", "counts", "field_counts", "findings"]
    assert [f["class"] for f in summary["findings"]] == [
        "absent_from_catalogue",
        "field_mismatch",
        "missing_on_dcl",
    ]
    assert summary["findings"][1] == {
        "class": "field_mismatch",
        "vid": VID,
        "pid": PID,
        "certificate_id": "CSA24000MAT00001-24",
        "field": "family_id",
        "catalogue": "X",
        "dcl": "FAM1",
    }
    assert summary["counts"] == {
        "missing_on_dcl": 1,
        "absent_from_catalogue": 1,
        "revoked_but_listed": 0,
        "field_mismatch": 1,
    }


def test_the_fingerprint_names_a_finding_whatever_its_values():
    first = Finding("field_mismatch", 1, 2, "C", "transport", ["Wi-Fi"], "thread", "u")
    same = Finding("field_mismatch", 1, 2, "C", "transport", ["Thread"], "wi-fi", "u")
    other = Finding("field_mismatch", 1, 2, "C", "family_id", "a", "b", "u")
    assert first.fingerprint() == same.fingerprint() != other.fingerprint()
    assert len(first.fingerprint()) == 64
