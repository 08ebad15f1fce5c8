"""``scrapy changes``: what one crawl run changed in the database.

- new products: those the run stored first (``first_seen_run_id``);
- changed products: the run's ``product_changes`` rows, field by field, old -> new;
- delisted products: those marked delisted while the run was the latest one
  (``delisted_at`` from the run's start up to the next run's start) and still
  delisted.

Without ``--run`` it shows the latest run, as "what did my last crawl do"; when
that run changed nothing it says so and names the most recent run that did.
Text from the crawled site is printed terminal-safe (control characters escaped).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy import Connection, Engine, and_, distinct, func, select

from ..safe_text import terminal_safe
from ..storage.models import CrawlRun, Product, ProductChange
from ._database import CommandError, DatabaseCommand
from ._text import dumps, table, utc_time

products = Product.__table__
changes = ProductChange.__table__
runs = CrawlRun.__table__


def _run_record(conn: Connection, run_id: int | None) -> dict[str, Any] | None:
    statement = select(runs.c.id, runs.c.mode, runs.c.status, runs.c.started_at, runs.c.finished_at)
    if run_id is None:
        statement = statement.order_by(runs.c.id.desc()).limit(1)
    else:
        statement = statement.where(runs.c.id == run_id)
    row = conn.execute(statement).first()
    return row._asdict() if row is not None else None


def _delisted_condition(conn: Connection, run: dict[str, Any]) -> Any:
    """Products delisted during the run: after its start, before the next run's start."""
    next_start = conn.execute(
        select(runs.c.started_at).where(runs.c.id > run["id"]).order_by(runs.c.id).limit(1)
    ).scalar()
    condition = products.c.delisted_at >= run["started_at"]
    if next_start is not None:
        condition = and_(condition, products.c.delisted_at < next_start)
    return condition


def _product_summary(row: Any) -> dict[str, Any]:
    return {
        "url": row.url,
        "certificate_id": row.certificate_id,
        "manufacturer": row.manufacturer,
        "model": row.model,
    }


def _decoded(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def run_changes(engine: Engine, run_id: int | None, limit: int | None) -> dict[str, Any]:
    """The run's new, changed and delisted products (each list cut at ``limit`` products)."""
    summary_columns = (
        products.c.url,
        products.c.certificate_id,
        products.c.manufacturer,
        products.c.model,
    )
    with engine.connect() as conn:
        run = _run_record(conn, run_id)
        if run is None:
            if run_id is None:
                raise CommandError("no crawl runs recorded yet: run `scrapy crawl matter_products`")
            raise CommandError(f"no run {run_id} (`scrapy runs` lists them)")
        number = run["id"]
        previous = conn.execute(select(func.max(runs.c.id)).where(runs.c.id < number)).scalar()

        new_filter = products.c.first_seen_run_id == number
        new_count = conn.execute(select(func.count()).where(new_filter)).scalar() or 0
        new = conn.execute(
            select(*summary_columns).where(new_filter).order_by(products.c.id).limit(limit)
        ).all()

        changed_count, fields_count = conn.execute(
            select(func.count(distinct(changes.c.product_url)), func.count()).where(
                changes.c.run_id == number
            )
        ).one()
        changed_urls = (
            select(changes.c.product_url.label("url"))
            .distinct()
            .where(changes.c.run_id == number)
            .order_by(changes.c.product_url)
            .limit(limit)
            .subquery()
        )
        change_rows = conn.execute(
            select(
                changes.c.product_url,
                changes.c.field,
                changes.c.old_value,
                changes.c.new_value,
                products.c.certificate_id,
                products.c.manufacturer,
                products.c.model,
            )
            .join(changed_urls, changed_urls.c.url == changes.c.product_url)
            .outerjoin(products, products.c.url == changes.c.product_url)
            .where(changes.c.run_id == number)
            .order_by(changes.c.product_url, changes.c.id)
        ).all()

        delisted_filter = _delisted_condition(conn, run)
        delisted_count = conn.execute(select(func.count()).where(delisted_filter)).scalar() or 0
        delisted = conn.execute(
            select(*summary_columns, products.c.delisted_at)
            .where(delisted_filter)
            .order_by(products.c.id)
            .limit(limit)
        ).all()

        last_with_changes = None
        if not (new_count or changed_count or delisted_count):
            last_with_changes = _last_run_with_changes(conn, number)

    changed: dict[str, dict[str, Any]] = {}
    for row in change_rows:
        entry = changed.setdefault(
            row.product_url,
            {
                "url": row.product_url,
                "certificate_id": row.certificate_id,
                "manufacturer": row.manufacturer,
                "model": row.model,
                "fields": [],
            },
        )
        entry["fields"].append(
            {"field": row.field, "old": _decoded(row.old_value), "new": _decoded(row.new_value)}
        )
    return {
        "run": run,
        "previous_run": previous,
        "new_count": new_count,
        "new": [_product_summary(row) for row in new],
        "changed_count": changed_count,
        "changed_fields_count": fields_count,
        "changed": list(changed.values()),
        "delisted_count": delisted_count,
        "delisted": [{**_product_summary(row), "delisted_at": row.delisted_at} for row in delisted],
        "last_run_with_changes": last_with_changes,
    }


def _last_run_with_changes(conn: Connection, before: int) -> int | None:
    """The newest run before ``before`` that stored, changed or delisted a product."""
    candidates = [
        conn.execute(
            select(func.max(products.c.first_seen_run_id)).where(
                products.c.first_seen_run_id < before
            )
        ).scalar(),
        conn.execute(select(func.max(changes.c.run_id)).where(changes.c.run_id < before)).scalar(),
        conn.execute(
            select(func.max(runs.c.id)).where(runs.c.id < before, runs.c.products_delisted > 0)
        ).scalar(),
    ]
    found = [number for number in candidates if number is not None]
    return max(found) if found else None


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _more(shown: int, total: int) -> list[str]:
    if total > shown:
        return [f"  ... and {total - shown} more (--limit 0 shows all)"]
    return []


def render(report: dict[str, Any]) -> str:
    run = report["run"]
    against = f"against run {report['previous_run']}" if report["previous_run"] else "the first run"
    lines = [
        f"Run {run['id']} ({run['mode'] or '-'}, {run['status']}; started "
        f"{utc_time(run['started_at'])} UTC), {against}:",
        f"  {report['new_count']} new, {report['changed_count']} changed "
        f"({report['changed_fields_count']} fields), {report['delisted_count']} delisted",
    ]
    if report["last_run_with_changes"] is not None:
        number = report["last_run_with_changes"]
        lines.append(
            f"  Nothing changed. The last run that changed something is run {number}: "
            f"scrapy changes --run {number}"
        )
    headers = ("certificate", "manufacturer", "model", "url")

    def summary(item: dict[str, Any]) -> list[Any]:
        return [item["certificate_id"], item["manufacturer"], item["model"], item["url"]]

    if report["new_count"]:
        lines += ["", f"New products ({report['new_count']}):"]
        lines += _indent(table(headers, [summary(item) for item in report["new"]]))
        lines += _more(len(report["new"]), report["new_count"])
    if report["changed_count"]:
        lines += [
            "",
            f"Changed products ({report['changed_count']}, "
            f"{report['changed_fields_count']} fields):",
        ]
        for item in report["changed"]:
            name = " ".join(filter(None, (item["manufacturer"], item["model"])))
            lines.append(terminal_safe(f"  {item['url']}  {name}".rstrip()))
            for change in item["fields"]:
                old, new = _value(change["old"]), _value(change["new"])
                lines.append(terminal_safe(f"    {change['field']}: {old} -> {new}"))
        lines += _more(len(report["changed"]), report["changed_count"])
    if report["delisted_count"]:
        lines += ["", f"Delisted products ({report['delisted_count']}):"]
        rows = [[*summary(item), utc_time(item["delisted_at"])] for item in report["delisted"]]
        lines += _indent(table((*headers, "delisted (UTC)"), rows))
        lines += _more(len(report["delisted"]), report["delisted_count"])
    return "\n".join(lines)


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "changes"

    def syntax(self) -> str:
        return "[--run ID] [--limit N] [--json]"

    def short_desc(self) -> str:
        return "Show what a crawl run changed: new, changed and delisted products"

    def long_desc(self) -> str:
        return (
            "Show what a crawl run changed in the database (DATABASE_URL): the products it "
            "stored first, every field it changed (old -> new, from product_changes) and "
            "the products it marked delisted. Without --run: the latest run; when that run "
            "changed nothing, the command says which run last did."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--run", type=int, metavar="ID", help="the run (default: the latest)")
        parser.add_argument(
            "--limit",
            type=int,
            default=100,
            metavar="N",
            help="products listed per section (100; 0 = all)",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if opts.limit < 0:
            raise UsageError("--limit must be 0 (all) or more", print_help=False)

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        engine = self.open_database(("products", "product_changes", "crawl_runs"))
        try:
            report = run_changes(engine, opts.run, opts.limit or None)
        finally:
            engine.dispose()
        print(dumps(report) if opts.json else render(report))
