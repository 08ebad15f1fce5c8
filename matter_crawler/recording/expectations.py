"""``expectations.jsonl``: what the project's parsers read from every recorded page.

One JSON line per page: per listing page its card count and product paths, per
product page the record a crawl must store, in the ground-truth format of
:mod:`matter_crawler.verify` (paths, ISO dates). A human reviews the file and
commits it; lines already in it are kept as reviewed (a parser that now reads a
page differently is reported, and ``--rewrite-expectations`` regenerates them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..items import ProductItem
from ..parsing import build_product, page_number_from_url, parse_detail, parse_listing
from ..parsing.urls import url_path
from ..verify import TRUTH_FIELDS
from . import RecordingError
from .cassettes import RecordedPage, recorded_pages

EXPECTATIONS_FILE = "expectations.jsonl"


def product_record(item: ProductItem) -> dict[str, Any]:
    """A parsed product as a ground-truth record (verify.TRUTH_FIELDS, paths for URLs)."""
    record: dict[str, Any] = {name: getattr(item, name) for name in TRUTH_FIELDS}
    record["url"] = url_path(item.url)
    record["compliance_document_url"] = url_path(item.compliance_document_url)
    record["transport_interface"] = list(item.transport_interface)
    record["application_categories"] = list(item.application_categories)
    record["extra_fields"] = dict(item.extra_fields)
    return record


def listing_expectation(page: RecordedPage) -> dict[str, Any]:
    """What a listing page shows: its page number, status, card count and product paths."""
    number = page_number_from_url(page.uri) or 1
    if page.status != 200:
        return {"kind": "listing", "url": page.path, "page": number, "status": page.status,
                "cards": 0, "last_page": None, "products": []}  # fmt: skip
    listing = parse_listing(page.body, page.uri, page.encoding)
    return {
        "kind": "listing",
        "url": page.path,
        "page": number,
        "status": page.status,
        "cards": len(listing.cards),
        "last_page": listing.last_page,
        "products": [url_path(card.url) for card in listing.cards],
    }


def parsed_product(page: RecordedPage) -> ProductItem:
    return build_product(parse_detail(page.body, page.uri, page.encoding), page.uri)


def product_expectation(page: RecordedPage) -> dict[str, Any] | None:
    """The record a crawl stores for a product page (None unless it answered 200)."""
    if page.status != 200:
        return None
    return {"kind": "product", **product_record(parsed_product(page))}


def expectations_of(pages: Iterable[RecordedPage]) -> list[dict[str, Any]]:
    """Listing lines by page number, then products in listing order, then the rest by path."""
    listings, products = [], {}
    for page in pages:
        if page.kind == "listing":
            listings.append(listing_expectation(page))
        elif page.kind == "detail" and (line := product_expectation(page)) is not None:
            products[line["url"]] = line
    listings.sort(key=lambda line: (line["page"], line["url"]))
    order = {path: index for index, path in enumerate(p for ln in listings for p in ln["products"])}
    ordered = sorted(
        products.values(), key=lambda ln: (order.get(ln["url"], len(order)), ln["url"])
    )
    return listings + ordered


def read_expectations(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError as error:
                raise RecordingError(f"{path}:{number}: not JSON: {error}") from None
    return lines


def merge_expectations(
    reviewed: list[dict[str, Any]], fresh: list[dict[str, Any]], *, rewrite: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Fresh lines, keeping reviewed lines of pages already in the file unless ``rewrite``.

    Returns the lines and the pages whose reviewed line the parser no longer agrees with.
    """
    kept = {(line.get("kind"), line.get("url")): line for line in reviewed}
    merged, disagreements = [], []
    for line in fresh:
        old = kept.get((line["kind"], line["url"]))
        if old is None or rewrite:
            merged.append(line)
            continue
        merged.append(old)
        if old != line:
            disagreements.append(line["url"])
    return merged, disagreements


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    partial.replace(path)


def write_expectations(directory: Path, *, rewrite: bool = False) -> dict[str, Any]:
    """Regenerate ``DIR/expectations.jsonl`` from every page in the cassettes of ``DIR``.

    Reviewed lines are kept unless ``rewrite``. Returns what the summary reports:
    the file, its counts, labels the parser does not know, pages it cannot read
    fully, and the pages it now reads differently from the reviewed lines.
    """
    pages = recorded_pages(directory)
    fresh = expectations_of(pages)
    path = directory / EXPECTATIONS_FILE
    lines, disagreements = merge_expectations(read_expectations(path), fresh, rewrite=rewrite)
    write_jsonl(path, lines)
    products = [line for line in fresh if line["kind"] == "product"]
    unknown: Counter[str] = Counter(label for line in products for label in line["extra_fields"])
    problems = []
    for page in pages:
        if page.kind == "detail" and page.status == 200:
            item = parsed_product(page)
            missing = [
                n for n in ("manufacturer", "model", "certificate_id") if not getattr(item, n)
            ]
            reasons = item.problems + [f"{name} missing" for name in missing]
            if reasons:
                problems.append(f"{page.path}: {'; '.join(reasons)}")
    return {
        "path": path,
        "listing": sum(1 for line in lines if line["kind"] == "listing"),
        "products": sum(1 for line in lines if line["kind"] == "product"),
        "unknown_labels": unknown,
        "problems": problems,
        "disagreements": disagreements,
    }
