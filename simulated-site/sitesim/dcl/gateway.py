"""The simulated DCL's REST paths, answered as the cosmos-sdk gRPC gateway answers them.

What the real server does, and this one copies (sources it was checked against:
cosmos-sdk ``types/query/pagination.go`` ``Paginate``; grpc-gateway v1
``runtime/convert.go`` ``Bytes``/``Int32``/``Uint64``/``Bool``; cosmos-sdk
``server/api`` marshaler options, see messages.py; the DCL's
``x/*/keeper/grpc_query_*.go`` handlers and ``x/*/types/key_*.go`` store keys):

- list paths page with ``pagination.key`` (standard base64, URL-safe accepted,
  of the previous answer's ``next_key``) or ``pagination.offset``, plus
  ``pagination.limit``, ``pagination.count_total`` and ``pagination.reverse``.
  A missing or zero limit means 100 *and* forces ``count_total``; with a key,
  ``total`` is never counted ("0"); ``next_key`` is the store key of the first
  record not returned, ``null`` when none is left; key and offset together fail
  (gRPC Internal, HTTP 500) like ``Paginate`` does;
- query values are form-decoded first (a ``+`` in an unescaped key becomes a
  space, and the key no longer decodes: 400), integers parse like Go's
  ``strconv`` with base 0 (``0x1234`` is a valid vid), booleans like
  ``strconv.ParseBool``;
- errors are ``{"code": <gRPC code>, "message": ..., "details": []}`` with the
  gateway's HTTP status (NotFound 404, InvalidArgument 400, Internal 500);
- JSON as Go writes it: compact, UTF-8, ``<``, ``>``, ``&`` escaped as ``\\u003c``...
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from . import messages
from .ledger import Ledger
from .store import Store, compliance_key, model_key, vendor_key

PREFIX = "/dcl/"
DEFAULT_LIMIT = 100
JSON_TYPE = b"application/json"
Answer = tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]

_NOT_FOUND, _INVALID, _INTERNAL = 5, 3, 13
_HTTP = {_NOT_FOUND: 404, _INVALID: 400, _INTERNAL: 500}
_GO_INT = re.compile(r"^(0[xX][0-9a-fA-F]+|0[oO]?[0-7]*|0[bB][01]+|[1-9][0-9]*)$")
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
# list path -> (store attribute, response field, message)
LISTS: dict[str, tuple[str, str, messages.Fields]] = {
    "/dcl/vendorinfo/vendors": ("vendors", "vendorInfo", messages.VENDOR_INFO),
    "/dcl/model/models": ("models", "model", messages.MODEL),
    "/dcl/compliance/compliance-info": ("compliance", "complianceInfo", messages.COMPLIANCE_INFO),
    "/dcl/compliance/certified-models": ("certified", "certifiedModel", messages.MODEL_INDEX),
    "/dcl/compliance/provisional-models": (
        "provisional",
        "provisionalModel",
        messages.MODEL_INDEX,
    ),
    "/dcl/compliance/revoked-models": ("revoked", "revokedModel", messages.MODEL_INDEX),
}


class GatewayError(Exception):
    """A gRPC status the gateway turns into an HTTP error answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def go_uint(text: str, bits: int, *, signed: bool = False, name: str = "") -> int:
    """``strconv.ParseInt/ParseUint(text, 0, bits)``: decimal, 0x, 0o/0, 0b."""
    func = "ParseInt" if signed else "ParseUint"
    digits, negative = text, False
    if signed and digits[:1] in ("+", "-"):
        negative, digits = digits[0] == "-", digits[1:]
    if not _GO_INT.match(digits):
        raise GatewayError(
            _INVALID, _mismatch(name, f'strconv.{func}: parsing "{text}": invalid syntax')
        )
    if digits[:2] in ("0x", "0X", "0b", "0B", "0o", "0O"):
        value = int(digits, 0)
    else:
        value = int(digits, 8) if digits.startswith("0") and len(digits) > 1 else int(digits)
    value = -value if negative else value
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if not low <= value <= high:
        raise GatewayError(
            _INVALID, _mismatch(name, f'strconv.{func}: parsing "{text}": value out of range')
        )
    return value


def _mismatch(name: str, error: str) -> str:
    return f"type mismatch, parameter: {name}, error: {error}" if name else error


@dataclass(frozen=True, slots=True)
class PageRequest:
    """``cosmos.base.query.v1beta1.PageRequest`` from the query string."""

    key: bytes | None = None
    offset: int = 0
    limit: int = 0
    count_total: bool = False
    reverse: bool = False

    @classmethod
    def parse(cls, args: dict[bytes, list[bytes]]) -> PageRequest:
        def value(name: str) -> str | None:
            values = args.get(f"pagination.{name}".encode())
            return None if not values else values[0].decode("utf-8", "replace")

        key = value("key")
        decoded = None
        if key is not None:
            try:
                decoded = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError):
                try:
                    decoded = base64.urlsafe_b64decode(key.encode("ascii"))
                    if base64.urlsafe_b64encode(decoded).decode() != key:
                        raise ValueError(key)
                except (binascii.Error, ValueError, UnicodeEncodeError):
                    raise GatewayError(
                        _INVALID, f"illegal base64 data at input byte {_bad_byte(key)}"
                    ) from None
        flags = {}
        for name in ("count_total", "reverse"):
            text = value(name)
            if text is not None and text not in _BOOLS:
                raise GatewayError(_INVALID, f'strconv.ParseBool: parsing "{text}": invalid syntax')
            flags[name] = bool(text is not None and _BOOLS[text])
        numbers = {}
        for name in ("offset", "limit"):
            text = value(name)
            numbers[name] = 0 if text is None else go_uint(text, 64)
        return cls(key=decoded, **numbers, **flags)


def _bad_byte(text: str) -> int:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    return next((i for i, char in enumerate(text) if char not in alphabet), len(text))


def paginate(store: Store, page: PageRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of ``store`` and its ``PageResponse``, as cosmos-sdk's ``Paginate``.

    Positions are counted in iteration order (descending with ``reverse``), so a
    page costs O(limit + log n) whatever the store's size.
    """
    if page.offset > 0 and page.key is not None:
        raise GatewayError(_INTERNAL, "invalid request, either offset or key is expected, got both")
    limit, count_total = page.limit, page.count_total
    if limit == 0:
        limit, count_total = DEFAULT_LIMIT, True
    keys, size = store.keys, len(store.keys)

    def key_at(position: int) -> bytes:  # the position-th key in iteration order
        return keys[size - 1 - position] if page.reverse else keys[position]

    if page.key:  # len(key) != 0: iterate from the key, never count
        found = bisect_left(keys, page.key)  # the first key >= the given one
        # reverse: from that key (or the last one) downwards
        start = size - 1 - min(found, size - 1) if page.reverse else found
        total = 0
    else:
        start, total = page.offset, size if count_total else 0
    end = min(start + limit, size)
    chosen = [store.items[key_at(p)] for p in range(start, end)]
    next_key = key_at(end) if end < size else None
    return chosen, _page_response(next_key, total)


def _page_response(next_key: bytes | None, total: int) -> dict[str, Any]:
    encoded = None if next_key is None else base64.b64encode(next_key).decode()
    return {"next_key": encoded, "total": str(total)}  # uint64 total: a string


def to_json(data: Any) -> bytes:
    """JSON as Go's encoder writes it (HTML-sensitive characters escaped)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))  # Indent: ""
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode()


class Gateway:
    """Answers ``/dcl/...`` GET requests from a :class:`Ledger`."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._software_versions: dict[tuple[int, int], list[int]] = {}
        for vid, pid, version in sorted(ledger.versions):
            self._software_versions.setdefault((vid, pid), []).append(version)
        self._vendor_products: dict[int, list[dict[str, Any]]] = {}
        for model in ledger.models.values():
            self._vendor_products.setdefault(model["vid"], []).append(
                {
                    "pid": model["pid"],
                    "name": model["productName"],
                    "partNumber": model["partNumber"],
                }
            )

    def answer(self, path: str, args: dict[bytes, list[bytes]]) -> Answer:
        """(status, body, headers) for one request to ``path``."""
        try:
            data = self._route(path, args)
        except GatewayError as error:
            status = _HTTP[error.code]
            data = {"code": error.code, "message": str(error), "details": []}
            return status, to_json(data), ((b"content-type", JSON_TYPE),)
        if data is None:  # no such route: the mux's plain-text 404
            return 404, b"Not Found\n", ((b"content-type", b"text/plain; charset=utf-8"),)
        return 200, to_json(data), ((b"content-type", JSON_TYPE),)

    def _route(self, path: str, args: dict[bytes, list[bytes]]) -> dict[str, Any] | None:
        listed = LISTS.get(path)
        if listed is not None:
            attribute, name, fields = listed
            records, pagination = paginate(getattr(self.ledger, attribute), PageRequest.parse(args))
            return {name: [messages.emit(fields, r) for r in records], "pagination": pagination}
        parts = path.removeprefix(PREFIX).split("/")
        match parts:
            case ["vendorinfo", "vendors", vid]:
                record = self.ledger.vendors.get(vendor_key(_id(vid, "vendorID")))
                return {"vendorInfo": messages.emit(messages.VENDOR_INFO, _found(record))}
            case ["model", "models", vid]:
                products = self._vendor_products.get(_id(vid, "vid"))
                emitted = [messages.emit(messages.PRODUCT, p) for p in _found(products)]
                return {
                    "vendorProducts": {
                        "vid": _id(vid, "vid"),
                        "products": emitted,
                        "schemaVersion": 0,
                    }
                }
            case ["model", "models", vid, pid]:
                record = self.ledger.models.get(model_key(_id(vid, "vid"), _id(pid, "pid")))
                return {"model": messages.emit(messages.MODEL, _found(record))}
            case ["model", "versions", vid, pid]:
                versions = self._software_versions.get((_id(vid, "vid"), _id(pid, "pid")))
                record = {
                    "vid": _id(vid, "vid"),
                    "pid": _id(pid, "pid"),
                    "softwareVersions": _found(versions),
                }
                return {"modelVersions": messages.emit(messages.MODEL_VERSIONS, record)}
            case ["model", "versions", vid, pid, version]:
                key = (
                    _id(vid, "vid"),
                    _id(pid, "pid"),
                    go_uint(version, 32, name="softwareVersion"),
                )
                record = self.ledger.versions.get(key)
                return {"modelVersion": messages.emit(messages.MODEL_VERSION, _found(record))}
            case ["compliance", "compliance-info", vid, pid, version, kind]:
                key = compliance_key(
                    _id(vid, "vid"),
                    _id(pid, "pid"),
                    go_uint(version, 32, name="softwareVersion"),
                    kind,
                )
                record = self.ledger.compliance.get(key)
                return {"complianceInfo": messages.emit(messages.COMPLIANCE_INFO, _found(record))}
        return None


def _id(text: str, name: str) -> int:
    """An int32 path parameter; ids beyond 16 bits exist on no record (404)."""
    return go_uint(text, 32, signed=True, name=name) & 0xFFFFFFFF


def _found(value: Any) -> Any:
    if not value:
        raise GatewayError(_NOT_FOUND, "not found")
    return value
