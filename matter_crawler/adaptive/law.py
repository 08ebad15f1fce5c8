"""The adaptive-concurrency control law for one domain, free of Scrapy.

:class:`DomainController` turns a stream of outcomes (a good response and its
latency, an overload answer, a timeout, a reset, a Retry-After, the circuit
breaker's state, memory pressure) into the concurrency and the delay the
domain's download slot should use. It never reads a clock: every call carries
``now`` (monotonic seconds), so tests drive it with scripted sequences. The
extension (:mod:`matter_crawler.adaptive.extension`) feeds it and applies its
decisions to Scrapy's slots.

Its state, explicitly (the types are in :mod:`matter_crawler.adaptive.states`):

- ``mode`` (``Mode``): how it grows: no ceiling known, climbing to a known
  ceiling, or growing past a ceiling a probe lifted;
- ``probe`` (``Probe`` or None): a probe of the known ceiling in progress;
- ``reaction`` (``Reaction``): what the trouble since the last clean round
  meant (an overshoot, or the server got worse), and ``strikes`` how often;
- ``step_back`` (``StepBack`` or None): after a step back, how many refusals
  from the abandoned level may still come back before they count as a burst;
- ``round`` (``Round``): the round in progress;
- the latency and background-trouble windows (:mod:`matter_crawler.adaptive.windows`).

The law, briefly (docs/adaptive.md has the reasoning):

- **Rounds.** A level is judged after ``concurrency`` good responses that came
  back while the slot really had ``concurrency`` requests out (a level the crawl
  never fills proves nothing), not counting requests sent before the last cut.
  A clean round whose mean latency stays under
  ``max(target_latency, latency_tolerance x baseline)`` allows one increase.
- **Increase.** With no known ceiling, grow by half (1, 2, 3, 4, 6, 9, 13, 17...),
  never by more than 4 a round: an overshoot comes back as a run of refusals,
  and a run of 10 trips the circuit breaker. Once a ceiling (a level that
  brought trouble) is known, climb halfway to it per clean round, then sit one
  below it and *probe* it only every ``probe_interval`` seconds, doubling the
  wait after each failed probe (up to ``probe_interval_max``). A probe that
  stays clean for two rounds lifts the ceiling; growth accelerates again
  (+1, +2, +4, +4...).
- **Decrease.** Trouble (429/503-class answers, timeouts, resets, a latency
  rise) above the highest level proved clean is an overshoot: step back to that
  level. Trouble at a level that was clean: one step down (the crawler counts a
  request as out a little longer than the server does, so a level can pass a
  round by luck); trouble again before a clean round: cut by
  ``decrease_factor`` (halve), every round-trip until it stops. After a step
  back, more refusals than the step's own excess are a burst (the capacity
  fell): halve at once. Otherwise trouble from requests sent before the last
  cut is not counted again. At the minimum concurrency a rate limit (429) or a
  latency rise doubles the delay, and clean rounds halve it back; errors,
  timeouts and resets at the minimum leave it alone: a site failing one
  request at a time is down, the circuit breaker's business.
- **Background failures.** Trouble a site shows whatever the load (the lower
  share of trouble of the last two 5-second windows) is tolerated within three
  standard deviations: a flaky site is not an overloaded one.
- **Overrides.** A Retry-After on trouble at a level that was fine pauses the
  domain until it has passed (on a probe's refusal, the step back removes the
  excess and the refused request alone waits). An open breaker drops the
  domain to its minimum until it closes. Memory pressure halves every domain's
  concurrency and blocks increases (:mod:`matter_crawler.adaptive.memory` decides when).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .limits import Limits, Tuning
from .states import Change, Mode, Probe, Reaction, Round, StepBack, Trouble
from .windows import LatencyWindow, TroubleWindows

#: Multiplicative growth per clean round while no ceiling is known.
GROWTH_FACTOR = 1.5
#: Largest increase in one round. Everything an increase overshoots by comes back as a
#: run of refusals, and 10 in a row open the circuit breaker (CIRCUIT_FAILURE_THRESHOLD).
GROWTH_STEP_MAX = 4
#: Smallest delay worth setting when trouble persists at minimum concurrency.
DELAY_FLOOR_STEP = 0.1
#: Clean rounds a probe of the ceiling must pass before the ceiling is dropped.
PROBE_ROUNDS = 2
#: How far (in standard deviations) a round's trouble may exceed the background unnoticed.
BACKGROUND_SIGMAS = 3.0


class DomainController:
    """Concurrency and delay of one domain, from the outcomes of its requests."""

    def __init__(self, limits: Limits, tuning: Tuning, *, now: float = 0.0) -> None:
        self.limits = limits
        self.tuning = tuning
        self.concurrency = limits.min_concurrency
        self.delay = limits.min_delay
        # how it grows
        self.mode = Mode.START
        self.ceiling: int | None = None  # lowest level known to bring trouble
        self.clean = 0  # highest level that completed a clean round (0: none yet)
        self.step = 1  # growth step in GROW mode
        self.probe: Probe | None = None
        self.probe_interval = tuning.probe_interval
        self.next_probe_at = now
        # how it last slowed down
        self.reaction = Reaction.NONE
        self.strikes = 0  # trouble at clean levels since the last clean round
        self.step_back: StepBack | None = None
        self.last_cut_at = -math.inf
        # overrides
        self.paused_until = -math.inf
        self.breaker_open = False
        self.memory_pressure = False
        # what it remembers of the answers
        self.latency_window = LatencyWindow(tuning.baseline_window, now=now)
        self.trouble_windows = TroubleWindows(now=now)
        self.round = Round()  # in progress
        # counters for the stats
        self.increases = 0
        self.decreases = 0
        self.ignored = 0  # trouble from before the last cut, or while the breaker held
        self.tolerated = 0  # trouble the site's background failure rate explained

    # -- reading -------------------------------------------------------------

    @property
    def latency(self) -> float | None:
        """The smoothed latency of good answers."""
        return self.latency_window.smoothed

    @property
    def baseline(self) -> float | None:
        """The lowest round-mean latency of the last one to two baseline windows."""
        return self.latency_window.baseline

    @property
    def background(self) -> float:
        """The share of trouble the site shows whatever we do (0 until known)."""
        return self.trouble_windows.background

    @property
    def probing(self) -> bool:
        return self.probe is not None

    def latency_limit(self) -> float | None:
        """Round-mean latency above which a round counts as a latency rise."""
        baseline = self.baseline
        if baseline is None:
            return None
        return max(self.tuning.target_latency, self.tuning.latency_tolerance * baseline)

    def is_paused(self, now: float) -> bool:
        return now < self.paused_until

    def slot_concurrency(self, now: float) -> int:
        """What the download slot should allow now: 0 while a Retry-After pause lasts."""
        return 0 if self.is_paused(now) else self.concurrency

    # -- outcomes ------------------------------------------------------------

    def success(
        self, now: float, latency: float, in_flight: int, sent_at: float | None = None
    ) -> Change | None:
        """A good answer (any status but trouble) after ``latency`` seconds.

        ``in_flight``: the slot's requests out when it came back, itself included.
        """
        self.latency_window.sample(latency)
        self._observe(now, troubled=False)
        if sent_at is not None and sent_at < self.last_cut_at:
            return None  # sent before the last cut, at a level now known to be too high
        delay_limited = self.delay > self.limits.min_delay
        if in_flight < self.concurrency and not delay_limited:
            return None  # the level was not filled: no evidence either way
        self.round.count += 1
        self.round.latency += latency
        if self.round.count < self.concurrency:
            return None
        mean = self.round.latency / self.round.count
        self.round = Round()
        limit = self.latency_limit()
        if limit is not None and mean > limit:
            return self._trouble(now, Trouble.LATENCY, f"latency {mean:.3f}s > {limit:.3f}s")
        self.latency_window.round_mean(now, mean)
        return self._clean_round(now)

    def trouble(
        self,
        now: float,
        kind: Trouble,
        *,
        sent_at: float | None = None,
        retry_after: float | None = None,
    ) -> Change | None:
        """An answer or failure that says the server is struggling.

        ``sent_at``: when the failed request went out, if known; trouble from
        requests sent before the last cut describes the old level and does not
        cut again (without it, trouble within one smoothed latency of the last
        cut does not). Trouble the site's background failure rate explains
        changes nothing. ``retry_after``: seconds the server asked for; on
        trouble at a level that was fine, the domain pauses until they have passed.
        """
        self._observe(now, troubled=True)
        if self.breaker_open:
            self.ignored += 1  # the breaker holds every request anyway
            return None
        if sent_at is not None:
            stale = sent_at < self.last_cut_at
        else:
            stale = now - self.last_cut_at < (self.latency or 0.0)
        change = None
        if stale:
            self.ignored += 1
            step_back = self.step_back
            if step_back is not None:
                # a step back expects at most its own excess to come back refused; a
                # burst beyond that says the server got worse at once: cut now
                step_back.late += 1
                if step_back.late > step_back.excess + 1:
                    change = self._halve(now, f"{kind.value}: a burst after a step back")
        else:
            self.round.troubles += 1
            if self._within_background():
                self.tolerated += 1
                return None
            change = self._trouble(now, kind, kind.value)
        if retry_after is None or retry_after <= 0 or self.reaction is not Reaction.WORSE:
            # a probe's refusal: the step back already removed the excess, and the
            # refused request waits its Retry-After in the retry middleware
            return change
        until = now + min(retry_after, self.tuning.retry_after_max)
        if until <= self.paused_until:
            return change
        extending = self.is_paused(now)
        self.paused_until = until
        if extending:
            return change  # quietly: the extension looks again when the pause was to end
        reason = f"Retry-After: paused {until - now:.1f}s"
        if change is not None:
            return replace(change, paused_until=until, reason=f"{change.reason}; {reason}")
        return Change(self.concurrency, self.delay, self.concurrency, self.delay, reason, until)

    def breaker_changed(self, now: float, state: str) -> Change | None:
        """The domain's circuit breaker moved to ``state`` (closed, open, half_open)."""
        if state == "open":
            self.breaker_open = True
            return self._set(self.limits.min_concurrency, self.delay, "circuit open")
        if state == "closed" and self.breaker_open:
            self.breaker_open = False
            self.clean = self.concurrency
            self.mode = Mode.START if self.ceiling is None else Mode.CLIMB
            self.next_probe_at = now + self.probe_interval
            self.round = Round()
        return None

    def memory(self, now: float, pressure: bool) -> Change | None:
        """Memory is (or no longer is) near its ceiling; under pressure, halve."""
        self.memory_pressure = pressure
        if not pressure or self.concurrency <= self.limits.min_concurrency:
            return None
        lower = max(
            self.limits.min_concurrency, int(self.concurrency * self.tuning.decrease_factor)
        )
        self.clean = min(self.clean, lower)
        return self._set(lower, self.delay, "memory pressure")

    # -- the law -------------------------------------------------------------

    def _clean_round(self, now: float) -> Change | None:
        level = self.concurrency
        limits = self.limits
        if self.probe is not None:
            self.probe.rounds += 1
            if self.probe.rounds < PROBE_ROUNDS:
                return None  # one round can pass by luck: hold the probe a little longer
            # the ceiling held: capacity is higher than we knew
            self.probe = None
            self.ceiling = None
            self.mode = Mode.GROW
            self.step = 1
            self.probe_interval = self.tuning.probe_interval
        self.clean = max(self.clean, level)
        self.strikes = 0
        self.reaction = Reaction.NONE
        self.step_back = None
        if self.delay > limits.min_delay:
            delay = self.delay / 2
            if delay < max(DELAY_FLOOR_STEP, limits.min_delay):
                delay = limits.min_delay
            return self._set(level, delay, "clean round, delay down")
        if self.memory_pressure or self.breaker_open or level >= limits.max_concurrency:
            return None
        if self.mode is Mode.START:
            target = max(level + 1, int(level * GROWTH_FACTOR))
            reason = "clean round, growing"
        elif self.mode is Mode.GROW:
            target = level + min(self.step, max(1, level // 2))
            self.step *= 2
            reason = "clean round, growing past the old ceiling"
        else:
            assert self.ceiling is not None
            if level + 1 < self.ceiling:
                target = level + max(1, (self.ceiling - level) // 2)
                reason = f"clean round, climbing toward {self.ceiling}"
            elif now >= self.next_probe_at:
                target = level + 1
                self.probe = Probe()
                reason = f"probing {target}"
            else:
                return None
        target = min(target, level + GROWTH_STEP_MAX, limits.max_concurrency)
        return self._set(target, self.delay, reason)

    def _trouble(self, now: float, kind: Trouble, reason: str) -> Change | None:
        level = self.concurrency
        limits = self.limits
        self.last_cut_at = now
        if self.probe is not None or level > self.clean >= limits.min_concurrency:
            # an overshoot: step back to the highest level known to be clean
            if self.probe is not None:
                self.probe = None
                self.probe_interval = min(self.probe_interval * 2, self.tuning.probe_interval_max)
            self.ceiling = level if self.ceiling is None else min(self.ceiling, level)
            self.mode = Mode.CLIMB
            self.next_probe_at = now + self.probe_interval
            lower = max(limits.min_concurrency, min(self.clean, level - 1))
            self.reaction = Reaction.OVERSHOOT
            self.step_back = StepBack(excess=level - lower)
            return self._set(lower, self.delay, f"{reason} above clean level, step back")
        # trouble at a level that was fine: the server got worse
        self.reaction = Reaction.WORSE
        self.mode = Mode.CLIMB
        self.ceiling = level
        self.probe_interval = self.tuning.probe_interval
        self.next_probe_at = now + self.probe_interval
        if level > limits.min_concurrency:
            self.strikes += 1
            if self.strikes == 1:
                # once may be the level's bad luck (the crawler counts a request as out a
                # little longer than the server does): one step down, and see
                self.clean = level - 1
                self.step_back = StepBack(excess=1)
                return self._set(level - 1, self.delay, f"{reason}, one step down")
            # again before a clean round: it is the server, cut sharply
            return self._halve(now, f"{reason} again")
        # already at the minimum: a rate limit or slow answers call for a longer delay
        self.clean = level
        if kind not in (Trouble.THROTTLED, Trouble.LATENCY):
            return None
        delay = max(self.delay * 2, self.latency or 0.0, DELAY_FLOOR_STEP, limits.min_delay)
        delay = min(delay, limits.max_delay)
        if delay == self.delay:
            return None
        return self._set(level, delay, f"{reason} at minimum concurrency, delay up")

    def _halve(self, now: float, reason: str) -> Change | None:
        """The sharp cut: the level was fine and is not any more."""
        level = self.concurrency
        self.last_cut_at = now
        self.mode = Mode.CLIMB
        self.ceiling = level
        self.strikes = max(self.strikes, 1)
        self.reaction = Reaction.WORSE
        self.step_back = None
        lower = max(self.limits.min_concurrency, int(level * self.tuning.decrease_factor))
        self.clean = lower
        return self._set(lower, self.delay, f"{reason}, cut")

    def _set(self, concurrency: int, delay: float, reason: str) -> Change | None:
        concurrency = min(
            max(concurrency, self.limits.min_concurrency), self.limits.max_concurrency
        )
        delay = min(max(delay, self.limits.min_delay), self.limits.max_delay)
        if concurrency == self.concurrency and delay == self.delay:
            return None
        change = Change(concurrency, delay, self.concurrency, self.delay, reason)
        if change.direction > 0:
            self.increases += 1
        elif change.direction < 0:
            self.decreases += 1
        self.concurrency = concurrency
        self.delay = delay
        self.round = Round()
        return change

    def _observe(self, now: float, *, troubled: bool) -> None:
        """Count one outcome toward the site's background trouble."""
        if self.trouble_windows.observe(now, troubled=troubled) and self.probe is None:
            # the ceiling was found while every trouble counted: it may be nothing
            # but the site's background failures, so look for the real one again
            self.ceiling = None
            self.mode = Mode.START

    def _within_background(self) -> bool:
        """Whether the round's trouble so far is what the site's background rate explains.

        A site that only fails under load has a background of 0: its first trouble counts.
        One that fails a share of requests whatever the load (a flaky page, a broken
        backend) would otherwise hold every crawl at the minimum for nothing.
        """
        rate = self.background
        if rate <= 0:
            return False
        # judged against a whole round's worth of outcomes, not the few seen so far: checking
        # a growing count after every outcome would cross a tight early bound by chance
        outcomes = max(
            self.round.count + self.round.troubles, self.concurrency / max(1e-9, 1 - rate)
        )
        allowed = rate * outcomes + BACKGROUND_SIGMAS * math.sqrt(rate * (1 - rate) * outcomes)
        return self.round.troubles <= allowed

    # -- persistence ---------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """What was learned, as JSON-ready data (times are not kept: they are per process)."""
        return {
            "concurrency": self.concurrency,
            "delay": self.delay,
            "mode": self.mode.value,
            "ceiling": self.ceiling,
            "clean": self.clean,
            "step": self.step,
            "probe_interval": self.probe_interval,
            "latency": self.latency,
            "baseline": self.baseline,
            "increases": self.increases,
            "decreases": self.decreases,
        }

    @classmethod
    def from_state(
        cls, limits: Limits, tuning: Tuning, state: dict[str, Any], *, now: float = 0.0
    ) -> DomainController:
        """A controller resuming from :meth:`to_state`, kept inside today's limits."""
        controller = cls(limits, tuning, now=now)
        controller.concurrency = int(state.get("concurrency", limits.min_concurrency))
        controller.delay = float(state.get("delay", limits.min_delay))
        controller.concurrency = min(
            max(controller.concurrency, limits.min_concurrency), limits.max_concurrency
        )
        controller.delay = min(max(controller.delay, limits.min_delay), limits.max_delay)
        controller.mode = Mode(state.get("mode", Mode.START.value))
        ceiling = state.get("ceiling")
        controller.ceiling = None if ceiling is None else int(ceiling)
        controller.clean = min(int(state.get("clean", 0)), controller.concurrency)
        controller.step = max(1, int(state.get("step", 1)))
        controller.probe_interval = min(
            max(float(state.get("probe_interval", tuning.probe_interval)), tuning.probe_interval),
            tuning.probe_interval_max,
        )
        controller.next_probe_at = now + controller.probe_interval
        controller.latency_window.restore(state.get("latency"), state.get("baseline"))
        controller.increases = int(state.get("increases", 0))
        controller.decreases = int(state.get("decreases", 0))
        return controller
