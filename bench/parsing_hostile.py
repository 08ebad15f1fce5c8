"""What parsing costs: the common pages, and the hostile pages that used to freeze a crawl.

Two measurements, each with its baseline measured in the same run:

1. **parse only**: the simulated site's listing and product pages (UTF-8, every markup
   variant at the site's default share), fetched once, then parsed again and again in this
   process with ``matter_crawler.parsing`` (``parse_listing``; ``parse_detail`` +
   ``build_product``) and checked with ``page_problem``. Prints microseconds per page
   (median of ``--rounds``). Run it from two checkouts (``PYTHONPATH=<checkout>``) to compare
   two versions of the parsers: the figure must not regress.
2. **content check on a hostile page**: one inline script holding the product-page marker
   many times (``entry-product-details`` every 24 bytes), the shape that made the content
   check's backwards search quadratic. The old check (c3359a7's ``_in_markup``, copied
   below as the baseline) against today's ``page_problem``, at growing sizes; the old one
   is only run up to ``--old-max-kb`` (it takes minutes beyond a megabyte). Prints the
   seconds and the old/new ratio.

::

    .venv/bin/python bench/parsing_hostile.py [--pages 60] [--rounds 7] [--old-max-kb 440]
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
from collections.abc import Callable

from common import machine

from matter_crawler.parsing import build_product, page_problem, parse_detail, parse_listing
from matter_crawler.sitesim.process import SimulatedSite

MARKER = b"entry-product-details"


def old_in_markup(body: bytes, marker: bytes) -> bool:
    """c3359a7's check: a backwards search from every occurrence (quadratic)."""
    position = body.find(marker)
    while position != -1:
        if body.rfind(b"<script", 0, position) <= body.rfind(b"</script", 0, position):
            return True
        position = body.find(marker, position + len(marker))
    return False


def hostile_page(size: int) -> bytes:
    """A product page whose head holds one script of ``size`` bytes full of the marker."""
    filler = b'"entry-product-details",' * (size // 24)
    return (
        b"<!DOCTYPE html><html><head><script>var x = [" + filler + b"];</script></head><body>"
        b'<div class="entry-product-details"><ul><li class="item">x</li></ul></div>'
        b"</body></html>"
    )


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


def per_page_us(pages: list[bytes], work: Callable[[bytes], object], rounds: int) -> float:
    """Median over ``rounds`` of the mean microseconds one page costs."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for body in pages:
            work(body)
        samples.append((time.perf_counter() - started) / len(pages) * 1e6)
    return statistics.median(samples)


def parse_section(pages: int, rounds: int) -> None:
    with SimulatedSite(products=pages * 12, seed=1) as site:
        listing = [fetch(site.listing_url(n)) for n in range(1, pages + 1)]
        detail_urls = [site.url(record["url"]) for record in site.truth()[:pages]]
        detail = [fetch(url) for url in detail_urls]
    base = "http://127.0.0.1/csa-iot_products/"
    product = "http://127.0.0.1/csa_product/x/"

    def parse_one_listing(body: bytes) -> object:
        return parse_listing(body, base, "utf-8")

    def parse_one_detail(body: bytes) -> object:
        return build_product(parse_detail(body, product, "utf-8"), product)

    rows = [
        ("listing page: parse_listing", listing, parse_one_listing),
        ("product page: parse_detail + build_product", detail, parse_one_detail),
        ("listing page: page_problem", listing, lambda body: page_problem(body, "list")),
        ("product page: page_problem", detail, lambda body: page_problem(body, "detail")),
    ]
    print(f"Parse only ({pages} pages of each kind, median of {rounds} rounds):\n")
    print("| work | KB per page | us per page |")
    print("|---|---:|---:|")
    for name, bodies, work in rows:
        work(bodies[0])  # warm up (XPath compiled at import, caches)
        kilobytes = sum(map(len, bodies)) / len(bodies) / 1024
        print(f"| {name} | {kilobytes:.1f} | {per_page_us(bodies, work, rounds):.1f} |")


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def content_section(old_max_kb: int) -> None:
    print("\nContent check on a page whose script holds the marker every 24 bytes:\n")
    print("| page | old check (s) | new check (s) | old / new |")
    print("|---:|---:|---:|---:|")
    for kilobytes in (110, 220, 440, 1024, 4096, 10240):
        body = hostile_page(kilobytes * 1024)
        new = min(timed(lambda body=body: page_problem(body, "detail")) for _ in range(3))
        assert page_problem(body, "detail") is None
        if kilobytes <= old_max_kb:
            old = timed(lambda body=body: old_in_markup(body, MARKER))
            print(f"| {kilobytes:,} KB | {old:.3f} | {new:.5f} | {old / new:,.0f} |")
        else:
            print(f"| {kilobytes:,} KB | (not run) | {new:.5f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=60, help="pages of each kind")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--old-max-kb", type=int, default=440, help="largest page for the old")
    parser.add_argument("--skip-content", action="store_true")
    options = parser.parse_args()
    print(machine(), "\n")
    parse_section(options.pages, options.rounds)
    if not options.skip_content:
        content_section(options.old_max_kb)


if __name__ == "__main__":
    main()
