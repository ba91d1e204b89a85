"""Reconnect delays and OKX's connection/request budgets."""

from __future__ import annotations

import random

from okx.backoff import (
    Backoff,
    SlidingWindowLimit,
    describe_close,
    is_fatal_close,
    new_connection_limit,
    request_limit,
)


def test_delays_grow_are_capped_and_jittered():
    rng = random.Random(7)
    backoff = Backoff(initial=0.5, factor=2, cap=30)
    delays = [backoff.next_delay(rng) for _ in range(12)]
    ceilings = [min(30, 0.5 * 2**i) for i in range(12)]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 5 <= delay <= ceiling
    assert max(delays) <= 30
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    backoff.reset()
    assert backoff.next_delay(rng) <= 0.5


def test_connection_limit_allows_three_per_second():
    limit = new_connection_limit()
    for t in (0.0, 0.1, 0.2):
        assert limit.wait(t) == 0
        limit.record(t)
    assert abs(limit.wait(0.3) - 0.7) < 1e-9  # the first one leaves the window at t=1.0
    assert limit.wait(1.0) == 0


def test_request_budget_keeps_a_margin_under_480_per_hour():
    limit = request_limit()
    for i in range(450):
        assert limit.wait(i) == 0
        limit.record(i)
    assert limit.wait(450) > 0
    assert limit.used(3600 + 10) == 439  # the first eleven have left the hour


def test_sliding_window_generic():
    limit = SlidingWindowLimit(2, 10)
    limit.record(0)
    limit.record(5)
    assert limit.wait(6) == 4
    assert limit.wait(10) == 0


def test_close_codes():
    assert is_fatal_close(4001) and not is_fatal_close(4004) and not is_fatal_close(None)
    assert "idle" in describe_close(4004)
    assert "without a close frame" in describe_close(None)
    assert "4999" in describe_close(4999)
