"""The ledger's stores: records by their DCL store key, iterated in key order.

The DCL keys a record by its ids as big-endian bytes, each followed by ``/``
(``x/*/types/key_*.go``: ``binary.BigEndian.PutUint32``), under a per-type prefix;
list queries walk a prefix store in key order and page by those keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MATTER = "matter"


def u32(value: int) -> bytes:
    """A store-key component: the id as 4 big-endian bytes (``binary.BigEndian``)."""
    return value.to_bytes(4, "big")


def vendor_key(vid: int) -> bytes:
    return u32(vid) + b"/"


def model_key(vid: int, pid: int) -> bytes:
    return u32(vid) + b"/" + u32(pid) + b"/"


def compliance_key(vid: int, pid: int, software_version: int, kind: str = MATTER) -> bytes:
    """ComplianceInfo's key (also the certified/provisional/revoked indexes' key)."""
    return model_key(vid, pid) + u32(software_version) + b"/" + kind.encode() + b"/"


class Store:
    """A prefix store: records by key, iterated in key order."""

    def __init__(self, items: dict[bytes, dict[str, Any]]) -> None:
        self.keys = sorted(items)
        self.items = items

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: bytes) -> dict[str, Any] | None:
        return self.items.get(key)

    def values(self) -> Iterator[dict[str, Any]]:
        return (self.items[key] for key in self.keys)
