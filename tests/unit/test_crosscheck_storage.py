"""Stored cross-checks (matter_crawler.dcl.checks) in a real SQLite file: the run row, the
findings, and each finding's first and last appearance across checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from matter_crawler.dcl import checks
from matter_crawler.dcl.crosscheck import CrosscheckResult, Finding
from matter_crawler.storage import create_database_engine
from matter_crawler.storage.schema import prepare_schema

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def finding(pid: int, field: str = "transport", dcl: str = "thread") -> Finding:
    return Finding(
        "field_mismatch", 0x1234, pid, f"CSA24000MAT{pid:05}-00", field, ["Wi-Fi"], dcl, "u"
    )


@pytest.fixture
def engine(tmp_path):
    engine = create_database_engine(f"sqlite:///{tmp_path / 'matter.sqlite3'}")
    prepare_schema(engine)
    yield engine
    engine.dispose()


def store(engine, findings: list[Finding], day: int) -> int:
    with engine.begin() as conn:
        return checks.store_check(conn, CrosscheckResult(10, 7, findings), T0 + timedelta(days=day))


def test_a_check_and_its_findings_are_stored(engine):
    absent = Finding("absent_from_catalogue", 1, 2, "CSA24000MAT00009-00")
    check_id = store(engine, [finding(1), absent], 0)
    with engine.connect() as conn:
        latest = checks.latest_check(conn)
        rows = conn.execute(checks.findings.select().order_by(checks.findings.c.id)).all()
    assert (latest["id"], latest["products"], latest["consistent"], latest["findings"]) == (
        check_id,
        10,
        7,
        2,
    )
    assert latest["checked_at"] == T0
    assert latest["counts"]["counts"]["field_mismatch"] == 1
    assert latest["counts"]["field_counts"]["transport"] == 1
    assert [
        (r.finding_class, r.field, r.catalogue_value, r.dcl_value, r.product_url) for r in rows
    ] == [
        ("field_mismatch", "transport", json.dumps(["Wi-Fi"]), json.dumps("thread"), "u"),
        ("absent_from_catalogue", None, None, None, None),
    ]
    assert rows[0].fingerprint == finding(1).fingerprint()


def test_first_and_last_appearance_across_checks(engine, monkeypatch):
    monkeypatch.setattr(checks, "FINGERPRINT_CHUNK", 2)  # several IN (...) queries
    store(engine, [finding(1), finding(2)], 0)
    store(engine, [finding(1, dcl="ethernet"), finding(3)], 1)  # 1 again (new value), 2 gone
    store(engine, [finding(1), finding(3), finding(4)], 2)
    with engine.connect() as conn:
        seen = checks.appearances(conn, [finding(p).fingerprint() for p in (1, 2, 3, 4, 5)])
    spans = {
        pid: (a.first_check, a.last_check, a.first_seen.day, a.last_seen.day)
        for pid in (1, 2, 3, 4)
        if (a := seen.get(finding(pid).fingerprint()))
    }
    assert spans == {1: (1, 3, 1, 3), 2: (1, 1, 1, 1), 3: (2, 3, 2, 3), 4: (3, 3, 3, 3)}
    assert finding(5).fingerprint() not in seen
    with engine.connect() as conn:
        ordered = checks.finding_appearances(conn, [finding(5), finding(2)])
    assert ordered[0] is None
    assert ordered[1] is not None
    assert ordered[1].last_check == 1


def test_no_check_stored_yet(engine):
    with engine.connect() as conn:
        assert checks.latest_check(conn) is None
        assert checks.appearances(conn, []) == {}
