"""The controller's vocabulary: what went wrong, its sub-states, and its decisions.

:class:`~matter_crawler.adaptive.law.DomainController` holds one :class:`Mode`, an
optional :class:`Probe`, a :class:`Reaction`, an optional :class:`StepBack` and the
:class:`Round` in progress; each outcome it is fed may return a :class:`Change`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Trouble(StrEnum):
    """What went wrong, as far as the controller cares."""

    THROTTLED = "throttled"  # 429, or any answer with a Retry-After: a rate limit
    OVERLOAD = "overload"  # 503 and the other "too busy" statuses
    TIMEOUT = "timeout"  # no answer in time (or a 408)
    CONNECTION = "connection"  # reset, refused, lost connection
    LATENCY = "latency"  # a round's latency rose above the allowed band


class Mode(StrEnum):
    START = "start"  # no ceiling known: multiplicative growth
    CLIMB = "climb"  # a ceiling is known: climb to it, probe it now and then
    GROW = "grow"  # a probe above the old ceiling succeeded: accelerating growth


class Reaction(StrEnum):
    """What the trouble since the last clean round meant."""

    NONE = "none"  # none since the last clean round
    OVERSHOOT = "overshoot"  # above the last clean level: stepped back to it
    WORSE = "worse"  # at a level that was fine: the server got worse (a Retry-After pauses)


@dataclass(slots=True)
class StepBack:
    """After a step back: refusals from the abandoned level still on their way are expected
    (``excess`` of them, one more for luck); more than that is a burst."""

    excess: int
    late: int = 0  # troubles from before the step that came back since


@dataclass(slots=True)
class Probe:
    """One level above the last clean one, below a known ceiling, on trial."""

    rounds: int = 0  # clean rounds it has passed


@dataclass(slots=True)
class Round:
    """The round in progress at the current level."""

    count: int = 0  # good answers
    latency: float = 0.0  # their summed latency
    troubles: int = 0  # trouble counted against the level


@dataclass(frozen=True, slots=True)
class Change:
    """A decision: the new concurrency and delay, and why."""

    concurrency: int
    delay: float
    old_concurrency: int
    old_delay: float
    reason: str
    paused_until: float | None = None  # set when a Retry-After pauses the domain

    @property
    def direction(self) -> int:
        """+1 faster, -1 slower, 0 neither (a pause counts as slower)."""
        if self.paused_until is not None:
            return -1
        if self.concurrency != self.old_concurrency:
            return 1 if self.concurrency > self.old_concurrency else -1
        if self.delay != self.old_delay:
            return 1 if self.delay < self.old_delay else -1
        return 0
