"""The catalogue model on its own (in process): realism, determinism, size, mutations."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import date

import pytest

from sitesim.catalogue import Catalogue, CatalogueError
from sitesim.config import OPTIONS, Settings
from sitesim.reference import (
    FIRST_DAY,
    REQUIRED_DEVICE_TYPES,
    SPEC_RELEASES,
    TODAY,
)
from sitesim.truth import TRUTH_KEYS, records

CERTIFICATE = re.compile(r"^CSA\d{2}[0-9A-F]{3}MAT\d{5}-\d{2}$")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(6000, seed=1)


def test_same_seed_same_catalogue_other_seed_differs() -> None:
    first, again, other = Catalogue(300, 5), Catalogue(300, 5), Catalogue(300, 6)
    assert list(records(first, 0.04)) == list(records(again, 0.04))
    assert list(records(first, 0.04)) != list(records(other, 0.04))


def test_sizes_and_pages() -> None:
    for size, pages, last in ((10, 1, 10), (12, 1, 12), (13, 2, 1), (600, 50, 12), (6001, 501, 1)):
        catalogue = Catalogue(size, 1)
        assert len(catalogue) == size
        assert catalogue.page_count() == pages
        assert len(catalogue.page(pages)) == last
        assert catalogue.page(pages + 1) == []
        assert catalogue.page(0) == []
    for bad in (9, 100_001):
        with pytest.raises(CatalogueError):
            Catalogue(bad, 1)


def test_largest_catalogue_starts_fast() -> None:
    # a guard against building every product up front (minutes), not a speed claim:
    # this process's CPU time, which other processes' load does not inflate
    started = time.process_time()
    catalogue = Catalogue(100_000, 1)
    assert time.process_time() - started < 5.0
    assert catalogue.page_count() == 8334


def test_vendors(catalogue: Catalogue) -> None:
    vendors = catalogue.vendors
    assert len(vendors) == 300
    assert len({v.name for v in vendors}) == 300
    assert len({v.vid for v in vendors}) == 300
    assert all(0x1000 <= v.vid <= 0xFFF0 for v in vendors)
    names = " ".join(v.name for v in vendors)
    assert re.search("[\uac00-\ud7a3]", names), "a Korean vendor"
    assert re.search("[\u4e00-\u9fff]", names), "a Chinese vendor"
    assert re.search("[äöüß]", names), "a German vendor"
    for special in "&<\"'":
        assert special in names


def test_products_are_realistic(catalogue: Catalogue) -> None:
    entries = list(catalogue.newest_first())
    products = [catalogue.product(e) for e in entries]
    assert {p.device_type_id for p in products} >= set(REQUIRED_DEVICE_TYPES)
    assert len({p.certificate_id for p in products}) == len(products)
    assert all(CERTIFICATE.match(p.certificate_id) for p in products)
    assert len({e.slug for e in entries}) == len(entries)
    # Slugs repeat a model name with a numeric suffix, like the real site.
    assert any(re.search(r"-\d+$", e.slug) and " " not in e.slug for e in entries)
    dates = [p.certified for p in products]
    assert dates == sorted(dates, reverse=True), "newest first"
    assert dates[0] == TODAY
    assert dates[-1] == FIRST_DAY
    for product in products:
        for required in ("model", "manufacturer", "certificate_id"):
            assert getattr(product, required).strip()
        assert 0 < product.pid <= 0xFFFF
        allowed = [v for start, v in SPEC_RELEASES if start <= product.certified]
        assert product.specification_version in allowed
        assert 1 <= len(product.application_categories) <= 2
    labels = Counter(p.device_type for p in products)
    for label in ("Light Bulb", "Smart Plug", "Door Lock", "Bridge", "Thermostat", "Sensor"):
        assert labels[label] > 0
    optional = ("firmware_version", "family_id", "family_variant_sku", "description")
    for field in optional:
        assert any(getattr(p, field) is None for p in products), f"some empty {field}"
    assert any(p.tis_trp_tested is None for p in products)
    assert any(p.transports == () for p in products)


def test_spec_versions_follow_release_dates(catalogue: Catalogue) -> None:
    first_of = {}
    for entry in catalogue.newest_first():
        version = catalogue.product(entry).specification_version
        first_of[version] = min(first_of.get(version, date.max), entry.certified)
    for start, version in SPEC_RELEASES:
        assert first_of[version] >= start


def test_truth_records_have_exactly_the_keys(catalogue: Catalogue) -> None:
    for record in records(catalogue, 0.5):
        assert tuple(record) == TRUTH_KEYS
        assert re.fullmatch(r"0x[0-9A-F]{4}", record["vid"])
        assert re.fullmatch(r"0x[0-9A-F]{4}", record["pid"])
        assert re.fullmatch(r"0x[0-9A-F]{4}", record["primary_device_type_id"])
        assert record["url"].startswith("/csa_product/")
        assert record["url"].endswith("/")


def test_mutations_are_deterministic_and_keep_order() -> None:
    one, two = Catalogue(100, 9), Catalogue(100, 9)
    newest_before = next(one.newest_first()).certified
    result = one.mutate(add=3, remove=2, change=4)
    assert result == two.mutate(add=3, remove=2, change=4)
    assert len(one) == 101
    newest = list(one.newest_first())[:3]
    assert [e.path for e in newest] == result.added
    assert all(e.certified > newest_before for e in newest)
    for path in result.removed:
        assert one.entry(path.split("/")[2]) is None
    assert len(result.changed) == 4
    for fields in result.changed.values():
        assert "firmware_version" in fields
        assert set(fields) <= {"firmware_version", "software_version", "hardware_version"}
    second = one.mutate(change=1)
    assert second != result, "the mutation counter seeds each mutation"


def test_mutation_errors() -> None:
    catalogue = Catalogue(10, 1)
    for bad in ({"remove": 10}, {"add": -1}, {"change": 11}, {"add": True}):
        with pytest.raises(CatalogueError):
            catalogue.mutate(**bad)
    assert len(catalogue) == 10


def test_options_table_matches_settings() -> None:
    assert set(OPTIONS) == set(Settings().as_json())
    assert Settings().updated(Settings().as_json()) == Settings()
