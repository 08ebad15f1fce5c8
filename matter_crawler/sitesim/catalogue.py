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

import csv
import io
import math
import pkgutil
import random
import re
import unicodedata
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from itertools import accumulate
from typing import Any

from . import hostile, hostile_parsing
from .seeding import stream

PAGE_SIZE = 12
MIN_PRODUCTS = 10
MAX_PRODUCTS = 100_000
# The catalogue's own calendar: Matter 1.0 certifications opened in October 2022,
# and the newest product is certified on a fixed "today" (never the wall clock).
FIRST_DAY = date(2022, 10, 4)
TODAY = date(2026, 11, 20)
VENDOR_COUNT = 300
COMPLIANCE_DIR = "/wp-content/uploads/compliance/"

# Specification versions and the day each became certifiable.
SPEC_RELEASES: tuple[tuple[date, str], ...] = (
    (date(2022, 10, 4), "1.0"),
    (date(2023, 5, 18), "1.1"),
    (date(2023, 10, 23), "1.2"),
    (date(2024, 5, 8), "1.3"),
    (date(2024, 11, 7), "1.4"),
    (date(2025, 7, 1), "1.5"),
)

# Device types the issue requires in every catalogue of 12 products or more.
REQUIRED_DEVICE_TYPES = (
    0x0100, 0x0101, 0x010D, 0x010A, 0x000A, 0x0301,
    0x000E, 0x0015, 0x0202, 0x0028, 0x0022, 0x0074,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeviceType:
    """A Matter device type and how the catalogue presents products of it."""

    type_id: int
    name: str
    category: str
    label: str  # consumer-facing text of h6.entry-category
    app_categories: tuple[str, ...]
    nouns: tuple[str, ...]  # generic model names, e.g. "Smart Plug"
    transports: tuple[tuple[str, ...], ...]
    weight: float


@dataclass(frozen=True, slots=True)
class Vendor:
    """A certificate holder: its displayed name and Matter vendor id."""

    name: str
    vid: int
    brand: str  # short name used in model names
    script: str  # "latin", "hangul" or "han": picks native-language model names


@dataclass(slots=True)
class Entry:
    """What the catalogue fixes about a product up front (what a card shows).

    ``serial`` is the product's stable identity (certification order, 0 =
    oldest, never reused); ``revision`` counts the detail-field changes that
    mutations applied to it.
    """

    serial: int
    wp_id: int
    slug: str
    vendor: int
    device_type: int
    model: str
    certificate_id: str
    certified: date
    revision: int = 0

    @property
    def path(self) -> str:
        """The detail page's path, e.g. ``/csa_product/wi-fi-plug-27/``."""
        return f"/csa_product/{self.slug}/"


@dataclass(frozen=True, slots=True)
class Product:
    """Everything a product's detail page states."""

    path: str
    slug: str
    wp_id: int
    manufacturer: str
    model: str
    device_type: str
    device_type_id: int
    certificate_id: str
    certified: date
    vid: int
    pid: int
    firmware_version: str | None
    hardware_version: str | None
    software_version: str | None
    family_id: str | None
    family_sku: str | None
    family_variant_sku: str | None
    tis_trp_tested: bool | None
    specification_version: str
    transports: tuple[str, ...]
    application_categories: tuple[str, ...]
    description: str | None
    compliance_document: str | None  # path of the ZIP, or None
    # One label the crawler does not know, shown only on pages with the
    # "extra label" markup variant.
    extra_field: tuple[str, str]


@dataclass(slots=True)
class MutationResult:
    """What one ``POST /__sim__/mutate`` did, as paths."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)


class CatalogueError(ValueError):
    """A request the catalogue cannot satisfy (bad size, too many removals...)."""


# --- reference data --------------------------------------------------------

# Presentation per Matter device-type category, then per device-type id.
# (label, application categories, generic model nouns, transport options)
_Presentation = tuple[str, tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]
_BY_CATEGORY: dict[str, _Presentation] = {
    "Lighting": ("Light Bulb", ("Lighting",),
                 ("LED Bulb", "Smart Bulb A19", "LED Lamp Dimmable", "Filament Bulb", "Downlight",
                  "Ceiling Light", "Light Strip", "Smart Bulb GU10"),
                 (("Wi-Fi", "Bluetooth"), ("Thread", "Bluetooth"), ("Wi-Fi",), ("Thread",))),
    "Smart Plugs": ("Smart Plug", ("Smart Plugs & Outlets",),
                    ("Smart Plug", "Wi-Fi Plug", "Smart Plug Mini", "Outdoor Plug", "Power Strip"),
                    (("Wi-Fi", "Bluetooth"), ("Wi-Fi",), ("Thread", "Bluetooth"))),
    "Switches": ("Switch", ("Switches & Controls",),
                 ("Smart Switch", "Dimmer Switch", "Scene Controller", "Wall Switch"),
                 (("Thread", "Bluetooth"), ("Wi-Fi", "Bluetooth"), ("Thread",))),
    "Sensors": ("Sensor", ("Sensors",),
                ("Sensor", "Multi Sensor", "Smart Sensor"),
                (("Thread", "Bluetooth"), ("Thread",), ("Wi-Fi",))),
    "Closures": ("Door Lock", ("Security", "Locks"),
                 ("Smart Lock", "Deadbolt", "Door Lock Pro"),
                 (("Thread", "Bluetooth"), ("Wi-Fi", "Bluetooth"))),
    "Bridge": ("Bridge", ("Hubs & Bridges",),
               ("Smart Hub", "Bridge", "Home Hub"),
               (("Ethernet",), ("Wi-Fi", "Ethernet"), ("Ethernet", "Thread"))),
    "HVAC": ("Climate", ("Climate Control",),
             ("Climate Controller",),
             (("Wi-Fi",), ("Wi-Fi", "Bluetooth"), ("Thread",))),
    "Media": ("Matter Device", ("Entertainment",),
              ("Smart TV", "Streaming Box"),
              (("Ethernet",), ("Wi-Fi", "Ethernet"), ("Wi-Fi",))),
    "Appliances": ("Appliance", ("Appliances",),
                   ("Smart Appliance",),
                   (("Wi-Fi",), ("Wi-Fi", "Bluetooth"))),
    "Network Infrastructure": ("Thread Border Router", ("Hubs & Bridges",),
                               ("Border Router", "Mesh Router"),
                               (("Ethernet", "Thread"), ("Wi-Fi", "Thread"))),
    "Energy": ("Energy Management", ("Energy",),
               ("Energy Meter", "EV Charger"),
               (("Wi-Fi",), ("Ethernet",), ("Wi-Fi", "Ethernet"))),
    "Safety": ("Smoke & CO Alarm", ("Safety & Security",),
               ("Smoke Alarm", "Smoke & CO Detector"),
               (("Thread",), ("Wi-Fi",))),
    "Utility": ("Water Management", ("Utilities",),
                ("Water Valve", "Pump Controller"),
                (("Wi-Fi",), ("Thread",))),
}  # fmt: skip

_BY_TYPE: dict[int, dict[str, Any]] = {
    0x000A: {"label": "Door Lock", "weight": 5.0},
    0x000B: {"label": "Door Lock", "nouns": ("Lock Controller",)},
    0x000E: {"label": "Bridge", "weight": 4.0},
    0x0840: {"label": "Bridge", "app": ("Hubs & Bridges", "Controllers")},
    0x0015: {"nouns": ("Contact Sensor", "Door/Window Sensor", "Door & Window Sensor"),
             "app": ("Sensors", "Security"), "weight": 4.0},
    0x0107: {"nouns": ("Motion Sensor", "Occupancy Sensor")},
    0x0302: {"nouns": ("Temperature Sensor", "Temperature & Humidity Sensor")},
    0x0022: {"label": "Speaker", "nouns": ("Smart Speaker", "Soundbar"), "weight": 2.0},
    0x0028: {"nouns": ("Smart TV",), "app": ("Matter Device",), "weight": 3.0},
    0x0074: {"label": "Robotic Vacuum Cleaner", "nouns": ("Robot Vacuum", "Robot Vacuum S8"),
             "app": ("Appliances", "Cleaning"), "weight": 2.0},
    0x0100: {"weight": 6.0},
    0x0101: {"weight": 10.0},
    0x010C: {"weight": 6.0},
    0x010D: {"app": ("Lighting", "Light Strips"), "weight": 8.0},
    0x010A: {"weight": 14.0},
    0x010B: {"weight": 3.0},
    0x0202: {"label": "Window Covering", "app": ("Blinds & Shades",),
             "nouns": ("Roller Shade", "Blind Motor", "Curtain Motor"), "weight": 4.0},
    0x0203: {"label": "Window Covering", "app": ("Blinds & Shades",), "nouns": ("Shade Remote",)},
    0x0301: {"label": "Thermostat", "nouns": ("Smart Thermostat", "Thermostat"), "weight": 3.0},
    0x002B: {"label": "Fan", "nouns": ("Ceiling Fan", "Tower Fan")},
    0x002D: {"label": "Air Purifier", "nouns": ("Air Purifier",)},
    0x0072: {"label": "Air Conditioner", "nouns": ("Room Air Conditioner",)},
    0x0076: {"weight": 1.5},
    0x0091: {"weight": 1.5},
}  # fmt: skip

# Model names in the vendor's own script, for vendors that write them so.
_NATIVE_NOUNS = {
    "hangul": {"Lighting": "스마트 전구", "Smart Plugs": "스마트 플러그", "Closures": "도어락",
               "Sensors": "멀티 센서", "Bridge": "스마트 허브"},
    "han": {"Lighting": "智能灯泡", "Smart Plugs": "智能插座", "Closures": "智能门锁",
            "Sensors": "智能传感器", "Bridge": "网关"},
}  # fmt: skip

_SPECIAL_VENDORS: tuple[tuple[str, str, str], ...] = (
    # HTML-special characters: the markup must escape every one of them.
    ('O\'Reilly "Smart" Home <Labs> & Co.', "O'Reilly", "latin"),
    ("주식회사 스마트홈랩", "SmartHomeLab", "hangul"),
    ("深圳市智能家居科技有限公司", "ZhiNeng", "han"),
    ("Größe & Söhne Elektrotechnik GmbH", "Größe", "latin"),
)
_OTHER_NON_ASCII_VENDORS: tuple[tuple[str, str, str], ...] = (
    ("Müller Lichttechnik AG", "Müller", "latin"),
    ("Schäfer Haustechnik GmbH", "Schäfer", "latin"),
    ("Königstein Elektronik GmbH & Co. KG", "Königstein", "latin"),
    ("한빛전자 주식회사", "Hanbit", "hangul"),
    ("누리홈테크 주식회사", "NuriHome", "hangul"),
    ("杭州云灯科技有限公司", "YunDeng", "han"),
    ("广州智联电子有限公司", "ZhiLian", "han"),
    ("Øresund Smart Living ApS", "Øresund", "latin"),
    ("Société Lumière Connectée SAS", "Lumière", "latin"),
    ("Ålesund Smarthjem AS", "Ålesund", "latin"),
)
_PREFIXES = (
    "Nova", "Lumen", "Brightway", "Zentra", "Hexa", "Orbit", "Tidal", "Aurora", "Kestrel",
    "Solace", "Vireo", "Quanta", "Halcyon", "Meridian", "Polaris", "Sable", "Cobalt", "Ember",
    "Juniper", "Lattice", "Nimbus", "Onyx", "Pinnacle", "Radiant", "Sierra", "Terra", "Umbra",
    "Vanta", "Willow", "Xenon", "Yonder", "Zephyr", "Arbor", "Beacon", "Cirrus", "Deltaway",
    "Echo", "Fathom", "Granite", "Harbor",
)  # fmt: skip
_SUFFIXES = (
    "Home", "Tech", "Labs", "Electronics", "Lighting", "Systems", "Devices", "IoT", "Smart",
    "Connect", "Living", "Innovations",
)  # fmt: skip
_FORMS = (
    "Inc.", "Co., Ltd.", "Ltd.", "LLC", "GmbH", "Corporation", "Limited", "B.V.", "S.A.",
    "AB", "Pty Ltd", "Oy",
)  # fmt: skip
_CODE_LETTERS = "ABCDEFGHJKLMNPRSTVWXZ"
_DESCRIPTIONS = (
    "The {model} is a Matter-certified {kind} from {vendor}.",
    "{model}: a {kind} that works with Apple Home, Google Home & Amazon Alexa.",
    "Control the {model} locally over Matter; no cloud account is needed.",
    "A {kind} for everyday use. Set up in seconds with the QR code on the device.",
    "The {model} brings reliable {kind} control to any Matter ecosystem.",
)
_SQL_DESCRIPTION = "Robert'); DROP TABLE products;--"
_SCRIPT_MODEL = "<script>alert(1)</script>"
_EXTRA_LABELS = (
    ("Certification Type", ("Product", "Product (Rapid Recertification)", "Product (FAM)")),
    ("Product Finder Category", ("Lighting & Electrical", "Home Security", "Appliances")),
)


def _load_device_types() -> tuple[DeviceType, ...]:
    raw = pkgutil.get_data("matter_crawler.sitesim", "data/device_types.csv")
    if raw is None:  # pragma: no cover - only when the package data is missing
        raise RuntimeError("matter_crawler.sitesim is missing data/device_types.csv")
    types = []
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
        type_id = int(row["device_type_id"], 16)
        label, app, nouns, transports = _BY_CATEGORY[row["category"]]
        extra = _BY_TYPE.get(type_id, {})
        if row["category"] in ("Sensors", "Appliances", "HVAC", "Energy", "Utility"):
            nouns = (row["name"],)
        types.append(
            DeviceType(
                type_id=type_id,
                name=row["name"],
                category=row["category"],
                label=str(extra.get("label", label)),
                app_categories=tuple(extra.get("app", app)),
                nouns=tuple(extra.get("nouns", nouns)),
                transports=transports,
                weight=float(extra.get("weight", 1.0)),
            )
        )
    return tuple(types)


DEVICE_TYPES: tuple[DeviceType, ...] = _load_device_types()


def slugify(text: str) -> str:
    """WordPress-like slug: ASCII lowercase words joined by hyphens ('' if none)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def spec_version_for(day: date, newest: bool) -> str:
    """The newest specification certifiable on ``day`` (or the one before it)."""
    index = max(i for i, (start, _) in enumerate(SPEC_RELEASES) if start <= day)
    if not newest and index > 0:
        index -= 1
    return SPEC_RELEASES[index][1]


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
        combos = [(p, s, f) for p in _PREFIXES for s in _SUFFIXES for f in _FORMS]
        named = list(_SPECIAL_VENDORS + _OTHER_NON_ASCII_VENDORS)
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
            count - 2 - 2 * k: index_of[name] for k, (name, _, _) in enumerate(_SPECIAL_VENDORS)
        }
        script_model_at = count - 3
        self._sql_serial = count - 5
        for serial, offset in enumerate(offsets):
            vendor = showcase_vendors.get(serial)
            model = _SCRIPT_MODEL if serial == script_model_at else None
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
            f"{rng.choice(_CODE_LETTERS)}{rng.randint(1, 999)}"
            f"{rng.choice(('', '', 'M', 'E', 'S', 'W'))}"
        )
        native = _NATIVE_NOUNS.get(vendor.script, {}).get(kind.category)
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
        family_sku = (entry.model if rng.random() < 0.5 else _sku(rng)) if family_id else None
        variant_roll = rng.random()
        extra_label, extra_values = rng.choice(_EXTRA_LABELS)
        description = None
        if rng.random() < 0.85:
            description = rng.choice(_DESCRIPTIONS).format(
                model=entry.model, kind=kind.name.lower(), vendor=vendor.name
            )
        if entry.serial == self._sql_serial:
            description = _SQL_DESCRIPTION
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
            firmware_version=_version(rng) if rng.random() < 0.9 else None,
            hardware_version=_hardware_version(rng) if rng.random() < 0.85 else None,
            software_version=_version(rng) if rng.random() < 0.9 else None,
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
            product = _changed(product, stream(self.seed, "change", entry.serial, revision))
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
                name for name in _CHANGEABLE if getattr(before, name) != getattr(after, name)
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


_CHANGEABLE = ("firmware_version", "software_version", "hardware_version")


def _version(rng: random.Random) -> str:
    style = rng.random()
    a, b, c = rng.randint(0, 12), rng.randint(0, 30), rng.randint(0, 120)
    if style < 0.45:
        return f"{a}.{b}.{c}"
    if style < 0.65:
        return f"v{a}.{b}.{c}"
    if style < 0.85:
        return f"{a}.{b}.{c}.{rng.randint(0, 9999)}"
    return f"TPN{rng.randint(100, 999)}E_V{a:03d}.{b:03d}.{c:03d}.000"


def _hardware_version(rng: random.Random) -> str:
    return rng.choice(("1.0", "1.1", "2.0", "2", "A1", "M0G", "Rev 3", "V1.2", "HW2"))


def _sku(rng: random.Random) -> str:
    return f"{rng.choice(_CODE_LETTERS)}{rng.choice(_CODE_LETTERS)}-{rng.randint(1000, 99999)}"


def _bump(version: str | None, rng: random.Random) -> str:
    """A newer version string than ``version`` (its last number increased)."""
    if version is None:
        return _version(rng)
    numbers = list(re.finditer(r"\d+", version))
    last = numbers[-1]
    bumped = str(int(last.group()) + 1 + rng.randrange(3)).zfill(len(last.group()))
    return f"{version[: last.start()]}{bumped}{version[last.end() :]}"


def _changed(product: Product, rng: random.Random) -> Product:
    """One detail-only change: always a new firmware, sometimes more."""
    software = product.software_version
    if rng.random() < 0.6:
        software = _bump(software, rng)
    hardware = product.hardware_version
    if rng.random() < 0.15:
        hardware = _hardware_version(rng) if hardware is None else _bump(hardware, rng)
    return replace(
        product,
        firmware_version=_bump(product.firmware_version, rng),
        software_version=software,
        hardware_version=hardware,
    )
