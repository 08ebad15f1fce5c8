"""What the controller remembers of a domain's recent answers: latency and background trouble.

Both are small state objects fed by :class:`~matter_crawler.adaptive.law.DomainController`;
neither reads a clock (every call carries ``now``, monotonic seconds).
"""

from __future__ import annotations

#: Weight of a new latency sample in the smoothed latency.
SMOOTHING = 0.125
#: The background trouble rate is the lower share of trouble of the last two such windows (s).
BACKGROUND_WINDOW = 5.0
#: Outcomes a window needs before its share counts toward the background.
BACKGROUND_WARMUP = 20
#: A background share from which a ceiling found before it was known is forgotten.
FORGET_CEILING_AT = 0.05


class LatencyWindow:
    """The smoothed latency of answers, and the baseline: the lowest round-mean latency of
    the last one to two ``baseline_window`` s (a windowed minimum, so a site that became
    slower for good gets a new baseline within two windows)."""

    def __init__(self, baseline_window: float, *, now: float) -> None:
        self.baseline_window = baseline_window
        self.smoothed: float | None = None
        self._current: float | None = None  # lowest round mean of the window in progress
        self._previous: float | None = None  # ... of the window before it
        self._since = now

    @property
    def baseline(self) -> float | None:
        values = [v for v in (self._current, self._previous) if v is not None]
        return min(values) if values else None

    def sample(self, latency: float) -> None:
        """One answer's latency."""
        if self.smoothed is None:
            self.smoothed = latency
        else:
            self.smoothed += SMOOTHING * (latency - self.smoothed)

    def round_mean(self, now: float, mean: float) -> None:
        """The mean latency of a clean round."""
        if now - self._since >= self.baseline_window:
            self._previous, self._current, self._since = self._current, None, now
        if self._current is None or mean < self._current:
            self._current = mean

    def restore(self, smoothed: float | None, baseline: float | None) -> None:
        self.smoothed = smoothed
        self._current = baseline


class TroubleWindows:
    """The share of trouble a site shows whatever the load (its background failure rate).

    Outcomes are counted in ``BACKGROUND_WINDOW``-second windows; the background is the
    lower share of the last two complete windows with at least ``BACKGROUND_WARMUP``
    outcomes: 0 for a site that only fails under load (one window without refusals is
    enough), and 0 until two windows have passed, so early trouble always counts.
    """

    def __init__(self, *, now: float) -> None:
        self.shares: list[float] = []  # of the last two complete windows, oldest first
        self._outcomes = 0
        self._troubles = 0
        self._since = now

    @property
    def background(self) -> float:
        return min(self.shares) if len(self.shares) == 2 else 0.0

    def observe(self, now: float, *, troubled: bool) -> bool:
        """Count one outcome. True when this closed a window and the background, 0 before,
        reached ``FORGET_CEILING_AT``: what was learned while every failure counted as
        overload may be nothing but the site's background failures."""
        crossed = False
        if now - self._since >= BACKGROUND_WINDOW:
            if self._outcomes >= BACKGROUND_WARMUP:
                before = self.background
                self.shares = [*self.shares[-1:], self._troubles / self._outcomes]
                crossed = before == 0 and self.background >= FORGET_CEILING_AT
            self._outcomes = self._troubles = 0
            self._since = now
        self._outcomes += 1
        self._troubles += troubled
        return crossed
