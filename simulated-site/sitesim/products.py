"""A product of the catalogue: its card (:class:`Entry`), its detail page
(:class:`Product`), and the seeded version strings and SKUs its page states.

A mutation's detail-only change (:func:`changed`) rewrites the versions only, so
a product keeps its identity (slug, certificate) across catalogue mutations.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from datetime import date

from .reference import CODE_LETTERS


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


#: The detail fields a mutation's change may alter (MutationResult.changed names them).
CHANGEABLE = ("firmware_version", "software_version", "hardware_version")


def random_version(rng: random.Random) -> str:
    """A firmware or software version in one of the styles vendors use."""
    style = rng.random()
    a, b, c = rng.randint(0, 12), rng.randint(0, 30), rng.randint(0, 120)
    if style < 0.45:
        return f"{a}.{b}.{c}"
    if style < 0.65:
        return f"v{a}.{b}.{c}"
    if style < 0.85:
        return f"{a}.{b}.{c}.{rng.randint(0, 9999)}"
    return f"TPN{rng.randint(100, 999)}E_V{a:03d}.{b:03d}.{c:03d}.000"


def random_hardware_version(rng: random.Random) -> str:
    """A hardware revision as vendors write them."""
    return rng.choice(("1.0", "1.1", "2.0", "2", "A1", "M0G", "Rev 3", "V1.2", "HW2"))


def random_sku(rng: random.Random) -> str:
    """A family SKU that is not the model name."""
    return f"{rng.choice(CODE_LETTERS)}{rng.choice(CODE_LETTERS)}-{rng.randint(1000, 99999)}"


def bump(version: str | None, rng: random.Random) -> str:
    """A newer version string than ``version`` (its last number increased)."""
    if version is None:
        return random_version(rng)
    numbers = list(re.finditer(r"\d+", version))
    last = numbers[-1]
    bumped = str(int(last.group()) + 1 + rng.randrange(3)).zfill(len(last.group()))
    return f"{version[: last.start()]}{bumped}{version[last.end() :]}"


def changed(product: Product, rng: random.Random) -> Product:
    """One detail-only change: always a new firmware, sometimes more."""
    software = product.software_version
    if rng.random() < 0.6:
        software = bump(software, rng)
    hardware = product.hardware_version
    if rng.random() < 0.15:
        hardware = random_hardware_version(rng) if hardware is None else bump(hardware, rng)
    return replace(
        product,
        firmware_version=bump(product.firmware_version, rng),
        software_version=software,
        hardware_version=hardware,
    )
