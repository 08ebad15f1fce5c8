"""What parsing costs: the common pages, and the hostile pages that used to freeze a crawl.

Two measurements, each against a baseline measured in the same run:

1. **parse only**: the simulated site's listing and product pages (UTF-8, every markup
   variant at the site's default share), fetched once, then parsed again and again in this
   process: ``parse_listing``, ``parse_detail`` and ``page_problem``. Prints CPU
   microseconds per page (``time.process_time``: what the parsing costs whatever else the
   machine runs), the best of ``--rounds``. With ``--baseline CHECKOUT`` the same pages are
   also parsed by that checkout's parsers (its ``matter_crawler/parsing/`` modules
   ``_html``, ``listing``, ``detail`` and ``content``, loaded as a package of their own, as
   at c3359a7 where they import only each other), alternating round by round, and the
   new/old ratio is printed: the figure that must not regress.
2. **content check on a hostile page**: one inline script holding the product-page marker
   many times (``entry-product-details`` every 24 bytes), the shape that made the content
   check's backwards search quadratic. The old check (c3359a7's ``_in_markup``, copied
   below) against today's ``page_problem``, at growing sizes; the old one is only run up to
   ``--old-max-kb`` (it takes minutes beyond a megabyte). Prints the seconds and the
   old/new ratio.

::

    git worktree add /tmp/base c3359a7
    .venv/bin/python bench/parsing_hostile.py --baseline /tmp/base [--pages 60] [--rounds 8]
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from common import machine

from matter_crawler.parsing import content, detail, listing
from matter_crawler.sitesim.process import SimulatedSite

MARKER = b"entry-product-details"
LISTING_BASE = "http://127.0.0.1/csa-iot_products/"
PRODUCT = "http://127.0.0.1/csa_product/x/"
BASELINE_MODULES = ("_html", "listing", "detail", "content")


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


def load_baseline(checkout: Path, scratch: Path) -> dict[str, ModuleType]:
    """The baseline checkout's parsing modules, as the package ``baseline_parsing``."""
    package = scratch / "baseline_parsing"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in BASELINE_MODULES:
        shutil.copy(checkout / "matter_crawler" / "parsing" / f"{name}.py", package)
    sys.path.insert(0, str(scratch))
    return {name: importlib.import_module(f"baseline_parsing.{name}") for name in BASELINE_MODULES}


def per_page_us(pages: list[bytes], work: Callable[[bytes], object]) -> float:
    """Mean CPU microseconds one page costs, over one pass."""
    started = time.process_time()
    for body in pages:
        work(body)
    return (time.process_time() - started) / len(pages) * 1e6


def works(modules: dict[str, ModuleType]) -> dict[str, Callable[[bytes], object]]:
    return {
        "listing page: parse_listing": lambda b: modules["listing"].parse_listing(
            b, LISTING_BASE, "utf-8"
        ),
        "product page: parse_detail": lambda b: modules["detail"].parse_detail(b, PRODUCT, "utf-8"),
        "listing page: page_problem": lambda b: modules["content"].page_problem(b, "list"),
        "product page: page_problem": lambda b: modules["content"].page_problem(b, "detail"),
    }


def parse_section(pages: int, rounds: int, baseline: Path | None) -> None:
    with SimulatedSite(products=pages * 12, seed=1) as site:
        listing_pages = [fetch(site.listing_url(n)) for n in range(1, pages + 1)]
        detail_pages = [fetch(site.url(record["url"])) for record in site.truth()[:pages]]
    bodies = {"listing": listing_pages, "product": detail_pages}
    current = works({"listing": listing, "detail": detail, "content": content})
    with tempfile.TemporaryDirectory() as scratch:
        old = works(load_baseline(baseline, Path(scratch))) if baseline else None
        print(f"Parse only ({pages} pages of each kind, best of {rounds} rounds):\n")
        if old is None:
            print("| work | KB per page | CPU us per page |")
            print("|---|---:|---:|")
        else:
            print("| work | KB per page | baseline CPU us | CPU us | new / old |")
            print("|---|---:|---:|---:|---:|")
        for name, work in current.items():
            pages_of = bodies[name.split()[0]]
            kilobytes = sum(map(len, pages_of)) / len(pages_of) / 1024
            new_samples, old_samples = [], []
            for number in range(rounds):
                # alternating, each going first every other round: both see the same
                # machine, and neither always gets the caches the other left warm
                if old is not None and number % 2:
                    old_samples.append(per_page_us(pages_of, old[name]))
                new_samples.append(per_page_us(pages_of, work))
                if old is not None and not number % 2:
                    old_samples.append(per_page_us(pages_of, old[name]))
            new_best = min(new_samples)
            if old is None:
                print(f"| {name} | {kilobytes:.1f} | {new_best:.1f} |")
            else:
                old_best = min(old_samples)
                print(
                    f"| {name} | {kilobytes:.1f} | {old_best:.1f} | {new_best:.1f} "
                    f"| {new_best / old_best:.3f} |"
                )


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
        new = min(timed(lambda body=body: content.page_problem(body, "detail")) for _ in range(3))
        assert content.page_problem(body, "detail") is None
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
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare the parsers with")
    parser.add_argument("--old-max-kb", type=int, default=440, help="largest page for the old")
    parser.add_argument("--skip-content", action="store_true")
    options = parser.parse_args()
    print(machine(), "\n")
    parse_section(options.pages, options.rounds, options.baseline)
    if not options.skip_content:
        content_section(options.old_max_kb)


if __name__ == "__main__":
    main()
