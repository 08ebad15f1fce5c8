"""Smoothed rates and an ETA with an uncertainty band. Pure arithmetic, no Scrapy.

Rates are exponentially weighted averages of a cumulative count sampled about
once a second. The weights decay with a time constant (the window), so old
seconds fade out smoothly, and the average is divided by the total weight so
far, so the first seconds are not dragged towards zero (the bias correction of
an EWMA started at zero).

The ETA is the remaining work divided by the fast rate (``window``), which
follows a site that slows down within about one window. Its band (``+-``)
combines three relative uncertainties, added in quadrature:

- noise: the per-second rate's coefficient of variation, divided by the square
  root of the seconds still to go (the noise that averages out over the rest);
- drift: how far the fast rate is from the slow one (``slow_factor`` windows):
  a rate that is changing makes any extrapolation uncertain;
- work: while the listing is still being read, the number of product pages
  still to come is extrapolated from the pages read so far; its uncertainty is
  taken as Poisson, ``sqrt(extrapolated)``.

Nothing can foresee a site that slows down later; the band says how steady the
crawl has been, not what the site will do (see ``bench/eta_accuracy.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: How many standard deviations the band spans each side.
BAND_SIGMAS = 1.5


class SmoothedRate:
    """The exponentially weighted rate of a cumulative count, and its spread."""

    __slots__ = ("_count", "_s0", "_s1", "_s2", "_time", "window")

    def __init__(self, window: float) -> None:
        if window <= 0:
            raise ValueError(f"the rate window must be positive, not {window}")
        self.window = window
        self._time: float | None = None
        self._count = 0.0
        self._s0 = self._s1 = self._s2 = 0.0  # decayed sums of weights, x and x**2

    def update(self, now: float, count: float) -> None:
        """Add a sample of the cumulative ``count`` at time ``now`` (seconds)."""
        if self._time is None:
            self._time, self._count = now, count
            return
        elapsed = now - self._time
        if elapsed <= 0:
            return
        sample = (count - self._count) / elapsed
        self._time, self._count = now, count
        alpha = 1.0 - math.exp(-elapsed / self.window)
        keep = 1.0 - alpha
        self._s0 = keep * self._s0 + alpha
        self._s1 = keep * self._s1 + alpha * sample
        self._s2 = keep * self._s2 + alpha * sample * sample

    def hold(self, now: float, count: float) -> None:
        """Skip the time up to ``now`` (a paused crawl): the next sample starts from here."""
        if self._time is not None:
            self._time, self._count = now, count

    @property
    def rate(self) -> float | None:
        """Events per second, or None before two samples."""
        return self._s1 / self._s0 if self._s0 else None

    @property
    def deviation(self) -> float:
        """Standard deviation of the per-sample rate."""
        if not self._s0:
            return 0.0
        mean = self._s1 / self._s0
        return math.sqrt(max(0.0, self._s2 / self._s0 - mean * mean))


@dataclass(frozen=True, slots=True)
class Estimate:
    """The time left, and how sure it is (both None while no rate is known)."""

    seconds: float | None
    band: float | None  # +- seconds
    rate: float | None  # units of work per second, smoothed


class EtaEstimator:
    """Remaining work / smoothed rate, with a band (see the module docstring)."""

    def __init__(self, window: float = 10.0, slow_factor: float = 6.0, tick: float = 1.0) -> None:
        self.fast = SmoothedRate(window)
        self.slow = SmoothedRate(window * slow_factor)
        self.tick = tick

    def update(self, now: float, done: float) -> None:
        """Feed the cumulative units of work done (pages) at time ``now``."""
        self.fast.update(now, done)
        self.slow.update(now, done)

    def hold(self, now: float, done: float) -> None:
        """A paused span: left out of both rates (see :meth:`SmoothedRate.hold`)."""
        self.fast.hold(now, done)
        self.slow.hold(now, done)

    @property
    def rate(self) -> float | None:
        """The slow rate while the fast one agrees with it; the fast one once it clearly differs.

        "Clearly": by more than the fast rate's own standard error (the per-second
        spread over the samples its window holds) times 1 to 3, blending in between.
        """
        fast, slow = self.fast.rate, self.slow.rate
        if fast is None or slow is None:
            return fast
        error = self.fast.deviation / math.sqrt(max(1.0, self.fast.window / self.tick))
        if error <= 0:
            return fast
        z = abs(fast - slow) / error
        weight = min(1.0, max(0.0, (z - 1.0) / 2.0))
        return weight * fast + (1.0 - weight) * slow

    def estimate(self, remaining: float, extrapolated: float = 0.0) -> Estimate:
        """The ETA for ``remaining`` units, ``extrapolated`` of which are a guess."""
        rate = self.rate
        if remaining <= 0:
            return Estimate(0.0, 0.0, rate)
        if not rate or rate <= 0:
            return Estimate(None, None, rate)
        seconds = remaining / rate
        samples_ahead = max(1.0, seconds / self.tick)
        noise = self.fast.deviation / rate / math.sqrt(samples_ahead)
        fast, slow = self.fast.rate or rate, self.slow.rate or rate
        drift = abs(fast - slow) / rate
        work = math.sqrt(extrapolated) / remaining if extrapolated > 0 else 0.0
        relative = math.sqrt(noise * noise + drift * drift + work * work)
        return Estimate(seconds, BAND_SIGMAS * relative * seconds, rate)
