"""The catalogue's reference data: its calendar, device types, vendors and words.

Fixed tables only (nothing seeded here): :mod:`.catalogue` draws from them with
each catalogue's own seeded streams. The device types come from
``data/device_types.csv``; how the catalogue presents each one is below.
"""

from __future__ import annotations

import csv
import io
import pkgutil
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

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
NATIVE_NOUNS = {
    "hangul": {"Lighting": "스마트 전구", "Smart Plugs": "스마트 플러그", "Closures": "도어락",
               "Sensors": "멀티 센서", "Bridge": "스마트 허브"},
    "han": {"Lighting": "智能灯泡", "Smart Plugs": "智能插座", "Closures": "智能门锁",
            "Sensors": "智能传感器", "Bridge": "网关"},
}  # fmt: skip

SPECIAL_VENDORS: tuple[tuple[str, str, str], ...] = (
    # HTML-special characters: the markup must escape every one of them.
    ('O\'Reilly "Smart" Home <Labs> & Co.', "O'Reilly", "latin"),
    ("주식회사 스마트홈랩", "SmartHomeLab", "hangul"),
    ("深圳市智能家居科技有限公司", "ZhiNeng", "han"),
    ("Größe & Söhne Elektrotechnik GmbH", "Größe", "latin"),
)
OTHER_NON_ASCII_VENDORS: tuple[tuple[str, str, str], ...] = (
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
PREFIXES = (
    "Nova", "Lumen", "Brightway", "Zentra", "Hexa", "Orbit", "Tidal", "Aurora", "Kestrel",
    "Solace", "Vireo", "Quanta", "Halcyon", "Meridian", "Polaris", "Sable", "Cobalt", "Ember",
    "Juniper", "Lattice", "Nimbus", "Onyx", "Pinnacle", "Radiant", "Sierra", "Terra", "Umbra",
    "Vanta", "Willow", "Xenon", "Yonder", "Zephyr", "Arbor", "Beacon", "Cirrus", "Deltaway",
    "Echo", "Fathom", "Granite", "Harbor",
)  # fmt: skip
SUFFIXES = (
    "Home", "Tech", "Labs", "Electronics", "Lighting", "Systems", "Devices", "IoT", "Smart",
    "Connect", "Living", "Innovations",
)  # fmt: skip
FORMS = (
    "Inc.", "Co., Ltd.", "Ltd.", "LLC", "GmbH", "Corporation", "Limited", "B.V.", "S.A.",
    "AB", "Pty Ltd", "Oy",
)  # fmt: skip
CODE_LETTERS = "ABCDEFGHJKLMNPRSTVWXZ"
DESCRIPTIONS = (
    "The {model} is a Matter-certified {kind} from {vendor}.",
    "{model}: a {kind} that works with Apple Home, Google Home & Amazon Alexa.",
    "Control the {model} locally over Matter; no cloud account is needed.",
    "A {kind} for everyday use. Set up in seconds with the QR code on the device.",
    "The {model} brings reliable {kind} control to any Matter ecosystem.",
)
SQL_DESCRIPTION = "Robert'); DROP TABLE products;--"
SCRIPT_MODEL = "<script>alert(1)</script>"
EXTRA_LABELS = (
    ("Certification Type", ("Product", "Product (Rapid Recertification)", "Product (FAM)")),
    ("Product Finder Category", ("Lighting & Electrical", "Home Security", "Appliances")),
)


def _load_device_types() -> tuple[DeviceType, ...]:
    raw = pkgutil.get_data("sitesim", "data/device_types.csv")
    if raw is None:  # pragma: no cover - only when the package data is missing
        raise RuntimeError("sitesim is missing data/device_types.csv")
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
