"""Pure reading of the DCL's JSON answers: bytes in, records and page facts out, no I/O.

The REST server is the cosmos-sdk gRPC gateway (docs/dcl/README.md): field names
are the proto names, 32-bit integers are JSON numbers, 64-bit ones JSON strings
of digits, and a list answer carries ``"pagination": {"next_key", "total"}``
(``next_key`` null on the last page, ``total`` a uint64 string, ``"0"`` unless
counted). Which message field becomes which column, and how its value is read,
is :data:`~matter_crawler.dcl.records.KINDS`.

A value of the wrong shape (a string where a number belongs, a number out of its
type's range) is reported in the record's ``problems``, so validation
dead-letters that record alone; an absent or null field is the type's zero
value, as proto3's JSON mapping reads it (a node older than a field omits it),
except a key field, without which the record cannot be named. An answer that is
not JSON, or not the shape of its path's answer, raises
:class:`~matter_crawler.parsing.PageParseError` with the reason: the page is
dead-lettered as a whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..parsing import PageParseError
from .records import KINDS, STATUS_LISTS, DclRecord, RecordKind

_DIGITS = re.compile(r"[0-9]+")
_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_ZERO: dict[str, Any] = {
    "int32": 0,
    "uint32": 0,
    "uint64": 0,
    "string": "",
    "bool": False,
    "history": [],
}


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a list: its records, the key of the next page, the counted total."""

    records: list[DclRecord]
    next_key: str | None  # None: the last page
    total: int  # the list's length when the request counted it, else 0


# -- URLs -------------------------------------------------------------------------------


def list_page_url(
    base_url: str,
    path: str,
    limit: int,
    *,
    key: str | None = None,
    offset: int | None = None,
    count_total: bool = False,
) -> str:
    """A list page's URL: the first page, the page after ``key``, or the page at ``offset``.

    The key is the previous answer's ``next_key`` (base64): escaped whole, so a
    ``+`` is not read as a space nor a ``/`` as a path separator.
    """
    query = [f"pagination.limit={limit}"]
    if key is not None:
        query.append(f"pagination.key={quote(key, safe='')}")
    if offset:
        query.append(f"pagination.offset={offset}")
    if count_total:
        query.append("pagination.count_total=true")
    return f"{base_url.rstrip('/')}{path}?{'&'.join(query)}"


def versions_url(base_url: str, vid: int, pid: int) -> str:
    """The URL listing a model's software version numbers."""
    return f"{base_url.rstrip('/')}/dcl/model/versions/{vid}/{pid}"


def record_url(base_url: str, kind: RecordKind, values: dict[str, Any]) -> str:
    """A record's single-record URL (its kind must have a record path)."""
    assert kind.record_path is not None, f"{kind.name} records have no single-record path"
    path = kind.record_path.format(**{c: quote(str(values[c]), safe="") for c in kind.key})
    return base_url.rstrip("/") + path


def status_entry_url(base_url: str, list_name: str, values: dict[str, Any]) -> str:
    """A status-list entry's name: the list's URL and the entry's key (it has no path)."""
    path, _ = STATUS_LISTS[list_name]
    key = "/".join(str(values[c]) for c in KINDS["model_status"].key if c != "list")
    return f"{base_url.rstrip('/')}{path}#{key}"


# -- values -----------------------------------------------------------------------------


def read_value(value: Any, value_kind: str) -> tuple[Any, str | None]:
    """``value`` read as ``value_kind``: (the Python value, None) or (None, what is wrong)."""
    if value is None:
        return _zero(value_kind), None
    if value_kind in ("int32", "uint32"):
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"not a number: {_show(value)}"
        return _in_range(value, value_kind)
    if value_kind == "uint64":
        if not isinstance(value, str) or not _DIGITS.fullmatch(value):
            return None, f"not a string of digits: {_show(value)}"
        return _in_range(int(value), value_kind)
    if value_kind == "string":
        if not isinstance(value, str):
            return None, f"not a string: {_show(value)}"
        return value, None
    if value_kind == "bool":
        if not isinstance(value, bool):
            return None, f"not a boolean: {_show(value)}"
        return value, None
    if value_kind == "history":
        if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
            return None, f"not a list of objects: {_show(value)}"
        return value, None
    raise ValueError(f"unknown value kind {value_kind!r}")


def _zero(value_kind: str) -> Any:
    zero = _ZERO[value_kind]
    return list(zero) if isinstance(zero, list) else zero


def _in_range(number: int, value_kind: str) -> tuple[int | None, str | None]:
    low, high = _RANGES[value_kind]
    if low <= number <= high:
        return number, None
    return None, f"{number} is out of the {value_kind} range"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 60 else text[:57] + "..."


def read_record(
    kind_name: str,
    message: Any,
    base_url: str,
    *,
    list_name: str | None = None,
    fallback_url: str,
) -> DclRecord:
    """One record from its message (a JSON object), every column of its kind read.

    ``list_name``: the status list of a ``model_status`` entry. ``fallback_url``
    names a record whose key cannot be read (where it was found).
    """
    kind = KINDS[kind_name]
    values: dict[str, Any] = {}
    problems: list[str] = []
    if not isinstance(message, dict):
        return DclRecord(kind_name, values, fallback_url, [f"not an object: {_show(message)}"])
    for field, column, value_kind in kind.fields:
        if value_kind == "list":
            values[column] = list_name
            continue
        raw = message.get(field)
        if raw is None and column in kind.key:
            problems.append(f"{field}: missing")
            values[column] = None
            continue
        value, problem = read_value(raw, value_kind)
        values[column] = value
        if problem is not None:
            problems.append(f"{field}: {problem}")
    if any(values[column] is None for column in kind.key):
        url = fallback_url
    elif kind.record_path is not None:
        url = record_url(base_url, kind, values)
    else:
        assert list_name is not None, "a status-list entry needs its list"
        url = status_entry_url(base_url, list_name, values)
    return DclRecord(kind_name, values, url, problems)


# -- answers ----------------------------------------------------------------------------


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise PageParseError(f"{what} is not JSON: {error}") from None
    except RecursionError:  # a hostile answer nested thousands deep
        raise PageParseError(f"{what} is nested too deeply to be read") from None
    if not isinstance(answer, dict):
        raise PageParseError(f"{what} is not a JSON object: {_show(answer)}")
    return answer


def parse_list_page(
    body: bytes,
    kind_name: str,
    base_url: str,
    page_url: str,
    *,
    list_name: str | None = None,
) -> ListPage:
    """A list page of ``kind_name`` (``list_name``: which status list, for ``model_status``)."""
    kind = KINDS[kind_name]
    field = STATUS_LISTS[list_name][1] if list_name is not None else kind.list_field
    assert field is not None, f"{kind_name} records are not listed"
    answer = _json_object(body, "the list page")
    entries = answer.get(field)
    if not isinstance(entries, list):
        raise PageParseError(f"the list page has no {field!r} list: {_show(entries)}")
    pagination = answer.get("pagination")
    if not isinstance(pagination, dict):
        raise PageParseError(f"the list page has no pagination object: {_show(pagination)}")
    next_key = pagination.get("next_key")
    if next_key is not None and (not isinstance(next_key, str) or not next_key):
        raise PageParseError(f"pagination.next_key is not a key: {_show(next_key)}")
    total, problem = read_value(pagination.get("total"), "uint64")
    if problem is not None:
        raise PageParseError(f"pagination.total: {problem}")
    page = page_url.partition("#")[0]
    records = [
        read_record(
            kind_name,
            entry,
            base_url,
            list_name=list_name,
            fallback_url=f"{page}#entry-{position}",
        )
        for position, entry in enumerate(entries, 1)
    ]
    return ListPage(records, next_key, total)


def parse_versions(body: bytes) -> list[int]:
    """The software version numbers of a model (``/dcl/model/versions/{vid}/{pid}``)."""
    answer = _json_object(body, "the versions answer")
    versions = answer.get("modelVersions")
    if not isinstance(versions, dict):
        raise PageParseError(f"the versions answer has no modelVersions object: {_show(versions)}")
    numbers = versions.get("softwareVersions")
    if numbers is None:
        return []  # proto3: an empty repeated field may be left out
    if not isinstance(numbers, list):
        raise PageParseError(f"softwareVersions is not a list: {_show(numbers)}")
    read = []
    for number in numbers:
        value, problem = read_value(number, "uint32")
        if problem is not None or value is None:
            raise PageParseError(f"softwareVersions: {problem or 'null'}")
        read.append(value)
    return read


def is_not_found(body: bytes) -> bool:
    """Whether a 404's body is the gateway's NotFound error (gRPC code 5), not a bad path."""
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(answer, dict) and answer.get("code") == 5


def parse_record(body: bytes, kind_name: str, base_url: str, url: str) -> DclRecord:
    """A single-record answer (``url``: where it was fetched, naming a record without a key)."""
    kind = KINDS[kind_name]
    assert kind.record_field is not None, f"{kind_name} records have no single-record path"
    answer = _json_object(body, "the record answer")
    message = answer.get(kind.record_field)
    if not isinstance(message, dict):
        raise PageParseError(f"the answer has no {kind.record_field!r} object: {_show(message)}")
    return read_record(kind_name, message, base_url, fallback_url=url)
