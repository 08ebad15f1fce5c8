"""Which pages are recorded: seeded samples that grow without refetching what is recorded."""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def sample(candidates: list[T], recorded: set[T], size: int | None, rng: random.Random) -> list[T]:
    """``size`` candidates (all if None): recorded ones first, then a seeded random pick.

    Recorded ones count towards the sample, so a second run with the same sizes
    fetches nothing and a larger one fetches only the difference. The sample
    keeps the candidates' order.
    """
    if size is None:
        return list(candidates)
    chosen = [item for item in candidates if item in recorded][:size]
    rest = [item for item in candidates if item not in recorded]
    rng.shuffle(rest)
    chosen += rest[: max(size - len(chosen), 0)]
    position = {item: index for index, item in enumerate(candidates)}
    return sorted(chosen, key=position.__getitem__)


def ranges(numbers: Iterable[int]) -> str:
    """``1-3, 7, 9-10``."""
    parts: list[str] = []
    start: int | None = None
    previous = 0
    for number in sorted(numbers):
        if start is None:
            start = previous = number
        elif number == previous + 1:
            previous = number
        else:
            parts.append(f"{start}-{previous}" if previous != start else str(start))
            start = previous = number
    if start is not None:
        parts.append(f"{start}-{previous}" if previous != start else str(start))
    return ", ".join(parts)
