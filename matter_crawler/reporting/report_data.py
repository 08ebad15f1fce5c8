"""The report's numbers, read from the database into plain values.

Every chart counts the **listed** products (``delisted_at`` null) by their
certification date, within ``since``/``until`` when given (dates, inclusive);
products without a certification date are in the totals only. A product with
several transports counts once for each. The crawl history and the cross-checks
are filtered by their start and check times the same way.

Each query groups in the database (a product count per certification date and
value), so the work in Python is proportional to the distinct dates, not to the
products: a 100,000-product database takes well under a second.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, String, cast, func, inspect, select

from ..storage.models import CrawlRun, CrosscheckRun, DeadLetter, Product

products = Product.__table__
runs = CrawlRun.__table__
letters = DeadLetter.__table__
checks = CrosscheckRun.__table__

#: Device types (as the catalogue names them) in the report's groups; any other is "Other".
DEVICE_GROUPS = {
    "Lighting": ("Light Bulb", "Lighting", "Light", "Dimmable Light", "Color Light"),
    "Plugs and switches": ("Smart Plug", "Switch", "Outlet", "Generic Switch", "Dimmer Switch"),
    "Sensors and alarms": ("Sensor", "Smoke & CO Alarm", "Contact Sensor", "Motion Sensor"),
    "Climate": ("Thermostat", "Air Conditioner", "Climate", "Fan", "Air Purifier", "Heat Pump"),
    "Locks and coverings": ("Door Lock", "Window Covering", "Garage Door"),
    "Bridges and routers": ("Bridge", "Thread Border Router", "Aggregator"),
    "Appliances and energy": (
        "Appliance",
        "Robotic Vacuum Cleaner",
        "Water Management",
        "Energy Management",
        "Speaker",
    ),
}
GROUP_OF = {name.lower(): group for group, names in DEVICE_GROUPS.items() for name in names}
GROUPS = (*DEVICE_GROUPS, "Other")
#: Transports shown in their own line; any other is "Other", none is "None stated".
TRANSPORTS = ("Thread", "Wi-Fi", "Ethernet", "Bluetooth")
TOP_VENDORS = 15
NEWEST = 25
RUNS_SHOWN = 100
CHECKS_SHOWN = 10


def device_group(device_type: str | None) -> str:
    return GROUP_OF.get((device_type or "").strip().lower(), "Other")


def transport_name(value: str) -> str:
    folded = value.strip().lower().replace("-", "").replace(" ", "")
    for name in TRANSPORTS:
        if folded == name.lower().replace("-", ""):
            return name
    return "Other"


def month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def quarter(day: date) -> str:
    return f"{day.year} Q{(day.month - 1) // 3 + 1}"


def months_between(first: date, last: date) -> list[str]:
    """Every month from ``first`` to ``last`` (gaps shown as empty months, not skipped)."""
    names, year, number = [], first.year, first.month
    while (year, number) <= (last.year, last.month):
        names.append(f"{year:04d}-{number:02d}")
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return names


def quarters_between(first: date, last: date) -> list[str]:
    names = []
    for year in range(first.year, last.year + 1):
        for number in range(1, 5):
            if (year, number) < (first.year, (first.month - 1) // 3 + 1):
                continue
            if (year, number) > (last.year, (last.month - 1) // 3 + 1):
                continue
            names.append(f"{year} Q{number}")
    return names


def spec_key(version: str) -> tuple[Any, ...]:
    """``1.10`` after ``1.9``: compare versions by their numbers."""
    parts = []
    for part in version.split("."):
        parts.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return tuple(parts)


@dataclass
class ReportData:
    generated_at: datetime
    since: date | None
    until: date | None
    totals: dict[str, int] = field(default_factory=dict)
    months: list[str] = field(default_factory=list)
    per_month: dict[str, list[int]] = field(default_factory=dict)  # group -> counts by month
    vendors_all: list[tuple[str, int]] = field(default_factory=list)
    vendors_recent: list[tuple[str, int]] = field(default_factory=list)
    recent_from: date | None = None
    quarters: list[str] = field(default_factory=list)
    quarter_totals: list[int] = field(default_factory=list)
    transports: dict[str, list[int]] = field(default_factory=dict)  # name -> products by quarter
    specs: dict[str, list[int]] = field(default_factory=dict)  # version -> products by quarter
    newest: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    run_totals: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)


def _listed(since: date | None, until: date | None) -> list[Any]:
    conditions = [products.c.delisted_at.is_(None)]
    if since is not None:
        conditions.append(products.c.certification_date >= since)
    if until is not None:
        conditions.append(products.c.certification_date <= until)
    return conditions


def _moment(day: date, end: bool = False) -> datetime:
    moment = datetime.combine(day, time.min, tzinfo=UTC)
    return moment + timedelta(days=1) if end else moment


def read_report(
    engine: Engine,
    since: date | None = None,
    until: date | None = None,
    now: datetime | None = None,
) -> ReportData:
    now = now or datetime.now(UTC)
    data = ReportData(generated_at=now, since=since, until=until)
    with engine.connect() as conn:
        _products(conn, data)
        _runs(conn, data)
        if inspect(conn).has_table("crosscheck_runs"):
            _checks(conn, data)
    return data


def _products(conn: Connection, data: ReportData) -> None:
    listed = _listed(data.since, data.until)
    date_column = products.c.certification_date
    count = func.count().label("n")

    data.totals = {
        "listed": conn.execute(select(func.count()).where(*listed)).scalar_one(),
        "vendors": conn.execute(
            select(func.count(products.c.manufacturer.distinct())).where(*listed)
        ).scalar_one(),
        "delisted": conn.execute(
            select(func.count()).where(products.c.delisted_at.is_not(None))
        ).scalar_one(),
        "all_stored": conn.execute(select(func.count()).select_from(products)).scalar_one(),
        "pending_dead_letters": conn.execute(
            select(func.count()).where(letters.c.resolved_at.is_(None))
        ).scalar_one(),
    }

    by_type = conn.execute(
        select(date_column, products.c.device_type, count)
        .where(*listed, date_column.is_not(None))
        .group_by(date_column, products.c.device_type)
    ).all()
    days = [row[0] for row in by_type]
    if days:
        first, last = min(days), max(days)
        data.months = months_between(first, last)
        data.quarters = quarters_between(first, last)
    month_index = {name: index for index, name in enumerate(data.months)}
    quarter_index = {name: index for index, name in enumerate(data.quarters)}
    per_month = {group: [0] * len(data.months) for group in GROUPS}
    data.quarter_totals = [0] * len(data.quarters)
    for day, device_type, n in by_type:
        per_month[device_group(device_type)][month_index[month(day)]] += n
        data.quarter_totals[quarter_index[quarter(day)]] += n
    data.per_month = {group: counts for group, counts in per_month.items() if any(counts)}

    transports: dict[str, list[int]] = {
        name: [0] * len(data.quarters) for name in (*TRANSPORTS, "Other", "None stated")
    }
    for day, text, n in conn.execute(
        select(date_column, cast(products.c.transport_interface, String), count)
        .where(*listed, date_column.is_not(None))
        .group_by(date_column, cast(products.c.transport_interface, String))
    ):
        names = {transport_name(str(value)) for value in (json.loads(text or "[]") or [])}
        for name in names or {"None stated"}:
            transports[name][quarter_index[quarter(day)]] += n
    data.transports = {name: counts for name, counts in transports.items() if any(counts)}

    specs: dict[str, list[int]] = defaultdict(lambda: [0] * len(data.quarters))
    for day, version, n in conn.execute(
        select(date_column, products.c.specification_version, count)
        .where(*listed, date_column.is_not(None))
        .group_by(date_column, products.c.specification_version)
    ):
        specs[version or "unknown"][quarter_index[quarter(day)]] += n
    data.specs = {
        version: specs[version]
        for version in sorted(specs, key=lambda v: (v == "unknown", spec_key(v)))
    }

    data.vendors_all = _top_vendors(conn, listed)
    recent_end = data.until or data.generated_at.date()
    year_before = recent_end - timedelta(days=365)
    data.recent_from = max(year_before, data.since) if data.since else year_before
    data.vendors_recent = _top_vendors(conn, _listed(data.recent_from, data.until))

    columns = (
        products.c.url,
        products.c.certification_date,
        products.c.manufacturer,
        products.c.model,
        products.c.device_type,
        products.c.certificate_id,
        products.c.vid,
        products.c.pid,
        products.c.transport_interface,
        products.c.specification_version,
        products.c.first_seen_at,
    )
    data.newest = [
        row._asdict()
        for row in conn.execute(
            select(*columns)
            .where(*listed, date_column.is_not(None))
            .order_by(date_column.desc(), products.c.id.desc())
            .limit(NEWEST)
        )
    ]


def _top_vendors(conn: Connection, conditions: list[Any]) -> list[tuple[str, int]]:
    vendor = products.c.manufacturer
    rows = conn.execute(
        select(vendor, func.count().label("n"))
        .where(*conditions, vendor.is_not(None))
        .group_by(vendor)
        .order_by(func.count().desc(), vendor)
        .limit(TOP_VENDORS)
    ).all()
    return [(name, n) for name, n in rows]


def _runs(conn: Connection, data: ReportData) -> None:
    conditions = []
    if data.since is not None:
        conditions.append(runs.c.started_at >= _moment(data.since))
    if data.until is not None:
        conditions.append(runs.c.started_at < _moment(data.until, end=True))
    columns = (
        runs.c.id,
        runs.c.spider,
        runs.c.mode,
        runs.c.status,
        runs.c.stage,
        runs.c.started_at,
        runs.c.duration_seconds,
        runs.c.pages_crawled,
        runs.c.requests,
        runs.c.products_new,
        runs.c.products_changed,
        runs.c.products_delisted,
        runs.c.dead_letters,
        runs.c.errors,
    )
    data.runs = [
        row._asdict()
        for row in conn.execute(
            select(*columns).where(*conditions).order_by(runs.c.id.desc()).limit(RUNS_SHOWN)
        )
    ]
    totals = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(runs.c.duration_seconds), 0),
            func.coalesce(func.sum(runs.c.products_new), 0),
            func.coalesce(func.sum(runs.c.products_changed), 0),
            func.coalesce(func.sum(runs.c.products_delisted), 0),
        ).where(*conditions)
    ).one()
    data.run_totals = dict(
        zip(("runs", "duration_seconds", "new", "changed", "delisted"), totals, strict=True)
    )


def _checks(conn: Connection, data: ReportData) -> None:
    conditions = []
    if data.since is not None:
        conditions.append(checks.c.checked_at >= _moment(data.since))
    if data.until is not None:
        conditions.append(checks.c.checked_at < _moment(data.until, end=True))
    data.checks = [
        row._asdict()
        for row in conn.execute(
            select(checks).where(*conditions).order_by(checks.c.id.desc()).limit(CHECKS_SHOWN)
        )
    ]


def class_counts(check: dict[str, Any]) -> Counter[str]:
    """A stored check's findings per class (its ``counts`` JSON)."""
    stored = check.get("counts") or {}
    by_class = stored.get("counts") or {} if isinstance(stored, dict) else {}
    return Counter({str(k): int(v) for k, v in by_class.items() if isinstance(v, int | float)})


def field_counts(check: dict[str, Any]) -> Counter[str]:
    """A stored check's field mismatches per field."""
    stored = check.get("counts") or {}
    by_field = stored.get("field_counts") or {} if isinstance(stored, dict) else {}
    return Counter({str(k): int(v) for k, v in by_field.items() if isinstance(v, int | float)})
