"""Turn a parsed detail page into a normalised :class:`~matter_crawler.items.ProductItem`.

Labels are matched loosely (case, spacing and a trailing colon do not matter).
Labels we do not know are kept in ``extra_fields`` under the label as shown, so
a change of the site loses nothing. A value that cannot be read is not guessed:
it is left empty and named in ``problems``, which makes the validation pipeline
dead-letter the item with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime

from ..items import ProductItem
from ..safe_text import quoted, shortened
from .detail import DetailPage

#: Loose label (lower case, single spaces, no trailing colon) -> record field.
LABEL_FIELDS: dict[str, str] = {
    "certificate id": "certificate_id",
    "certificate": "certificate_id",
    "certified date": "certification_date",
    "certification date": "certification_date",
    "date certified": "certification_date",
    "vendor id": "vid",
    "product id": "pid",
    "firmware version": "firmware_version",
    "hardware version": "hardware_version",
    "software version": "software_version",
    "family id": "family_id",
    "family sku": "family_sku",
    "family variant sku": "family_variant_sku",
    "tis/trp tested": "tis_trp_tested",
    "specification version": "specification_version",
    "spec version": "specification_version",
    "transport interface": "transport_interface",
    "transport interfaces": "transport_interface",
    "primary device type id": "primary_device_type_id",
    "primary device type": "primary_device_type_id",
}

_spaces = re.compile(r"\s+")
# a few leading zeros are fine; more digits than that are not an id
_hex_id = re.compile(r"0[xX]([0-9A-Fa-f]{1,8})")
_decimal_id = re.compile(r"[0-9]{1,8}")
_bare_hex_id = re.compile(r"[0-9A-Fa-f]{1,4}")
_list_separators = re.compile(r"\s*[,;]\s*")


def label_key(label: str) -> str:
    """The loose form of a label used to look it up."""
    return _spaces.sub(" ", label).strip().rstrip(":").strip().lower()


def parse_id16(value: str) -> int:
    """Read a 16-bit id shown as hex (``0x0D02``, ``0D0A``) or decimal (``3330``).

    ASCII digits only (``str.isdigit`` would also take ``²``), and no more of them
    than a 16-bit number has room for (a thousand-digit number is not an id).
    """
    text = value.strip()
    if match := _hex_id.fullmatch(text):
        number = int(match.group(1), 16)
    elif _decimal_id.fullmatch(text):
        number = int(text, 10)
    elif _bare_hex_id.fullmatch(text):
        number = int(text, 16)
    else:
        raise ValueError(f"{quoted(value)} is not a hex or decimal id")
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"{quoted(value)} is outside the 16-bit id range")
    return number


def format_id16(number: int) -> str:
    return f"0x{number:04X}"


def parse_date(value: str) -> str:
    """``MM/DD/YYYY`` (as the site shows it) or an ISO date -> ISO 8601 ``YYYY-MM-DD``."""
    text = value.strip()
    for pattern in ("%m/%d/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"{quoted(value)} is not a MM/DD/YYYY date")


def parse_yes_no(value: str) -> bool:
    text = value.strip().lower()
    if text in {"yes", "y", "true"}:
        return True
    if text in {"no", "n", "false"}:
        return False
    raise ValueError(f"{quoted(value)} is neither Yes nor No")


def parse_list(value: str) -> list[str]:
    """``"Wi-Fi, Bluetooth"`` -> ``["Wi-Fi", "Bluetooth"]``."""
    return [part for part in _list_separators.split(value.strip()) if part]


def build_product(page: DetailPage, url: str) -> ProductItem:
    """Normalise a parsed detail page into a product record."""
    item = ProductItem(
        url=url,
        manufacturer=page.manufacturer,
        model=page.model,
        device_type=page.device_type,
        application_categories=list(page.application_categories),
        description=page.description,
        compliance_document_url=page.compliance_document_url,
        problems=list(page.problems),
    )
    seen: set[str] = set()
    for label, value in page.fields:
        field_name = LABEL_FIELDS.get(label_key(label))
        if field_name is None:
            item.extra_fields[label] = value
            continue
        if field_name in seen:
            item.problems.append(f"label {quoted(label)} appears twice; kept the first value")
            continue
        seen.add(field_name)
        if value is not None:
            _set_field(item, field_name, label, value)
    return item


def _set_field(item: ProductItem, field_name: str, label: str, value: str) -> None:
    setter = _SETTERS.get(field_name)
    if setter is None:
        setattr(item, field_name, value)
        return
    try:
        setter(item, value)
    except ValueError as error:
        item.problems.append(f"{shortened(label)}: {error}")


def _set_vid(item: ProductItem, value: str) -> None:
    item.vid_int = parse_id16(value)
    item.vid = format_id16(item.vid_int)


def _set_pid(item: ProductItem, value: str) -> None:
    item.pid_int = parse_id16(value)
    item.pid = format_id16(item.pid_int)


def _set_device_type_id(item: ProductItem, value: str) -> None:
    item.primary_device_type_id = format_id16(parse_id16(value))


def _set_date(item: ProductItem, value: str) -> None:
    item.certification_date = parse_date(value)


def _set_tis_trp(item: ProductItem, value: str) -> None:
    item.tis_trp_tested = parse_yes_no(value)


def _set_transports(item: ProductItem, value: str) -> None:
    item.transport_interface = parse_list(value)


_SETTERS: dict[str, Callable[[ProductItem, str], None]] = {
    "vid": _set_vid,
    "pid": _set_pid,
    "primary_device_type_id": _set_device_type_id,
    "certification_date": _set_date,
    "tis_trp_tested": _set_tis_trp,
    "transport_interface": _set_transports,
}


def iso_date(value: str | None) -> date | None:
    """An ISO date string as a :class:`datetime.date` (for typed storage and export)."""
    return date.fromisoformat(value) if value else None
