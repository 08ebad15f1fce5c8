"""DCL records through the store: upserts per kind, change history, the batch pipeline
(mixed with products), dead letters and validation, on real databases.

Every database test runs on a SQLite file and on a PostgreSQL database (``both_databases``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import pytest_twisted
from scrapy import Spider
from scrapy.exceptions import DropItem
from scrapy.utils.defer import deferred_from_coro
from sqlalchemy import event, select, text

from matter_crawler.dcl.records import KINDS, DclRecord
from matter_crawler.dcl.storage import upsert_dcl_records
from matter_crawler.extensions.dead_letters import DeadLetterStore
from matter_crawler.pipelines.store import BatchStorePipeline, write_batch
from matter_crawler.pipelines.validation import ValidationPipeline
from matter_crawler.signals import batch_stored, request_dead_lettered
from matter_crawler.storage import Database
from matter_crawler.storage.models import Base, DclChange, Product

from ..helpers import project_crawler
from .test_storage import product

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DCL = "https://on.dcl.csa-iot.org"
BIG = 2**32 - 1  # a uint32 above 2**31: an INTEGER overflow on PostgreSQL


def vendor(vid: int = 4660, **changes) -> DclRecord:
    values = {
        "vid": vid,
        "vendor_name": "Acme",
        "company_legal_name": "Acme Corporation",
        "company_preferred_name": "Acme",
        "vendor_landing_page_url": "https://acme.example",
        "creator": "cosmos1acme",
        "schema_version": 0,
    }
    return DclRecord("vendor", {**values, **changes}, f"{DCL}/dcl/vendorinfo/vendors/{vid}")


HISTORY = [
    {
        "softwareVersionCertificationStatus": 1,
        "date": "2024-01-02T00:00:00Z",
        "reason": "provisional, «ünïcode»",
        "cDVersionNumber": 1,
        "schemaVersion": 0,
    }
]


def compliance(pid: int = 1, software_version: int = 1, **changes) -> DclRecord:
    values = {
        "vid": 4660,
        "pid": pid,
        "software_version": software_version,
        "certification_type": "matter",
        "software_version_string": "1.0",
        "cd_version_number": 1,
        "status": 2,
        "date": "2024-03-04T00:00:00Z",
        "reason": "",
        "owner": "cosmos1owner",
        "history": HISTORY,
        "cd_certificate_id": "CSA24001MAT40001-24",
        "certification_route": "",
        "program_type": "Matter",
        "program_type_version": "1.2",
        "compliant_platform_used": "",
        "compliant_platform_version": "",
        "transport": "Wi-Fi",
        "family_id": "",
        "supported_clusters": "",
        "os_version": "",
        "parent_child": "",
        "certification_id_of_software_component": "",
        "schema_version": 0,
        "specification_version": 0,
    }
    values.update(changes)
    path = "/".join(str(values[c]) for c in KINDS["compliance"].key)
    return DclRecord("compliance", values, f"{DCL}/dcl/compliance/compliance-info/{path}")


def certified(pid: int, software_version: int = 1, **changes) -> DclRecord:
    """A certified-models entry: its URL is the list page's, shared by its neighbours."""
    values = {
        "list": "certified",
        "vid": 4660,
        "pid": pid,
        "software_version": software_version,
        "certification_type": "matter",
        "value": True,
        "schema_version": 0,
    }
    return DclRecord(
        "model_status", {**values, **changes}, f"{DCL}/dcl/compliance/certified-models"
    )


def model_version(software_version: int = BIG, **changes) -> DclRecord:
    values = {
        "vid": 4660,
        "pid": 1,
        "software_version": software_version,
        "software_version_string": "v-max",
        "cd_version_number": 1,
        "firmware_information": "",
        "software_version_valid": True,
        "ota_url": "https://acme.example/ota.bin",
        "ota_file_size": 2**40 + 1,  # uint64
        "ota_checksum": "abc=",
        "ota_checksum_type": 1,
        "min_applicable_software_version": 2**31,
        "max_applicable_software_version": BIG,
        "release_notes_url": "",
        "creator": "cosmos1acme",
        "schema_version": 0,
        "specification_version": 0,
    }
    return DclRecord(
        "model_version",
        {**values, **changes},
        f"{DCL}/dcl/model/versions/4660/1/{software_version}",
    )


@pytest.fixture
def database(database_url):
    db = Database(database_url)
    yield db
    db.close()


def rows(database: Database, table_name: str) -> list[dict]:
    table = Base.metadata.tables[table_name]
    with database.engine.connect() as conn:
        return [row._asdict() for row in conn.execute(select(table))]


def changes(database: Database) -> list[tuple]:
    return sorted(
        (c["table_name"], c["record_key"], c["field"], c["old_value"], c["new_value"], c["run_id"])
        for c in rows(database, DclChange.__tablename__)
    )


# -- the upsert -------------------------------------------------------------------------------


def test_records_are_inserted_then_an_unchanged_reread_refreshes_only_last_seen(database):
    first = database.run_sync(write_batch, [vendor(), compliance(), certified(1)], [], 1, NOW)
    assert (first.dcl.new, first.dcl.changed, first.dcl.unchanged) == (3, 0, 0)
    assert (first.new, first.changed, first.unchanged) == (0, 0, 0)  # no products
    (stored,) = rows(database, "dcl_vendors")
    assert {k: stored[k] for k in vendor().values} == vendor().values
    assert (stored["first_seen_at"], stored["last_seen_at"]) == (NOW, NOW)
    assert (stored["first_seen_run_id"], stored["last_seen_run_id"]) == (1, 1)
    assert rows(database, "dcl_model_statuses")[0]["value"] is True

    later = NOW + timedelta(days=1)
    again = database.run_sync(write_batch, [vendor(), compliance(), certified(1)], [], 2, later)
    assert (again.dcl.new, again.dcl.changed, again.dcl.unchanged) == (0, 0, 3)
    assert again.dcl.changes == []
    for table in ("dcl_vendors", "dcl_compliance", "dcl_model_statuses"):
        (row,) = rows(database, table)
        assert (row["first_seen_at"], row["first_seen_run_id"]) == (NOW, 1)
        assert (row["last_seen_at"], row["last_seen_run_id"]) == (later, 2)
    assert changes(database) == []


def test_a_changed_field_makes_exactly_one_change_row(database):
    database.run_sync(write_batch, [compliance(), compliance(pid=2)], [], 1, NOW)
    revised = compliance(date="2024-05-06T00:00:00Z")
    later = NOW + timedelta(hours=3)
    result = database.run_sync(write_batch, [revised, compliance(pid=2)], [], 2, later)
    assert (result.dcl.new, result.dcl.changed, result.dcl.unchanged) == (0, 1, 1)
    assert result.dcl.changes == [(revised.url, "date")]
    assert changes(database) == [
        (
            "dcl_compliance",
            "4660/1/1/matter",
            "date",
            '"2024-03-04T00:00:00Z"',
            '"2024-05-06T00:00:00Z"',
            2,
        )
    ]
    (change,) = rows(database, DclChange.__tablename__)
    assert change["changed_at"] == later
    stored = {row["pid"]: row for row in rows(database, "dcl_compliance")}
    assert stored[1]["date"] == "2024-05-06T00:00:00Z"
    assert (stored[1]["first_seen_run_id"], stored[1]["last_seen_run_id"]) == (1, 2)


def test_uint32_values_above_2_31_and_uint64_round_trip(database):
    record = model_version()
    status = certified(7, software_version=BIG)
    result = database.run_sync(write_batch, [record, status], [], 1, NOW)
    assert result.dcl.new == 2
    (stored,) = rows(database, "dcl_model_versions")
    assert {k: stored[k] for k in record.values} == record.values
    assert rows(database, "dcl_model_statuses")[0]["software_version"] == BIG
    # found again by its big key: unchanged, not inserted twice
    again = database.run_sync(write_batch, [record, status], [], 2, NOW)
    assert (again.dcl.new, again.dcl.unchanged) == (0, 2)
    bigger = replace(record, values={**record.values, "max_applicable_software_version": BIG - 1})
    database.run_sync(write_batch, [bigger], [], 3, NOW)
    assert changes(database) == [
        (
            "dcl_model_versions",
            f"4660/1/{BIG}",
            "max_applicable_software_version",
            str(BIG),
            str(BIG - 1),
            3,
        )
    ]


def test_history_is_stored_as_json_and_read_back_equal(database):
    database.run_sync(write_batch, [compliance()], [], 1, NOW)
    assert rows(database, "dcl_compliance")[0]["history"] == HISTORY
    again = database.run_sync(write_batch, [compliance()], [], 2, NOW)
    assert again.dcl.unchanged == 1  # the JSON read back compares equal
    longer = [*HISTORY, {"softwareVersionCertificationStatus": 2, "date": "2024-03-04"}]
    database.run_sync(write_batch, [compliance(history=longer)], [], 3, NOW)
    assert rows(database, "dcl_compliance")[0]["history"] == longer
    ((_, _, field, old, new, _),) = changes(database)
    assert field == "history"
    assert (json.loads(old), json.loads(new)) == (HISTORY, longer)


def test_the_last_record_of_a_key_in_a_batch_wins(database):
    batch = [vendor(vendor_name="First"), vendor(vendor_name="Second"), vendor(vid=1)]
    result = database.run_sync(write_batch, batch, [], 1, NOW)
    assert result.dcl.new == 2
    names = {row["vid"]: row["vendor_name"] for row in rows(database, "dcl_vendors")}
    assert names == {4660: "Second", 1: "Acme"}


def test_many_keys_are_read_in_chunks(database):
    """More keys than one read takes (500 parameters: 100 five-column keys)."""
    batch = [certified(pid) for pid in range(1, 251)]
    assert database.run_sync(write_batch, batch, [], 1, NOW).dcl.new == 250
    batch[200] = certified(201, value=False)
    result = database.run_sync(write_batch, batch, [], 2, NOW)
    assert (result.dcl.new, result.dcl.changed, result.dcl.unchanged) == (0, 1, 249)


def test_a_value_too_long_for_its_column_is_rejected_not_written(database):
    long_type = compliance(pid=2, certification_type="m" * 65)
    nul = vendor(vendor_name="Ac\x00me")

    def upsert(engine):
        with engine.begin() as conn:
            return upsert_dcl_records(conn, [compliance(), long_type, nul], 1, NOW)

    result = database.run_sync(upsert)
    assert result.new == 1
    assert dict(result.rejected) == {
        long_type.url: f"compliance 4660/2/1/{'m' * 65}: certification_type is 65 characters "
        "long, longer than the 64 dcl_compliance.certification_type holds",
        nul.url: "vendor 4660: vendor_name contains a NUL character, which PostgreSQL cannot store",
    }
    assert [row["pid"] for row in rows(database, "dcl_compliance")] == [1]
    assert rows(database, "dcl_vendors") == []


# -- the batch store pipeline ------------------------------------------------------------------


class Store:
    """The batch store and the dead-letter store on the project's defaults, a real database."""

    def __init__(self, database_url: str, **settings) -> None:
        self.crawler = project_crawler(
            Spider, {"DATABASE_URL": database_url, "STORE_FLUSH_INTERVAL": 0, **settings}
        )
        self.crawler.stats.open_spider()
        self.pipeline = BatchStorePipeline.from_crawler(self.crawler)
        self.letters = DeadLetterStore.from_crawler(self.crawler)
        self.database = Database.from_crawler(self.crawler)
        self.sent: list[dict] = []
        self.stored_urls: list[str] = []
        self.commits = 0
        self.crawler.signals.connect(self._letter, signal=request_dead_lettered)
        self.crawler.signals.connect(self._stored, signal=batch_stored)
        event.listen(self.database.engine, "commit", self._committed)

    def _letter(self, **letter) -> None:
        self.sent.append(letter)

    def _stored(self, urls, **_) -> None:
        self.stored_urls.extend(urls)

    def _committed(self, _conn) -> None:
        self.commits += 1

    async def run(self, items) -> None:
        await self.letters.spider_opened()
        self.pipeline.open_spider()
        for item in items:
            await self.pipeline.process_item(item)
        await self.pipeline.close_spider()
        await self.letters.spider_closed()

    def stat(self, name: str) -> int:
        return self.crawler.stats.get_value(name, 0)

    def dead_letters(self) -> list[tuple]:
        with self.database.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    text("select url, stage, failure_class, last_error from dead_letters")
                )
            ]


def where(letter: dict) -> tuple[str, str, str]:
    """A sent dead letter's URL, stage and failure class."""
    return letter["url"], letter["stage"], letter["failure_class"]


def as_task(coroutine_function):
    """Run an async test as Scrapy runs pipeline coroutines: an asyncio task."""

    @pytest_twisted.ensureDeferred
    async def test(database_url):
        await deferred_from_coro(coroutine_function(database_url))

    test.__name__ = coroutine_function.__name__
    return test


@as_task
async def test_a_batch_mixing_products_and_dcl_records_is_one_transaction(database_url):
    store = Store(database_url)
    items = [product(1), vendor(), certified(1), certified(2), product(2), compliance()]
    await store.run(items)
    assert store.stat("store/batches") == 1
    assert store.commits == 1
    assert store.stat("store/products_new") == 2
    assert store.stat("store/dcl_records_new") == 4
    assert store.stat("store/dcl_records_unchanged") == 0
    assert sorted(store.stored_urls) == sorted({item.url for item in items})
    with store.database.engine.connect() as conn:
        assert conn.execute(select(Product.url)).scalars().all() != []
        assert conn.execute(text("select count(*) from dcl_model_statuses")).scalar() == 2

    later = Store(database_url)
    await later.run([product(1), vendor(vendor_name="Acme Inc."), certified(1), certified(2)])
    assert later.stat("store/products_unchanged") == 1
    assert later.stat("store/dcl_records_changed") == 1
    assert later.stat("store/dcl_records_unchanged") == 2
    store.database.close()
    later.database.close()


@as_task
async def test_a_record_a_column_cannot_hold_is_dead_lettered_and_the_rest_stored(database_url):
    store = Store(database_url)
    too_long = compliance(pid=2, certification_type="x" * 70)
    await store.run([product(1), compliance(), too_long, vendor()])
    assert store.stat("store/dcl_records_rejected") == 1
    assert store.stat("store/dcl_records_new") == 2
    assert store.stat("store/products_new") == 1
    assert store.stat("store/batches_lost") == 0
    reason = (
        f"compliance 4660/2/1/{'x' * 70}: certification_type is 70 characters long, "
        "longer than the 64 dcl_compliance.certification_type holds"
    )
    (letter,) = store.sent
    assert where(letter) == (too_long.url, "dcl", "invalid")
    assert letter["reason"] == reason
    assert store.dead_letters() == [(too_long.url, "dcl", "invalid", reason)]
    assert too_long.url not in store.stored_urls
    store.database.close()


@as_task
async def test_a_record_the_database_refuses_is_isolated_and_dead_lettered(database_url):
    """A NOT NULL column given None (validation would have refused it): the batch is
    written record by record; the refused record's letter is ``storage`` at stage ``dcl``,
    and its page's URL, shared by a record that was stored, is not reported stored."""
    store = Store(database_url)
    refused = certified(2, schema_version=None)
    await store.run([product(1), certified(1), refused, vendor()])
    assert store.stat("store/batches_isolated") == 1
    assert store.stat("store/dcl_records_failed") == 1
    assert store.stat("store/products_failed") == 0
    assert store.stat("store/dcl_records_new") == 2  # certified(1) and the vendor
    assert store.stat("store/products_new") == 1
    assert store.stat("store/batches_lost") == 0
    ((url, stage, failure_class, reason),) = store.dead_letters()
    assert (url, stage, failure_class) == (refused.url, "dcl", "storage")
    assert reason.startswith("the database refused the model_status record certified/4660/2/1/")
    assert sorted(store.stored_urls) == sorted([product(1).url, vendor().url])
    store.database.close()


# -- validation ---------------------------------------------------------------------------------


def validation():
    crawler = project_crawler(Spider)
    crawler.stats.open_spider()
    letters: list[dict] = []

    def received(**letter) -> None:
        letters.append(letter)

    crawler.signals.connect(received, signal=request_dead_lettered, weak=False)
    return ValidationPipeline.from_crawler(crawler), crawler, letters


def test_valid_records_pass_validation_untouched():
    pipeline, crawler, letters = validation()
    for record in (vendor(), compliance(), certified(1), model_version()):
        assert pipeline.process_item(record) is record
    assert crawler.stats.get_value("validation/invalid") is None
    assert letters == []


def with_value(record: DclRecord, column: str, value) -> DclRecord:
    return replace(record, values={**record.values, column: value})


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (with_value(vendor(), "vid", "4660"), "vid '4660' is not a whole number from -2**31"),
        (with_value(vendor(), "vid", True), "vid True is not a whole number"),
        (with_value(vendor(), "vid", 2**31), "vid 2147483648 is not a whole number"),
        (with_value(compliance(), "status", -1), "status -1 is not a whole number from 0 to"),
        (with_value(compliance(), "software_version", 2**32), "is not a whole number from 0"),
        (with_value(model_version(), "ota_file_size", 2**63), "ota_file_size 9223372036854775808"),
        (with_value(vendor(), "vendor_name", 7), "vendor_name 7 is not a string (string)"),
        (with_value(certified(1), "value", 1), "value 1 is not a bool (bool)"),
        (with_value(compliance(), "history", "[]"), "history '[]' is not a list of objects"),
        (with_value(compliance(), "history", [1]), "history [1] is not a list of objects"),
        (with_value(compliance(), "pid", None), "pid is missing"),
        (replace(vendor(), values={"vid": 1}), "vendor_name is missing"),
        (replace(vendor(), problems=["vendorID: 'x' is not a number"]), "vendorID: 'x' is not"),
        (replace(vendor(), kind="unknown"), "kind 'unknown' is not a DCL record kind"),
    ],
)
def test_validation_refuses_a_record_of_the_wrong_shape(record, reason):
    pipeline, crawler, letters = validation()
    with pytest.raises(DropItem, match="invalid DCL record"):
        pipeline.process_item(record)
    assert crawler.stats.get_value("validation/invalid") == 1
    (letter,) = letters
    assert where(letter) == (record.url, "dcl", "invalid")
    assert reason in letter["reason"]
