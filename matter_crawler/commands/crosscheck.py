"""``scrapy crosscheck``: the catalogue's listed products against the DCL's records.

Reads the catalogue (``products``) and the ledger (``dcl_*``) from the database
(``DATABASE_URL``, read-only), runs the cross-check
(:mod:`matter_crawler.dcl.crosscheck`, whose docstring and docs/commands.md give
the rules), stores it (``crosscheck_runs`` and ``crosscheck_findings``; not with
``--no-store``) and reports:

- on the terminal, the counts per class and per field, then the findings (class,
  VID/PID, certificate id, field, both values, the check each first appeared in);
- with ``--json``, one JSON document in the ground truth's shape (``products``,
  ``consistent``, ``counts``, ``field_counts``, ``findings``) plus the check's id and
  time and each finding's ``product_url``, ``first_seen``/``first_check`` and
  ``last_seen``/``last_check``;
- with ``-o FILE``, the findings as CSV, JSON lines or Excel (by the file's suffix,
  through the export's writers: the same cell types and formula safety).

A stored check's numbers are pushed to the Pushgateway when
``PROMETHEUS_PUSHGATEWAY_URL`` (or ``$MATTER_PUSHGATEWAY_URL``) is set
(:mod:`matter_crawler.monitoring.crosscheck`; docs/monitoring.md).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from ..dcl.checks import (
    Appearance,
    finding_appearances,
    latest_check,
    read_inputs,
    store_check,
)
from ..dcl.crosscheck import CLASSES, FIELDS, CrosscheckResult, Finding, crosscheck
from ..monitoring.crosscheck import push_check
from ..monitoring.push import pushgateway_from
from ._database import (
    CommandError,
    DatabaseCommand,
    QueryClock,
    database_file,
    database_url,
    open_read_only_database,
)
from ._export_files import check_output, default_mode, replaced_when_done, text_output
from ._export_writers import Column, write_csv, write_jsonl, write_xlsx
from ._text import dumps, one_line, table, utc_time
from .export import output_format

TABLES = (
    "products",
    "dcl_compliance",
    "dcl_vendors",
    "dcl_models",
    "crosscheck_runs",
    "crosscheck_findings",
)
#: The columns of ``-o``: the finding, then its history.
COLUMNS = (
    Column("class", "text"),
    Column("vid", "int"),
    Column("pid", "int"),
    Column("certificate_id", "text"),
    Column("field", "text"),
    Column("catalogue", "json"),
    Column("dcl", "json"),
    Column("product_url", "text"),
    Column("first_check", "int"),
    Column("first_seen", "datetime"),
    Column("last_check", "int"),
    Column("last_seen", "datetime"),
)
#: Width of a value in the terminal table.
VALUE_WIDTH = 40


def hex_id(value: int) -> str:
    return f"0x{value:04X}"


def shown_value(value: Any) -> str:
    """A value for the terminal: text as it is, lists joined, nothing as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class Report:
    """One check's result, its stored id and time, and each finding's history."""

    def __init__(
        self,
        result: CrosscheckResult,
        checked_at: datetime,
        check_id: int | None,
        history: Sequence[Appearance | None],
        only: Sequence[str] = (),
    ) -> None:
        self.result = result
        self.checked_at = checked_at
        self.check_id = check_id
        pairs = list(zip(result.findings, history, strict=True))
        self.shown = [(f, seen) for f, seen in pairs if not only or f.finding_class in only]

    def rows(self) -> Iterator[list[Any]]:
        """The findings shown, as :data:`COLUMNS` rows."""
        for finding, seen in self.shown:
            yield [
                finding.finding_class,
                finding.vid,
                finding.pid,
                finding.certificate_id,
                finding.field,
                finding.catalogue,
                finding.dcl,
                finding.product_url,
                seen.first_check if seen else None,
                seen.first_seen if seen else None,
                seen.last_check if seen else None,
                seen.last_seen if seen else None,
            ]

    def document(self) -> dict[str, Any]:
        """``--json``: the ground truth's shape, plus the check and each finding's history."""
        summary = self.result.summary()
        names = [column.name for column in COLUMNS]
        findings = []
        for row in self.rows():
            values = dict(zip(names, row, strict=True))
            findings.append({"class": values.pop("class"), **values})
        return {
            "check": self.check_id,
            "checked_at": self.checked_at,
            "products": summary["products"],
            "consistent": summary["consistent"],
            "counts": summary["counts"],
            "field_counts": summary["field_counts"],
            "unkeyed": self.result.unkeyed,
            "findings": findings,
        }

    def render(self, limit: int | None) -> str:
        result = self.result
        stored = f"check {self.check_id}" if self.check_id is not None else "not stored"
        lines = [
            f"Cross-check of {result.products} listed products with the DCL "
            f"({stored}, {utc_time(self.checked_at)} UTC): {result.consistent} consistent, "
            f"{len(result.findings)} findings",
        ]
        if result.unkeyed:
            lines.append(f"  {len(result.unkeyed)} products without VID/PID left out")
        counts, field_counts = result.counts(), result.field_counts()
        lines += ["", table(("class", "findings"), [[c, counts[c]] for c in CLASSES], {1})]
        lines += ["", table(("field", "mismatches"), [[f, field_counts[f]] for f in FIELDS], {1})]
        shown = self.shown[:limit] if limit else self.shown
        if shown:
            lines += ["", table(*self._finding_table(shown))]
        if len(shown) < len(self.shown):
            lines.append(f"... and {len(self.shown) - len(shown)} more (--limit 0 shows all)")
        return "\n".join(lines)

    @staticmethod
    def _finding_table(
        shown: Sequence[tuple[Finding, Appearance | None]],
    ) -> tuple[tuple[str, ...], list[list[Any]]]:
        headers = ("class", "VID", "PID", "certificate", "field", "catalogue", "DCL", "first seen")
        rows = [
            [
                finding.finding_class,
                hex_id(finding.vid),
                hex_id(finding.pid),
                finding.certificate_id or "-",
                finding.field or "-",
                one_line(shown_value(finding.catalogue), VALUE_WIDTH) if finding.field else "",
                one_line(shown_value(finding.dcl), VALUE_WIDTH) if finding.field else "",
                utc_time(seen.first_seen) if seen else "-",
            ]
            for finding, seen in shown
        ]
        return headers, rows


def output_mode(output: str, *, force: bool, database: Path | None) -> int:
    """The permissions the findings file gets; CommandError when it may not be written."""
    if output == "-":
        return default_mode()
    return check_output(Path(output), force=force, database=database)


def write_findings(report: Report, output: str, fmt: str, mode: int) -> int:
    """Write the findings shown to ``output`` (``-``: standard output; not xlsx)."""
    rows = list(report.rows())
    if fmt == "xlsx":
        with replaced_when_done(Path(output), mode) as (partial, descriptor):
            os.close(descriptor)  # openpyxl writes the file by its name
            return write_xlsx(partial, COLUMNS, iter(rows), rows[:200], sheet_name="findings")
    with text_output(output, mode) as stream:
        if fmt == "csv":
            return write_csv(stream, COLUMNS, iter(rows))
        return write_jsonl(stream, COLUMNS, iter(rows))


class Command(DatabaseCommand, ScrapyCommand):
    command_name = "crosscheck"

    def syntax(self) -> str:
        return (
            "[--json] [-o FILE [-f csv|jsonl|xlsx] [--force]] [--class CLASS] [--no-store] "
            "[--limit N]"
        )

    def short_desc(self) -> str:
        return "Cross-check the catalogue's products with the DCL's records"

    def long_desc(self) -> str:
        return (
            "Join the catalogue's listed products (DATABASE_URL) with the Distributed "
            "Compliance Ledger's records stored by `scrapy crawl dcl`, by VID/PID and "
            "certificate id, and report what disagrees: products missing on the DCL, "
            "certified records absent from the catalogue, revoked records still listed, and "
            "field mismatches, each with both values. The check is stored (unless "
            "--no-store) so each finding's first and last appearance are known. -o writes "
            "the findings as CSV, JSON lines or Excel (by -f or the file's suffix); --json "
            "prints one JSON document."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "-o", "--output", metavar="FILE", help="write the findings to FILE (-: standard output)"
        )
        parser.add_argument(
            "-f", "--format", metavar="FORMAT", help="csv, jsonl or xlsx (default: from FILE)"
        )
        parser.add_argument(
            "--force", action="store_true", help="replace FILE if it exists; never the database"
        )
        parser.add_argument(
            "--class",
            dest="classes",
            action="append",
            choices=CLASSES,
            metavar="CLASS",
            help=f"only findings of this class (repeatable), one of {', '.join(CLASSES)}",
        )
        parser.add_argument(
            "--no-store", action="store_true", help="do not store this check in the database"
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=100,
            metavar="N",
            help="findings shown on the terminal (100; 0 = all)",
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if opts.limit < 0:
            raise UsageError("--limit must be 0 (all) or more", print_help=False)
        opts.format = output_format(opts.format, opts.output) if opts.output else None
        if opts.json and opts.output == "-":
            raise UsageError("--json and -o - both write to standard output", print_help=False)

    def execute(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        url = database_url(self.settings)
        mode = None
        if opts.output:  # before anything is stored: a file that may not be written stops it
            mode = output_mode(opts.output, force=opts.force, database=database_file(url))
        engine = open_read_only_database(url, QueryClock(0), TABLES, report=self.note)
        try:
            with engine.connect() as conn:
                inputs = read_inputs(conn)
        finally:
            engine.dispose()
        if not inputs.products:
            raise CommandError(
                "the database holds no listed products: run `scrapy crawl matter_products` first"
            )
        if not inputs.dcl_records:
            raise CommandError("the database holds no DCL records: run `scrapy crawl dcl` first")
        result = crosscheck(inputs.products, inputs.compliance, inputs.vendors, inputs.models)
        checked_at = datetime.now(UTC)
        check_id, latest = None, None
        if opts.no_store:
            engine = open_read_only_database(url, QueryClock(0), TABLES)
        else:  # the check's one write: its own two tables, which no crawl writes
            engine = self.open_database(TABLES, upgrade=False)
        try:
            if not opts.no_store:
                with engine.begin() as conn:
                    check_id = store_check(conn, result, checked_at)
            with engine.connect() as conn:
                history = finding_appearances(conn, result.findings)
                if check_id is not None:
                    latest = latest_check(conn)
        finally:
            engine.dispose()
        report = Report(result, checked_at, check_id, history, opts.classes or ())
        if mode is not None:
            count = write_findings(report, opts.output, opts.format, mode)
            self.note(f"wrote {count} findings to {opts.output} ({opts.format})")
        if opts.json:
            print(dumps(report.document()))
        elif opts.output != "-":
            print(report.render(opts.limit or None))
        if latest is not None:
            self.push(latest)

    def push(self, check: dict[str, Any]) -> None:
        """Push the stored check's numbers when a Pushgateway is configured."""
        assert self.settings is not None
        if not self.settings.getbool("PROMETHEUS_ENABLED"):
            return
        gateway = pushgateway_from(self.settings.get("PROMETHEUS_PUSHGATEWAY_URL"))
        if gateway is None:
            return
        error = push_check(gateway, check)
        if error is None:
            self.note(f"pushed the check's metrics to {gateway.url}")
        else:
            self.note(f"warning: pushing to the Pushgateway {gateway.url} failed: {error}")
