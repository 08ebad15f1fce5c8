"""The simulated catalogue: products, vendors and their mutations between crawls.

The catalogue is the site's single source of facts. Pages are rendered from it
and the ground truth is computed from it, never from the HTML, so a rendering
bug shows up as a disagreement between the two instead of hiding itself.

Memory and startup matter at 100,000 products, so only what a listing card
needs (:class:`Entry`) is built up front, in certification order, because slugs
and certificate ids must be unique across the whole catalogue. Everything a
detail page adds (:class:`Product`) is derived on demand from the product's own
seeded stream, replaying any changes mutations made to it.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate

from . import hostile, hostile_parsing
from .products import (
    CHANGEABLE,
    Entry,
    Product,
    changed,
    random_hardware_version,
    random_sku,
    random_version,
)
from .reference import (
    CODE_LETTERS,
    COMPLIANCE_DIR,
    DESCRIPTIONS,
    DEVICE_TYPES,
    EXTRA_LABELS,
    FIRST_DAY,
    FORMS,
    NATIVE_NOUNS,
    OTHER_NON_ASCII_VENDORS,
    PREFIXES,
    REQUIRED_DEVICE_TYPES,
    SCRIPT_MODEL,
    SPECIAL_VENDORS,
    SQL_DESCRIPTION,
    SUFFIXES,
    TODAY,
    VENDOR_COUNT,
    DeviceType,
    Vendor,
    slugify,
    spec_version_for,
)
from .seeding import stream

PAGE_SIZE = 12
MIN_PRODUCTS = 10
MAX_PRODUCTS = 100_000


@dataclass(slots=True)
class MutationResult:
    """What one ``POST /__sim__/mutate`` did, as paths."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)


class CatalogueError(ValueError):
    """A request the catalogue cannot satisfy (bad size, too many removals...)."""


class Catalogue:
    """The catalogue's products in certification order, and its mutations."""

    def __init__(self, products: int, seed: int) -> None:
        if not MIN_PRODUCTS <= products <= MAX_PRODUCTS:
            raise CatalogueError(f"products must be {MIN_PRODUCTS}..{MAX_PRODUCTS}")
        self.seed = seed
        self.mutations = 0
        self.vendors = self._make_vendors()
        self._vendor_cumweights = list(
            accumulate(1.0 / (rank + 1) ** 0.7 for rank in range(len(self.vendors)))
        )
        self._type_cumweights = list(accumulate(t.weight for t in DEVICE_TYPES))
        self._type_index = {t.type_id: i for i, t in enumerate(DEVICE_TYPES)}
        self._used_slugs: set[str] = set()
        self._slug_counters: dict[str, int] = {}
        self._used_certificates: set[str] = set()
        self._entries: list[Entry] = []  # oldest first
        self._by_slug: dict[str, Entry] = {}
        self._by_vendor: dict[int, list[Entry]] | None = None
        self._next_serial = 0
        self._sql_serial = -1  # the product whose description looks like SQL
        self.hostile: dict[str, str] = {}  # slug -> hostile kind (see hostile.py)
        self.hostile_parsing: dict[str, str] = {}  # slug -> kind (see hostile_parsing.py)
        self.removed: list[Entry] = []  # products mutations removed, in removal order
        self._populate(products)

    # --- building -----------------------------------------------------------

    def _make_vendors(self) -> tuple[Vendor, ...]:
        rng = stream(self.seed, "vendors")
        combos = [(p, s, f) for p in PREFIXES for s in SUFFIXES for f in FORMS]
        named = list(SPECIAL_VENDORS + OTHER_NON_ASCII_VENDORS)
        generated = rng.sample(combos, VENDOR_COUNT - len(named))
        for prefix, suffix, form in generated:
            name = f"{prefix} {suffix} {form}"
            named.append((name.upper() if rng.random() < 0.1 else name, prefix, "latin"))
        vids = rng.sample(range(0x1000, 0xFFF1), VENDOR_COUNT)
        rng.shuffle(named)  # the popularity order: each seed has other big vendors
        return tuple(
            Vendor(name=name, vid=vid, brand=brand, script=script)
            for (name, brand, script), vid in zip(named, vids, strict=True)
        )

    def _populate(self, count: int) -> None:
        rng = stream(self.seed, "catalogue")
        span = (TODAY - FIRST_DAY).days
        # Density grows over time like the real catalogue (sqrt of a uniform).
        offsets = sorted(int(span * math.sqrt(rng.random())) for _ in range(count))
        offsets[0], offsets[-1] = 0, span
        forced_types = {
            (k * count) // len(REQUIRED_DEVICE_TYPES): self._type_index[type_id]
            for k, type_id in enumerate(REQUIRED_DEVICE_TYPES)
        }
        # A few showcase products among the newest, so small catalogues and the
        # tests always meet escaping and non-ASCII cases on the first page.
        index_of = {vendor.name: i for i, vendor in enumerate(self.vendors)}
        showcase_vendors = {
            count - 2 - 2 * k: index_of[name] for k, (name, _, _) in enumerate(SPECIAL_VENDORS)
        }
        script_model_at = count - 3
        self._sql_serial = count - 5
        for serial, offset in enumerate(offsets):
            vendor = showcase_vendors.get(serial)
            model = SCRIPT_MODEL if serial == script_model_at else None
            entry = self._new_entry(
                rng,
                FIRST_DAY + timedelta(days=offset),
                vendor=vendor,
                device_type=forced_types.get(serial),
                model=model,
            )
            self._append(entry)

    def _new_entry(
        self,
        rng: random.Random,
        certified: date,
        vendor: int | None = None,
        device_type: int | None = None,
        model: str | None = None,
    ) -> Entry:
        serial = self._next_serial
        self._next_serial += 1
        if vendor is None:
            vendor = bisect(self._vendor_cumweights, rng.random() * self._vendor_cumweights[-1])
            vendor = min(vendor, len(self.vendors) - 1)
        if device_type is None:
            device_type = bisect(self._type_cumweights, rng.random() * self._type_cumweights[-1])
            device_type = min(device_type, len(DEVICE_TYPES) - 1)
        kind = DEVICE_TYPES[device_type]
        noun = rng.choice(kind.nouns)
        if model is None:
            model = self._model_name(rng, self.vendors[vendor], kind, noun)
        slug = self._unique_slug(slugify(model) or slugify(noun) or "product")
        return Entry(
            serial=serial,
            wp_id=20_000 + serial * 3 + rng.randrange(3),
            slug=slug,
            vendor=vendor,
            device_type=device_type,
            model=model,
            certificate_id=self._unique_certificate(rng, certified),
            certified=certified,
        )

    @staticmethod
    def _model_name(rng: random.Random, vendor: Vendor, kind: DeviceType, noun: str) -> str:
        roll = rng.random()
        code = (
            f"{rng.choice(CODE_LETTERS)}{rng.randint(1, 999)}"
            f"{rng.choice(('', '', 'M', 'E', 'S', 'W'))}"
        )
        native = NATIVE_NOUNS.get(vendor.script, {}).get(kind.category)
        if native and roll < 0.3:
            return f"{native} {code}"
        if roll < 0.45:
            return noun
        if roll < 0.75:
            return f"{noun} {code}"
        return f"{vendor.brand} {code}"

    def _unique_slug(self, base: str) -> str:
        count = self._slug_counters.get(base, 0)
        slug = base
        while slug in self._used_slugs:
            count += 1
            slug = f"{base}-{count + 1}"
        self._slug_counters[base] = count
        self._used_slugs.add(slug)
        return slug

    def _unique_certificate(self, rng: random.Random, certified: date) -> str:
        while True:
            certificate = (
                f"CSA{certified.year % 100:02d}{rng.randrange(0x1000):03X}"
                f"MAT{rng.randint(40000, 99999)}-{rng.choice((0, 0, 0, 1, 24, 12)):02d}"
            )
            if certificate not in self._used_certificates:
                self._used_certificates.add(certificate)
                return certificate

    def _append(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._by_slug[entry.slug] = entry

    def enable_hostile(self) -> None:
        """Serve a few of the newest products badly (see hostile.py)."""
        self.hostile = hostile.choose([entry.slug for entry in self.newest_first()])

    def stores_fine(self, entry: Entry) -> bool:
        """Whether a correct crawler ends up storing this product (not a dead letter)."""
        kind = self.hostile.get(entry.slug)
        if kind is not None and hostile.HOSTILE_KINDS[kind] != "stored":
            return False
        # --- hostile_parsing.py's group ---
        kind = self.hostile_parsing.get(entry.slug)
        return kind is None or hostile_parsing.KINDS[kind] == "stored"

    def enable_hostile_parsing(self) -> None:
        """Serve a few products (listing page 2) as hostile_parsing.py says."""
        self.hostile_parsing = hostile_parsing.choose([e.slug for e in self.newest_first()])
        for slug, kind in self.hostile_parsing.items():
            if kind == "control_chars":  # the name itself: card, page and truth show it
                entry = self._by_slug[slug]
                entry.model += hostile_parsing.CONTROL_SUFFIX

    # --- reading ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def page_count(self) -> int:
        """Listing pages: 12 cards each, the last holding 1..12."""
        return -(-len(self._entries) // PAGE_SIZE)

    def page(self, number: int) -> list[Entry]:
        """Entries on listing page ``number`` (1-based), newest first."""
        end = len(self._entries) - (number - 1) * PAGE_SIZE
        start = max(0, end - PAGE_SIZE)
        if number < 1 or end <= 0:
            return []
        return self._entries[start:end][::-1]

    def newest_first(self) -> Iterator[Entry]:
        """Every listed entry, newest certification first."""
        return reversed(self._entries)

    def entry(self, slug: str) -> Entry | None:
        """The listed entry with this slug (None if unknown or delisted)."""
        return self._by_slug.get(slug)

    def more_by(self, entry: Entry, limit: int = 4) -> list[Entry]:
        """Other listed products of the same vendor, newest first."""
        if self._by_vendor is None:
            index: dict[int, list[Entry]] = {}
            for other in reversed(self._entries):
                index.setdefault(other.vendor, []).append(other)
            self._by_vendor = index
        others = (e for e in self._by_vendor.get(entry.vendor, ()) if e is not entry)
        return [e for _, e in zip(range(limit), others, strict=False)]

    def product(self, entry: Entry) -> Product:
        """Every detail-page fact of ``entry``, derived from its seeded stream."""
        vendor = self.vendors[entry.vendor]
        kind = DEVICE_TYPES[entry.device_type]
        rng = stream(self.seed, "product", entry.serial)
        transports = () if rng.random() < 0.05 else rng.choice(kind.transports)
        family_id = f"FAM{rng.randint(100000, 299999)}" if rng.random() < 0.8 else None
        family_sku = (entry.model if rng.random() < 0.5 else random_sku(rng)) if family_id else None
        variant_roll = rng.random()
        extra_label, extra_values = rng.choice(EXTRA_LABELS)
        description = None
        if rng.random() < 0.85:
            description = rng.choice(DESCRIPTIONS).format(
                model=entry.model, kind=kind.name.lower(), vendor=vendor.name
            )
        if entry.serial == self._sql_serial:
            description = SQL_DESCRIPTION
        tis_roll = rng.random()
        product = Product(
            path=entry.path,
            slug=entry.slug,
            wp_id=entry.wp_id,
            manufacturer=vendor.name,
            model=entry.model,
            device_type=kind.label,
            device_type_id=kind.type_id,
            certificate_id=entry.certificate_id,
            certified=entry.certified,
            vid=vendor.vid,
            pid=rng.randint(1, 0xFFFE),
            firmware_version=random_version(rng) if rng.random() < 0.9 else None,
            hardware_version=random_hardware_version(rng) if rng.random() < 0.85 else None,
            software_version=random_version(rng) if rng.random() < 0.9 else None,
            family_id=family_id,
            family_sku=family_sku,
            family_variant_sku=f"{family_sku}-{rng.choice(('EU', 'US', 'UK', 'W'))}"
            if family_sku and variant_roll < 0.35
            else None,
            tis_trp_tested=None if tis_roll < 0.15 else tis_roll < 0.45,
            specification_version=spec_version_for(entry.certified, rng.random() < 0.75),
            transports=transports,
            application_categories=kind.app_categories,
            description=description,
            compliance_document=f"{COMPLIANCE_DIR}{entry.certificate_id}.zip"
            if rng.random() < 0.9
            else None,
            extra_field=(extra_label, rng.choice(extra_values)),
        )
        for revision in range(1, entry.revision + 1):
            product = changed(product, stream(self.seed, "change", entry.serial, revision))
        return product

    # --- mutations ----------------------------------------------------------

    def mutate(self, add: int = 0, remove: int = 0, change: int = 0) -> MutationResult:
        """Apply one deterministic mutation (seeded by seed + mutation counter).

        Removals and changes pick among the products listed before this call;
        additions are certified after the current newest product and go to the
        front of the listing, shifting every page.
        """
        for name, value in (("add", add), ("remove", remove), ("change", change)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise CatalogueError(f"{name} must be a non-negative integer")
        if remove >= len(self._entries):
            raise CatalogueError(f"cannot remove {remove} of {len(self._entries)} products")
        if remove + change > len(self._entries):
            raise CatalogueError("remove + change exceeds the number of products")
        if len(self._entries) - remove + add > 2 * MAX_PRODUCTS:
            raise CatalogueError(f"the catalogue is capped at {2 * MAX_PRODUCTS} products")
        self.mutations += 1
        rng = stream(self.seed, "mutation", self.mutations)
        result = MutationResult()
        picked = rng.sample(range(len(self._entries)), remove + change)
        gone = {self._entries[i].serial for i in picked[:remove]}
        for i in picked[:remove]:
            result.removed.append(self._entries[i].path)
            del self._by_slug[self._entries[i].slug]
            self.removed.append(self._entries[i])
        for i in picked[remove:]:
            entry = self._entries[i]
            before = self.product(entry)
            entry.revision += 1
            after = self.product(entry)
            result.changed[entry.path] = [
                name for name in CHANGEABLE if getattr(before, name) != getattr(after, name)
            ]
        if gone:
            self._entries = [e for e in self._entries if e.serial not in gone]
        day = self._entries[-1].certified + timedelta(days=1)
        for k in range(add):
            if k:
                day += timedelta(days=rng.choice((0, 0, 1)))
            entry = self._new_entry(rng, day)
            self._append(entry)
            result.added.append(entry.path)
        result.added.reverse()  # newest first, like the listing
        self._by_vendor = None
        return result
