"""Seeded, order-independent randomness for the simulated site.

Every decision the site makes (catalogue contents, markup variants, faults) must
be reproducible from ``--seed`` alone and must not depend on the order in which
pages happen to be requested. So decisions are drawn from a hash of the seed and
the decision's own key rather than from one shared random stream, and per-item
random streams are seeded from a string (CPython seeds those through SHA-512,
which does not depend on ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import hashlib
import random
import struct

_SEPARATOR = "\x1f"
_UNITS = struct.Struct("<16I")


def _key(seed: int, parts: tuple[object, ...]) -> bytes:
    return _SEPARATOR.join(str(part) for part in (seed, *parts)).encode()


def unit(seed: int, *parts: object) -> float:
    """One uniform number in [0, 1) for the decision named by ``parts``."""
    digest = hashlib.blake2b(_key(seed, parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def units(seed: int, *parts: object) -> tuple[float, ...]:
    """Sixteen independent uniform numbers in [0, 1) from one hash.

    Used where one request needs several decisions at once (one per fault
    kind, the error status, the cut point...), at the cost of a single hash.
    """
    digest = hashlib.blake2b(_key(seed, parts), digest_size=64).digest()
    return tuple(value / 2**32 for value in _UNITS.unpack(digest))


def stream(seed: int, *parts: object) -> random.Random:
    """A private random stream for one item (a product, a mutation...)."""
    return random.Random(_SEPARATOR.join(str(part) for part in (seed, *parts)))
