"""The database schema (SQLAlchemy 2 declarative models).

- ``products``: one row per product URL, columns named after the catalogue
  record's fields; lists and unknown labels as JSON text; first/last seen times.
- ``product_changes``: one row per changed field when a product is fetched again
  and differs from what was stored (old and new value as JSON text).
- ``crawl_runs``: one row per run, written at start and at close, never per page.
- ``dead_letters``: requests that failed for good, with their reason, until a
  later run succeeds on them.
- ``crawl_locks``: the crawl writing to the database now (one row while a crawl
  runs; see :mod:`matter_crawler.storage.lock`).
- ``dcl_vendors``, ``dcl_models``, ``dcl_model_versions``, ``dcl_compliance``,
  ``dcl_model_statuses``: the Distributed Compliance Ledger's records as the ``dcl``
  spider read them, a column per field of the ledger's message
  (:mod:`matter_crawler.dcl.records`), with first/last seen times and runs.
- ``dcl_changes``: one row per changed field of a DCL record fetched again.
- ``crosscheck_runs`` and ``crosscheck_findings``: each cross-check of the catalogue
  with the DCL, and the findings it made (so a finding's first and last
  appearance are known).

Times are stored as naive UTC (SQLite has no time zones) and read back as
aware UTC datetimes (:class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(512), unique=True)
    manufacturer: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    device_type: Mapped[str | None] = mapped_column(Text)
    certificate_id: Mapped[str | None] = mapped_column(String(64), index=True)
    certification_date: Mapped[date | None] = mapped_column(Date)
    software_version: Mapped[str | None] = mapped_column(Text)
    hardware_version: Mapped[str | None] = mapped_column(Text)
    firmware_version: Mapped[str | None] = mapped_column(Text)
    vid: Mapped[str | None] = mapped_column(String(8))
    vid_int: Mapped[int | None] = mapped_column(Integer, index=True)
    pid: Mapped[str | None] = mapped_column(String(8))
    pid_int: Mapped[int | None] = mapped_column(Integer)
    family_id: Mapped[str | None] = mapped_column(Text)
    family_sku: Mapped[str | None] = mapped_column(Text)
    family_variant_sku: Mapped[str | None] = mapped_column(Text)
    tis_trp_tested: Mapped[bool | None] = mapped_column(Boolean)
    specification_version: Mapped[str | None] = mapped_column(String(16))
    transport_interface: Mapped[list[str]] = mapped_column(JSON, default=list)
    primary_device_type_id: Mapped[str | None] = mapped_column(String(8))
    application_categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(Text)
    compliance_document_url: Mapped[str | None] = mapped_column(Text)
    extra_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen_run_id: Mapped[int | None] = mapped_column(Integer)
    last_seen_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    last_fetched_run_id: Mapped[int | None] = mapped_column(Integer)
    delisted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ProductChange(Base):
    __tablename__ = "product_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_url: Mapped[str] = mapped_column(String(512), index=True)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)  # JSON
    new_value: Mapped[str | None] = mapped_column(Text)  # JSON
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CrawlRun(Base):
    __tablename__ = "crawl_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spider: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(128))
    mode: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))  # running, finished, stopped, failed
    stage: Mapped[str | None] = mapped_column(String(32))
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    sessions: Mapped[int] = mapped_column(Integer, default=1)  # 1 + number of resumes
    pages_planned: Mapped[int | None] = mapped_column(Integer)
    pages_crawled: Mapped[int] = mapped_column(Integer, default=0)
    products_listed: Mapped[int] = mapped_column(Integer, default=0)
    products_fetched: Mapped[int] = mapped_column(Integer, default=0)
    products_new: Mapped[int] = mapped_column(Integer, default=0)
    products_changed: Mapped[int] = mapped_column(Integer, default=0)
    products_delisted: Mapped[int] = mapped_column(Integer, default=0)
    items_invalid: Mapped[int] = mapped_column(Integer, default=0)
    dead_letters: Mapped[int] = mapped_column(Integer, default=0)
    dead_letters_resolved: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    # a full run's delisting (matter_crawler.planner.DELIST_OUTCOMES): what it did and why;
    # NULL for runs that never delist (incremental, replay, a page range or limit)
    delist_outcome: Mapped[str | None] = mapped_column(String(32))
    # stored products the listing did not show (each confirmed unless there were too many)
    delist_candidates: Mapped[int | None] = mapped_column(Integer)
    # candidates whose page still shows the product: the listing was inconsistent
    delist_still_listed: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(1024), unique=True)
    stage: Mapped[str | None] = mapped_column(String(32))
    failure_class: Mapped[str] = mapped_column(String(32))
    last_error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    resolved_run_id: Mapped[int | None] = mapped_column(Integer)


class CrawlLock(Base):
    """Who holds a lock on the database: one row per lock name while a crawl holds it."""

    __tablename__ = "crawl_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))  # the holder's own random id
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    # what the OS said of the holder's start (tells a reused pid from the holder)
    process_started: Mapped[str | None] = mapped_column(String(128))
    run_id: Mapped[int | None] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- the Distributed Compliance Ledger (matter_crawler.dcl.records says which field is which)
# uint32 values (software versions above 2**31 are common) need BigInteger on PostgreSQL.


class _DclTracked:
    """When and in which run a DCL record was first and last read."""

    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen_run_id: Mapped[int | None] = mapped_column(Integer)
    last_seen_run_id: Mapped[int | None] = mapped_column(Integer, index=True)


class DclVendor(_DclTracked, Base):
    __tablename__ = "dcl_vendors"

    vid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    vendor_name: Mapped[str] = mapped_column(Text)
    company_legal_name: Mapped[str] = mapped_column(Text)
    company_preferred_name: Mapped[str] = mapped_column(Text)
    vendor_landing_page_url: Mapped[str] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(Text)
    schema_version: Mapped[int] = mapped_column(BigInteger)


class DclModel(_DclTracked, Base):
    __tablename__ = "dcl_models"

    vid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    device_type_id: Mapped[int] = mapped_column(Integer)
    product_name: Mapped[str] = mapped_column(Text)
    product_label: Mapped[str] = mapped_column(Text)
    part_number: Mapped[str] = mapped_column(Text)
    commissioning_custom_flow: Mapped[int] = mapped_column(Integer)
    commissioning_custom_flow_url: Mapped[str] = mapped_column(Text)
    commissioning_mode_initial_steps_hint: Mapped[int] = mapped_column(BigInteger)
    commissioning_mode_initial_steps_instruction: Mapped[str] = mapped_column(Text)
    commissioning_mode_secondary_steps_hint: Mapped[int] = mapped_column(BigInteger)
    commissioning_mode_secondary_steps_instruction: Mapped[str] = mapped_column(Text)
    user_manual_url: Mapped[str] = mapped_column(Text)
    support_url: Mapped[str] = mapped_column(Text)
    product_url: Mapped[str] = mapped_column(Text)
    lsf_url: Mapped[str] = mapped_column(Text)
    lsf_revision: Mapped[int] = mapped_column(Integer)
    creator: Mapped[str] = mapped_column(Text)
    schema_version: Mapped[int] = mapped_column(BigInteger)
    enhanced_setup_flow_options: Mapped[int] = mapped_column(Integer)
    enhanced_setup_flow_tc_url: Mapped[str] = mapped_column(Text)
    enhanced_setup_flow_tc_revision: Mapped[int] = mapped_column(Integer)
    enhanced_setup_flow_tc_digest: Mapped[str] = mapped_column(Text)
    enhanced_setup_flow_tc_file_size: Mapped[int] = mapped_column(BigInteger)
    maintenance_url: Mapped[str] = mapped_column(Text)
    discovery_capabilities_bitmask: Mapped[int] = mapped_column(BigInteger)
    commissioning_fallback_url: Mapped[str] = mapped_column(Text)
    icd_user_active_mode_trigger_hint: Mapped[int] = mapped_column(BigInteger)
    icd_user_active_mode_trigger_instruction: Mapped[str] = mapped_column(Text)
    factory_reset_steps_hint: Mapped[int] = mapped_column(BigInteger)
    factory_reset_steps_instruction: Mapped[str] = mapped_column(Text)


class DclModelVersion(_DclTracked, Base):
    __tablename__ = "dcl_model_versions"

    vid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    software_version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    software_version_string: Mapped[str] = mapped_column(Text)
    cd_version_number: Mapped[int] = mapped_column(Integer)
    firmware_information: Mapped[str] = mapped_column(Text)
    software_version_valid: Mapped[bool] = mapped_column(Boolean)
    ota_url: Mapped[str] = mapped_column(Text)
    ota_file_size: Mapped[int] = mapped_column(BigInteger)  # uint64: JSON string on the wire
    ota_checksum: Mapped[str] = mapped_column(Text)
    ota_checksum_type: Mapped[int] = mapped_column(Integer)
    min_applicable_software_version: Mapped[int] = mapped_column(BigInteger)
    max_applicable_software_version: Mapped[int] = mapped_column(BigInteger)
    release_notes_url: Mapped[str] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(Text)
    schema_version: Mapped[int] = mapped_column(BigInteger)
    specification_version: Mapped[int] = mapped_column(BigInteger)


class DclCompliance(_DclTracked, Base):
    __tablename__ = "dcl_compliance"

    vid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    software_version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    certification_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    software_version_string: Mapped[str] = mapped_column(Text)
    cd_version_number: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(BigInteger)  # 1 provisional, 2 certified, 3 revoked
    date: Mapped[str] = mapped_column(Text)  # RFC 3339, as the ledger states it
    reason: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    cd_certificate_id: Mapped[str] = mapped_column(String(64), index=True)
    certification_route: Mapped[str] = mapped_column(Text)
    program_type: Mapped[str] = mapped_column(Text)
    program_type_version: Mapped[str] = mapped_column(Text)
    compliant_platform_used: Mapped[str] = mapped_column(Text)
    compliant_platform_version: Mapped[str] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(Text)
    family_id: Mapped[str] = mapped_column(Text)
    supported_clusters: Mapped[str] = mapped_column(Text)
    os_version: Mapped[str] = mapped_column(Text)
    parent_child: Mapped[str] = mapped_column(Text)
    certification_id_of_software_component: Mapped[str] = mapped_column(Text)
    schema_version: Mapped[int] = mapped_column(BigInteger)
    specification_version: Mapped[int] = mapped_column(BigInteger)


class DclModelStatus(_DclTracked, Base):
    """An entry of the certified, provisional or revoked model list (``list``)."""

    __tablename__ = "dcl_model_statuses"

    list: Mapped[str] = mapped_column(String(16), primary_key=True)
    vid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    software_version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    certification_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bool] = mapped_column(Boolean)
    schema_version: Mapped[int] = mapped_column(BigInteger)


class DclChange(Base):
    """A changed field of a DCL record (``record_key``: its key columns joined by ``/``)."""

    __tablename__ = "dcl_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_name: Mapped[str] = mapped_column(String(32))
    record_key: Mapped[str] = mapped_column(String(128), index=True)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)  # JSON
    new_value: Mapped[str | None] = mapped_column(Text)  # JSON
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CrosscheckRun(Base):
    """One cross-check of the catalogue with the DCL (``scrapy crosscheck``)."""

    __tablename__ = "crosscheck_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    products: Mapped[int] = mapped_column(Integer)  # catalogue products compared
    consistent: Mapped[int] = mapped_column(Integer)  # products without a finding
    findings: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per class and field


class CrosscheckFinding(Base):
    """A finding of one cross-check; ``fingerprint`` names the same finding across checks."""

    __tablename__ = "crosscheck_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check_id: Mapped[int] = mapped_column(Integer, index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    finding_class: Mapped[str] = mapped_column(String(32))
    vid: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int] = mapped_column(Integer)
    certificate_id: Mapped[str | None] = mapped_column(String(64))
    field: Mapped[str | None] = mapped_column(String(32))
    catalogue_value: Mapped[str | None] = mapped_column(Text)  # JSON
    dcl_value: Mapped[str | None] = mapped_column(Text)  # JSON
    product_url: Mapped[str | None] = mapped_column(String(512))
