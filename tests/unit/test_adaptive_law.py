"""The adaptive control law (matter_crawler.adaptive.law, .states, .windows, .memory) on
scripted outcomes, and against a discrete-event model of a server with a capacity."""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import replace

import pytest

from matter_crawler.adaptive.law import DomainController
from matter_crawler.adaptive.limits import Limits
from matter_crawler.adaptive.memory import MemoryAction, MemoryCeiling
from matter_crawler.adaptive.states import Mode, Reaction, StepBack, Trouble

from ..adaptive_helpers import LATENCY, TUNING, clean_round, controller, limits, ramp

# -- increase ------------------------------------------------------------------------


def test_ramps_up_while_latency_stays_near_its_baseline_and_nothing_fails():
    ctl = controller()
    levels = [ctl.concurrency]
    now = 0.0
    for _ in range(12):
        now += LATENCY
        clean_round(ctl, now)
        levels.append(ctl.concurrency)
    # +50% a round and at most +4: never a burst that could trip the circuit breaker
    assert levels == [1, 2, 3, 4, 6, 9, 13, 17, 21, 25, 29, 32, 32]
    assert ctl.increases == 11  # and no further than the bound
    assert ctl.decreases == 0
    assert ctl.baseline == pytest.approx(LATENCY)


def test_a_level_the_crawl_does_not_fill_proves_nothing():
    ctl = controller()
    ramp(ctl, 4)
    assert ctl.concurrency == 6
    for index in range(50):  # only 2 requests out at a time: the crawl has little to do
        ctl.success(2.0 + index * 0.1, LATENCY, in_flight=2)
    assert ctl.concurrency == 6


def test_a_latency_rise_stops_growth_and_cuts():
    ctl = controller()
    now = ramp(ctl, 6)  # 13, baseline 0.2 s
    assert ctl.concurrency == 13
    # slower, but inside max(target 0.5 s, 2 x baseline): still growing
    now += 0.5
    clean_round(ctl, now, latency=0.45)
    assert ctl.concurrency == 17
    now += 0.5
    clean_round(ctl, now, latency=0.45)  # 17 proved clean at 0.45 s; now 21
    assert (ctl.clean, ctl.concurrency) == (17, 21)
    now += 1.5
    change = clean_round(ctl, now, latency=1.2)  # 6x the baseline, above the 0.5 s target
    assert change is not None
    assert "latency" in change.reason
    assert ctl.concurrency == 17  # 21 was an overshoot: back to the last clean level
    now += 1.5
    change = clean_round(ctl, now, latency=1.2)  # still slow at a level that was fine
    assert change is not None
    assert change.concurrency == 16
    now += 1.5
    change = clean_round(ctl, now, latency=1.2)  # and again: halve
    assert change is not None
    assert change.concurrency == 8
    assert ctl.ceiling == 16


def test_latency_under_the_target_is_never_a_rise():
    ctl = DomainController(limits(), replace(TUNING, target_latency=1.0))
    now = ramp(ctl, 4, start=0.0)  # baseline 0.2 s
    level = ctl.concurrency
    clean_round(ctl, now + 1, latency=0.9)  # 4.5x the baseline, under the 1 s target
    assert ctl.concurrency > level


# -- decrease ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Trouble.OVERLOAD, Trouble.TIMEOUT, Trouble.CONNECTION])
def test_trouble_at_a_level_that_was_fine_cuts_sharply(kind):
    ctl = controller()
    now = ramp(ctl, 12)  # up to 32, and a clean round there
    assert (ctl.clean, ctl.concurrency) == (32, 32)
    change = ctl.trouble(now + 0.05, kind, sent_at=now)
    assert change is not None
    assert (change.old_concurrency, change.concurrency) == (32, 31)  # once: a step down
    assert ctl.ceiling == 32
    # again, from a request sent after the step, before a clean round: halve, and again
    change = ctl.trouble(now + 0.3, kind, sent_at=now + 0.1)
    assert change is not None
    assert (change.old_concurrency, change.concurrency) == (31, 15)
    change = ctl.trouble(now + 0.6, kind, sent_at=now + 0.4)
    assert change is not None
    assert change.concurrency == 7
    assert ctl.decreases == 3
    # clean rounds end the streak: trouble at a clean level is a single step again
    clean_round(ctl, now + 1.0)
    assert ctl.concurrency == 11  # climbing halfway back to the ceiling (15)
    clean_round(ctl, now + 1.3)
    assert (ctl.clean, ctl.concurrency) == (11, 13)
    ctl.trouble(now + 1.6, kind, sent_at=now + 1.5)  # 13 overshoots: back to 11
    change = ctl.trouble(now + 2.0, kind, sent_at=now + 1.7)
    assert change is not None
    assert (change.old_concurrency, change.concurrency) == (11, 10)


def test_an_overshoot_steps_back_to_the_last_clean_level_then_probes_rarely():
    ctl = controller()
    now = ramp(ctl, 7)  # 1..13 clean, now at 17
    assert (ctl.concurrency, ctl.clean) == (17, 13)
    change = ctl.trouble(now + 0.1, Trouble.OVERLOAD, sent_at=now)
    assert change is not None
    assert change.concurrency == 13
    assert ctl.ceiling == 17
    assert ctl.mode is Mode.CLIMB
    first_probe = now + 0.1 + ctl.tuning.probe_interval
    now += 0.3
    clean_round(ctl, now)
    assert ctl.concurrency == 15  # halfway to the ceiling
    now += 0.3
    clean_round(ctl, now)
    assert ctl.concurrency == 16
    # one below the ceiling: no probe before the probe interval (5 s) is up
    while now < first_probe - 0.5:
        now += 0.3
        clean_round(ctl, now)
        assert ctl.concurrency == 16
    now = first_probe + 0.1
    change = clean_round(ctl, now)
    assert change is not None
    assert change.concurrency == 17
    assert "probing" in change.reason
    # the probe fails: straight back to 16, and the next probe waits twice as long
    ctl.trouble(now + 0.1, Trouble.OVERLOAD, sent_at=now + 0.01)
    assert ctl.concurrency == 16
    assert ctl.probe_interval == 2 * ctl.tuning.probe_interval
    for _ in range(5):  # failed probes back off up to the maximum
        now = ctl.next_probe_at + 0.1
        clean_round(ctl, now)
        assert ctl.concurrency == 17
        ctl.trouble(now + 0.1, Trouble.OVERLOAD, sent_at=now + 0.01)
    assert ctl.probe_interval == ctl.tuning.probe_interval_max


def test_a_probe_that_holds_lifts_the_ceiling_and_growth_accelerates():
    ctl = controller()
    now = ramp(ctl, 4)  # 6
    ctl.trouble(now, Trouble.OVERLOAD, sent_at=now)  # overshoot at 6: back to 4, ceiling 6
    now += 0.3
    clean_round(ctl, now)
    ctl.trouble(now + 0.1, Trouble.OVERLOAD, sent_at=now + 0.05)  # 5 fails too: ceiling 5
    assert (ctl.concurrency, ctl.ceiling) == (4, 5)
    now = ctl.next_probe_at + 0.1
    clean_round(ctl, now)
    assert ctl.concurrency == 5
    assert ctl.probing
    levels = []
    for _ in range(5):
        now += 0.3
        clean_round(ctl, now)
        levels.append(ctl.concurrency)
    assert ctl.ceiling is None
    assert ctl.mode is Mode.GROW
    assert levels == [5, 6, 8, 12, 16]  # the probe holds two rounds, then +1, +2, +4, +4


def test_trouble_from_requests_sent_before_the_cut_is_not_counted_twice():
    ctl = controller()
    now = ramp(ctl, 8)  # 21 (1..17 clean)
    ctl.trouble(now, Trouble.OVERLOAD, sent_at=now - 0.1)  # 21 overshoots: back to 17
    assert ctl.concurrency == 17
    assert (ctl.reaction, ctl.step_back) == (Reaction.OVERSHOOT, StepBack(excess=4))
    for _ in range(4):  # the rest of the overshoot, already on its way: expected
        assert ctl.trouble(now + 0.05, Trouble.OVERLOAD, sent_at=now - 0.05) is None
    # exceptions carry no send time: within one smoothed latency of the cut they are old too
    assert ctl.trouble(now + 0.1, Trouble.TIMEOUT) is None
    assert ctl.concurrency == 17
    assert ctl.ignored == 5
    # more refusals than the overshoot's excess: a burst, the capacity fell, cut at once
    change = ctl.trouble(now + 0.12, Trouble.OVERLOAD, sent_at=now - 0.02)
    assert change is not None
    assert change.concurrency == 8
    assert "burst" in change.reason
    assert (ctl.reaction, ctl.step_back) == (Reaction.WORSE, None)  # a Retry-After would pause
    # trouble from a request sent after that cut is news again
    assert ctl.trouble(now + 1.0, Trouble.TIMEOUT) is not None
    assert ctl.concurrency == 4


def test_retry_after_pauses_the_domain_until_it_has_passed():
    ctl = controller()
    now = ramp(ctl, 6)  # 13, clean
    now += LATENCY
    clean_round(ctl, now)  # 13 proved clean, now 17
    # a probe's refusal: the step back removes the excess, only that request waits
    change = ctl.trouble(now + 0.1, Trouble.THROTTLED, sent_at=now, retry_after=3)
    assert change is not None
    assert change.paused_until is None
    assert ctl.concurrency == 13
    # a 429 at the level that was fine: the server's word overrides the controller
    now += 1.0
    change = ctl.trouble(now, Trouble.THROTTLED, sent_at=now - 0.1, retry_after=3)
    assert change is not None
    assert change.paused_until == pytest.approx(now + 3)
    assert ctl.slot_concurrency(now + 1) == 0
    assert ctl.slot_concurrency(now + 3.01) == ctl.concurrency == 12
    # a later, shorter Retry-After does not shorten the pause; an absurd one is capped
    ctl.trouble(now + 0.5, Trouble.THROTTLED, sent_at=now - 0.1, retry_after=1)
    assert ctl.paused_until == pytest.approx(now + 3)
    ctl.trouble(now + 0.6, Trouble.THROTTLED, sent_at=now - 0.1, retry_after=86400)
    assert ctl.paused_until == pytest.approx(now + 0.6 + ctl.tuning.retry_after_max)


def test_the_open_breaker_overrides_everything_until_it_closes():
    ctl = controller()
    now = ramp(ctl, 6)  # 13
    change = ctl.breaker_changed(now, "open")
    assert change is not None
    assert change.concurrency == 1
    assert ctl.trouble(now + 1, Trouble.OVERLOAD, sent_at=now + 0.9) is None  # held anyway
    clean_round(ctl, now + 2)  # a half-open probe that worked
    assert ctl.concurrency == 1
    assert ctl.breaker_changed(now + 3, "closed") is None
    ramp(ctl, 3, start=now + 3)
    assert ctl.concurrency > 1


# -- bounds --------------------------------------------------------------------------


def test_bounds_hold_whatever_happens():
    bounds = Limits(min_concurrency=2, max_concurrency=5, min_delay=0.5, max_delay=4.0)
    ctl = DomainController(bounds, TUNING)
    now = 0.0
    for step in range(200):
        now += 0.3
        if step % 7 == 3:
            ctl.trouble(now, Trouble.THROTTLED, sent_at=now)
        else:
            clean_round(ctl, now)
        assert 2 <= ctl.concurrency <= 5
        assert 0.5 <= ctl.delay <= 4.0


def test_a_rate_limit_at_minimum_concurrency_stretches_the_delay_and_clean_rounds_undo_it():
    ctl = DomainController(limits(max_concurrency=4, max_delay=8.0), TUNING)
    ctl.success(0.2, LATENCY, in_flight=1, sent_at=0.0)  # a clean round: 2 at a time
    ctl.trouble(0.5, Trouble.THROTTLED, sent_at=0.3)  # 2 was too many: back to 1
    assert (ctl.concurrency, ctl.delay) == (1, 0.0)
    now, delays = 0.5, []
    for _ in range(7):  # 429s keep coming, one request at a time
        now += 1.0
        ctl.trouble(now, Trouble.THROTTLED, sent_at=now - 0.1)
        delays.append(ctl.delay)
    assert ctl.concurrency == 1
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 8.0]  # doubling from one latency, capped
    for _ in range(3):
        now += 10
        clean_round(ctl, now)
    assert ctl.delay == 1.0
    for _ in range(4):
        now += 10
        clean_round(ctl, now)
    assert ctl.delay == 0.0
    assert ctl.concurrency == 1  # the delay goes first, then concurrency may grow
    # a server error at minimum concurrency leaves the delay alone: that is the breaker's job
    ctl.trouble(now + 0.1, Trouble.OVERLOAD, sent_at=now + 0.05)
    ctl.trouble(now + 5.0, Trouble.OVERLOAD, sent_at=now + 4.9)
    assert (ctl.concurrency, ctl.delay) == (1, 0.0)


# -- memory --------------------------------------------------------------------------


def test_memory_pressure_lowers_concurrency_and_holds_it():
    ctl = controller()
    now = ramp(ctl, 7)  # 17
    change = ctl.memory(now, pressure=True)
    assert change is not None
    assert (change.old_concurrency, change.concurrency) == (17, 8)
    ramp(ctl, 5, start=now)
    assert ctl.concurrency == 8  # no growth under pressure
    ctl.memory(now + 2, pressure=True)
    assert ctl.concurrency == 4
    ctl.memory(now + 4, pressure=False)
    ramp(ctl, 2, start=now + 4)
    assert ctl.concurrency > 4


def test_memory_pressure_lowers_once_holds_and_releases_below_90_percent():
    ceiling = MemoryCeiling(400)
    readings = [300, 399, 400, 405, 410, 399, 361, 419, 420, 370, 361, 359, 380, 399, 400]
    actions = [ceiling.observe(mb) for mb in readings]
    lower, release = MemoryAction.LOWER, MemoryAction.RELEASE
    assert actions == [
        None, None, lower,  # at the ceiling: lower
        None, None, None, None, None,  # held while memory stays within 5% above that reading
        lower,  # climbing on (+20 MB, 5% of the ceiling): lower again
        None, None,  # still above 90% of the ceiling: held
        release,  # below 360 MB: released
        None, None,
        lower,  # at the ceiling again
    ]  # fmt: skip


def test_state_survives_json():
    ctl = controller()
    now = ramp(ctl, 7)
    ctl.trouble(now, Trouble.OVERLOAD, sent_at=now)
    saved = json.loads(json.dumps(ctl.to_state()))
    restored = DomainController.from_state(ctl.limits, ctl.tuning, saved, now=1000.0)
    assert restored.to_state() == ctl.to_state()
    assert restored.concurrency == 13
    assert restored.ceiling == 17
    assert restored.mode is Mode.CLIMB
    # restored into narrower limits (another profile), it stays inside them
    tight = DomainController.from_state(limits(max_concurrency=4, min_delay=1.0), TUNING, saved)
    assert (tight.concurrency, tight.delay) == (4, 1.0)


# -- the law against a server with a capacity (a discrete-event model of the site) ---------


def simulate(
    capacity_at, seconds: float, latency: float = 0.2, refusal: float = 0.1, flaky: float = 0.0
):
    """Drive a controller with a server that serves ``capacity_at(t)`` requests at once and
    refuses the rest after ``refusal`` seconds, and fails a ``flaky`` share of requests
    whatever the load. Returns (controller, per-second levels, ok, errors)."""
    ctl = controller()
    draws = random.Random(7)
    events: list[tuple[float, int, bool, float]] = []
    in_flight = admitted = order = ok = errors = 0
    levels: dict[int, int] = {}

    def send(now: float) -> None:
        nonlocal in_flight, admitted, order
        while in_flight < ctl.slot_concurrency(now):
            in_flight += 1
            order += 1
            served = admitted < capacity_at(now) and draws.random() >= flaky
            admitted += served
            heapq.heappush(events, (now + (latency if served else refusal), order, served, now))

    send(0.0)
    while events and events[0][0] < seconds:
        now, _, served, sent = heapq.heappop(events)
        if served:
            admitted -= 1
            ok += 1
            ctl.success(now, now - sent, in_flight, sent)
        else:
            errors += 1
            ctl.trouble(now, Trouble.OVERLOAD, sent_at=sent)
        in_flight -= 1
        levels[int(now)] = ctl.concurrency
        send(now)
    return ctl, levels, ok, errors


def test_against_a_capacity_the_law_settles_at_it_with_few_errors():
    _ctl, levels, ok, errors = simulate(lambda t: 16, 60)
    assert all(15 <= levels[second] <= 17 for second in range(5, 60))
    assert errors / (ok + errors) < 0.01
    assert ok / 60 > 0.95 * 16 / 0.2  # within 5% of a fixed 16


def test_a_site_that_fails_whatever_the_load_is_not_held_at_the_minimum():
    # 20% of requests fail at any concurrency: slowing down would not help
    ctl, levels, _, _ = simulate(lambda t: 1000, 60, flaky=0.2)
    assert ctl.background == pytest.approx(0.2, abs=0.06)
    assert sorted(levels[s] for s in range(30, 60))[15] >= 24  # near the bound (32)
    # the same site without the tolerance: every failure counts, the crawl crawls
    stubborn, levels, _, _ = simulate(lambda t: 1000, 8, flaky=0.2)
    assert stubborn.background == 0  # not known yet in the first ten seconds
    assert max(levels[s] for s in range(4, 8)) <= 8


def test_when_capacity_drops_and_recovers_the_law_follows_within_30_seconds():
    def capacity(t: float) -> int:
        return 4 if 20 <= t < 60 else 16

    _, levels, ok, errors = simulate(capacity, 100)
    assert all(3 <= levels[second] <= 5 for second in range(22, 60))
    settled = next(s for s in range(60, 100) if all(15 <= levels[t] <= 17 for t in range(s, 100)))
    assert settled - 60 < 30
    assert errors / (ok + errors) < 0.02
