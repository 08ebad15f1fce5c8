"""Storage on real databases: upserts, change history, sightings, delisting, letters, runs.

Every test runs on a SQLite file and on a PostgreSQL database (``both_databases``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, inspect, select, text, update

from matter_crawler.items import ListingSighting, ProductItem
from matter_crawler.pipelines.store import delist_proven, write_batch
from matter_crawler.storage import Database
from matter_crawler.storage.dead_letters import Letter, add_letters, count_pending, resolve_letters
from matter_crawler.storage.models import Product, ProductChange
from matter_crawler.storage.prepared import remembering_json
from matter_crawler.storage.products import (
    _statements,
    load_known_products,
    product_row,
    record_sightings,
)
from matter_crawler.storage.runs import finish_run, recent_runs, resume_run, start_run

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def product(n: int, **changes) -> ProductItem:
    item = ProductItem(
        url=f"https://csa-iot.org/csa_product/plug-{n}/",
        manufacturer="Acme & Co",
        model=f"Plug {n}",
        device_type="Smart Plug",
        certificate_id=f"CSA22059MAT4{n:04d}-24",
        certification_date="2025-03-02",
        vid="0x1552",
        vid_int=0x1552,
        pid=f"0x{n:04X}",
        pid_int=n,
        tis_trp_tested=False,
        transport_interface=["Wi-Fi", "Bluetooth"],
        application_categories=["Smart Plug"],
        extra_fields={"Certification Type": "New"},
    )
    return replace(item, **changes)


@pytest.fixture
def database(database_url):
    db = Database(database_url)
    yield db
    db.close()


def rows(database, model):
    with database.engine.connect() as conn:
        return [row._asdict() for row in conn.execute(select(model.__table__))]


def test_wal_mode_and_tables(database, database_backend):
    tables = set(inspect(database.engine).get_table_names())
    assert {"products", "product_changes", "crawl_runs", "dead_letters"} <= tables
    if database_backend == "sqlite":
        with database.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_upsert_inserts_then_records_changes_per_field(database):
    first = database.run_sync(write_batch, [product(1), product(2)], [], 1, NOW)
    assert (first.new, first.changed, first.unchanged) == (2, 0, 0)

    later = NOW + timedelta(days=1)
    changed = product(1, firmware_version="2.0", transport_interface=["Thread"])
    second = database.run_sync(write_batch, [changed, product(2)], [], 2, later)
    assert (second.new, second.changed, second.unchanged) == (0, 1, 1)
    assert sorted(second.changes) == [
        (changed.url, "firmware_version"),
        (changed.url, "transport_interface"),
    ]

    stored = {row["url"]: row for row in rows(database, Product)}
    assert len(stored) == 2
    row = stored[changed.url]
    assert row["firmware_version"] == "2.0"
    assert row["transport_interface"] == ["Thread"]
    assert row["first_seen_at"] == NOW
    assert row["last_seen_at"] == later
    assert (row["first_seen_run_id"], row["last_seen_run_id"]) == (1, 2)

    history = {
        (c["field"], c["old_value"], c["new_value"], c["run_id"])
        for c in rows(database, ProductChange)
    }
    assert history == {
        ("firmware_version", None, '"2.0"', 2),
        ("transport_interface", '["Wi-Fi", "Bluetooth"]', '["Thread"]', 2),
    }


def test_same_url_twice_in_a_batch_is_one_row(database):
    result = database.run_sync(write_batch, [product(1), product(1, model="Plug One")], [], 1, NOW)
    assert result.new == 1
    assert [row["model"] for row in rows(database, Product)] == ["Plug One"]


def test_hostile_text_is_stored_verbatim(database):
    hostile = product(
        3, model="Robert'); DROP TABLE products;--", description="<script>alert(1)</script>"
    )
    database.run_sync(write_batch, [hostile], [], 1, NOW)
    (row,) = rows(database, Product)
    assert row["model"] == "Robert'); DROP TABLE products;--"
    assert row["description"] == "<script>alert(1)</script>"


def test_sightings_refresh_last_seen_and_delisting(database):
    database.run_sync(write_batch, [product(1), product(2), product(3)], [], 1, NOW)
    later = NOW + timedelta(hours=1)
    sighting = ListingSighting(
        url=product(1).url, manufacturer=None, model=None, certificate_id=None, page=1
    )
    database.run_sync(write_batch, [product(2)], [sighting], 2, later)
    # product 3 proven gone; product 1, seen by run 2, is not delisted whatever is asked
    proven = [product(3).url, product(1).url]
    assert database.run_sync(delist_proven, proven, 2, later) == 1
    stored = {row["url"]: row for row in rows(database, Product)}
    assert stored[product(3).url]["delisted_at"] == later
    assert stored[product(1).url]["delisted_at"] is None
    assert stored[product(1).url]["last_seen_run_id"] == 2

    known = database.run_sync(load_known_products)
    assert known[product(3).url].delisted
    assert not known[product(1).url].delisted
    # seen again: listed again
    database.run_sync(write_batch, [product(3)], [], 3, later)
    assert database.run_sync(load_known_products)[product(3).url].delisted is False


def test_dead_letters_update_resolve_and_reopen(database):
    letter = Letter("https://x/a", "detail", "server", "HTTP 503", 5, NOW, NOW)
    database.run_sync(add_letters, [letter], 1)
    database.run_sync(
        add_letters, [replace(letter, last_error="HTTP 500", last_failed_at=NOW + timedelta(1))], 2
    )
    assert database.run_sync(count_pending) == 1
    assert database.run_sync(resolve_letters, ["https://x/a", "https://x/unknown"], 3, NOW) == 1
    assert database.run_sync(count_pending) == 0
    database.run_sync(add_letters, [letter], 4)
    assert database.run_sync(count_pending) == 1
    with database.engine.connect() as conn:
        (row,) = conn.execute(text("select first_failed_at, run_id, resolved_at from dead_letters"))
    assert row.run_id == 4
    assert row.resolved_at is None


def test_run_record_lifecycle(database):
    run_id = database.run_sync(
        lambda engine: start_run(
            engine, spider="s", job_id="j1", mode="auto", settings={"A": 1}, now=NOW
        )
    )
    assert database.run_sync(resume_run, run_id)
    assert not database.run_sync(resume_run, 999)
    database.run_sync(
        add_letters, [Letter("https://x/b", "list", "server", "e", 5, NOW, NOW)], run_id
    )
    database.run_sync(
        finish_run, run_id, {"status": "finished", "finished_at": NOW, "products_new": 7}
    )
    (run,) = database.run_sync(recent_runs)
    assert run["status"] == "finished"
    assert run["sessions"] == 2
    assert run["dead_letters"] == 1
    assert run["products_new"] == 7
    assert run["settings"] == {"A": 1}
    assert json.loads(json.dumps(run["stats"])) == {}


def test_prepared_writes_store_what_sqlalchemy_core_stores(make_database_url):
    """The write path bypasses SQLAlchemy's per-row processing: the bytes must not differ."""
    prepared = Database(make_database_url("prepared"))
    core = Database(make_database_url("core"))
    odd = product(
        3,
        manufacturer="삼성전자 & Söhne <b>",
        transport_interface=[],
        extra_fields={"Note": None, "Größe": "x"},
        tis_trp_tested=None,
        certification_date=None,
    )
    first = [product(1), product(2, tis_trp_tested=True), odd]
    later = NOW + timedelta(hours=5, microseconds=7)
    second = [product(1, firmware_version="2.0"), product(4)]
    sighting = ListingSighting(product(2).url, None, None, None, 1)

    prepared.run_sync(write_batch, first, [], 1, NOW)
    prepared.run_sync(write_batch, second, [sighting], 2, later)

    def core_rows(items, run_id, now, *, new):
        rows = []
        for item in items:
            row = product_row(item)
            row.update(
                last_seen_at=now,
                last_fetched_at=now,
                last_seen_run_id=run_id,
                last_fetched_run_id=run_id,
                delisted_at=None,
            )
            if new:
                row.update(first_seen_at=now, first_seen_run_id=run_id)
            rows.append(row)
        return rows

    products_table = Product.__table__
    with core.engine.begin() as conn:
        conn.execute(insert(products_table), core_rows(first, 1, NOW, new=True))
    with core.engine.begin() as conn:
        changed, added = second
        conn.execute(insert(products_table), core_rows([added], 2, later, new=True))
        (row,) = core_rows([changed], 2, later, new=False)
        conn.execute(update(products_table).where(products_table.c.url == row["url"]).values(row))
        conn.execute(
            update(products_table)
            .where(products_table.c.url == sighting.url)
            .values(last_seen_at=later, last_seen_run_id=2, delisted_at=None)
        )

    def raw(database):
        """The rows as the driver reads them: no SQLAlchemy type processing."""
        with database.engine.connect() as conn:
            cursor = conn.exec_driver_sql("select * from products order by url")
            names = list(cursor.keys())
            rows = cursor.fetchall()
        return [{k: v for k, v in zip(names, row, strict=True) if k != "id"} for row in rows]

    assert raw(prepared) == raw(core)
    assert len(raw(prepared)) == 4
    prepared.close()
    core.close()


def test_remembered_json_texts_never_mix_up_equal_values():
    calls = []

    def serialise(value):
        calls.append(value)
        return json.dumps(value)

    process = remembering_json(serialise)
    assert process(["Wi-Fi", "Thread"]) == process(["Wi-Fi", "Thread"]) == '["Wi-Fi", "Thread"]'
    assert len(calls) == 1  # the second time from memory
    # equal to each other in Python, different in JSON: never remembered
    assert [process([1]), process([1.0]), process([True])] == ["[1]", "[1.0]", "[true]"]
    assert process({"Größe": None}) == process({"Größe": None}) == '{"Gr\\u00f6\\u00dfe": null}'
    assert process({"a": ["nested"]}) == '{"a": ["nested"]}'  # unhashable: serialised each time
    assert process([]) == "[]"
    assert process("text") == '"text"'


# -- where SQLite and PostgreSQL differ: the code makes them behave alike -------------------


def test_a_value_too_long_for_its_column_or_holding_nul_is_rejected_alike(database):
    """PostgreSQL refuses such a value and with it the whole batch; SQLite stored it as is."""
    good = [product(1), product(2)]
    long_vid = product(3, vid="0x" + "F" * 10)
    nul = product(4, description="before\x00after")
    long_url = product(5, url="https://csa-iot.org/csa_product/" + "x" * 600 + "/")
    result = database.run_sync(write_batch, [*good, long_vid, nul, long_url], [], 1, NOW)
    assert (result.new, result.changed) == (2, 0)
    assert dict(result.rejected) == {
        long_vid.url: "vid is 12 characters long, longer than the 8 products.vid holds",
        nul.url: "description contains a NUL character, which PostgreSQL cannot store",
        long_url.url: "url is 633 characters long, longer than the 512 products.url holds",
    }
    assert sorted(row["url"] for row in rows(database, Product)) == [p.url for p in good]

    # a known product whose new page does not fit keeps what was stored
    later = database.run_sync(write_batch, [product(1, pid="0x" + "1" * 9)], [], 2, NOW)
    assert len(later.rejected) == 1
    assert {row["pid"] for row in rows(database, Product)} == {"0x0001", "0x0002"}


def test_run_record_text_is_cut_to_its_column_with_a_warning(database, caplog):
    job = "nightly-" + "j" * 200  # scrapyd job ids are the user's
    run_id = database.run_sync(
        lambda engine: start_run(engine, spider="s", job_id=job, mode="full", settings={}, now=NOW)
    )
    database.run_sync(finish_run, run_id, {"status": "finished", "finish_reason": "r" * 90})
    (run,) = database.run_sync(recent_runs)
    assert run["job_id"] == job[:128]
    assert run["finish_reason"] == "r" * 64
    assert "crawl_runs.job_id: 208 characters cut to 128" in caplog.text
    assert "crawl_runs.finish_reason: 90 characters cut to 64" in caplog.text


def test_a_dead_letter_url_too_long_is_kept_shortened_and_nul_is_replaced(database, caplog):
    long_url = "https://csa-iot.org/" + "x" * 1100
    letters = [
        Letter(long_url, "detail", "server", "HTTP 503", 1, NOW, NOW),
        Letter("https://x/ok", "detail", "server", "bad\x00byte", 1, NOW, NOW),
    ]
    database.run_sync(add_letters, letters, 1)
    with database.engine.connect() as conn:
        stored = conn.execute(text("select url, last_error from dead_letters")).all()
    kept = dict(stored)
    assert kept["https://x/ok"] == "bad\N{REPLACEMENT CHARACTER}byte"
    (long_key,) = [url for url in kept if url != "https://x/ok"]
    assert long_key.startswith(long_url[:900] + "#sha256-")
    assert len(long_key) <= 1024
    why = "url is 1120 characters long, longer than the 1024 dead_letters.url holds"
    assert kept[long_key] == f"URL shortened ({why}); HTTP 503"
    assert "Dead letter kept under a shortened URL: https://csa-iot.org/xxx" in caplog.text


def test_the_insert_of_a_product_another_writer_stored_meanwhile_updates_it(database):
    """The prepared INSERT's ON CONFLICT branch (SQLite's and PostgreSQL's)."""
    database.run_sync(write_batch, [product(1)], [], 1, NOW)
    later = NOW + timedelta(hours=2)
    row = product_row(product(1, firmware_version="9.9"))
    seen = {
        "last_seen_at": later,
        "last_fetched_at": later,
        "last_seen_run_id": 2,
        "last_fetched_run_id": 2,
        "delisted_at": None,
    }

    def insert_as_new(engine):  # what a batch does with a product it believed new
        with engine.begin() as conn:
            return _statements(conn.dialect).insert_new.execute(
                conn, [row], {**seen, "first_seen_at": later, "first_seen_run_id": 2}
            )

    assert database.run_sync(insert_as_new) == 1
    (stored,) = rows(database, Product)
    assert stored["firmware_version"] == "9.9"
    assert (stored["first_seen_at"], stored["first_seen_run_id"]) == (NOW, 1)  # kept
    assert (stored["last_seen_at"], stored["last_fetched_run_id"]) == (later, 2)


def test_rowcounts_of_batched_updates_count_the_rows_touched(database):
    database.run_sync(write_batch, [product(1), product(2), product(3)], [], 1, NOW)
    sightings = [
        ListingSighting(url, None, None, None, 1)
        for url in (product(1).url, product(2).url, product(3).url, "https://x/unknown")
    ]

    def sight(engine):
        with engine.begin() as conn:
            return record_sightings(conn, sightings, 2, NOW)

    assert database.run_sync(sight) == 3
    assert database.run_sync(resolve_letters, ["https://x/none", "https://x/other"], 2, NOW) == 0
    urls = [product(n).url for n in (1, 2, 3)]
    assert database.run_sync(delist_proven, urls, 3, NOW) == 3


def test_times_are_utc_whatever_the_database_time_zone(database, database_backend):
    """Columns are TIMESTAMP WITHOUT TIME ZONE holding UTC: the session's zone changes nothing."""
    if database_backend == "postgresql":
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            name = conn.execute(text("select current_database()")).scalar()
            conn.execute(text(f"alter database \"{name}\" set timezone to 'Pacific/Chatham'"))
        database.engine.dispose()  # new sessions take the zone
        with database.engine.connect() as conn:
            assert conn.execute(text("show timezone")).scalar() == "Pacific/Chatham"
    moment = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # a DST change in Europe: nothing here
    chatham = moment.astimezone(timezone(timedelta(hours=13, minutes=45)))
    database.run_sync(write_batch, [product(1)], [], 1, chatham)  # aware, in another zone
    (stored,) = rows(database, Product)
    assert stored["first_seen_at"] == moment
    assert stored["first_seen_at"].tzinfo is UTC
    with database.engine.connect() as conn:
        raw = conn.execute(text("select first_seen_at from products")).scalar()
    raw = datetime.fromisoformat(raw) if isinstance(raw, str) else raw  # SQLite: text
    assert raw == moment.replace(tzinfo=None)  # UTC wall time, no offset
    with pytest.raises(ValueError, match="naive datetime"):
        database.run_sync(write_batch, [product(2)], [], 1, datetime(2026, 1, 1))
