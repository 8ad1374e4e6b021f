"""The failed-authentication limiter: per address, escalating cool-downs, bounded memory."""

from __future__ import annotations

from tunnelgate.gateway.ratelimit import FORGIVE_AFTER, MAX_COOLDOWN, FailedAuthLimiter


def _fail(limiter: FailedAuthLimiter, address: str, times: list[float]) -> None:
    for t in times:
        limiter.record_failure(address, t)


def test_an_address_cools_down_after_rate_failures_in_a_minute() -> None:
    limiter = FailedAuthLimiter(3)
    for t in (0.0, 1.0, 2.0):
        assert not limiter.blocked("10.0.0.1", t)
        limiter.record_failure("10.0.0.1", t)
    assert limiter.blocked("10.0.0.1", 3.0)
    assert limiter.retry_after("10.0.0.1", 3.0) == 59.0
    assert not limiter.blocked("10.0.0.2", 3.0)  # others are not affected
    assert not limiter.blocked("10.0.0.1", 62.0)  # the first cool-down is a minute


def test_failures_spread_over_more_than_a_minute_do_not_count() -> None:
    limiter = FailedAuthLimiter(2)
    _fail(limiter, "a", [0.0, 60.0, 121.0, 182.0])  # a slow trickle
    assert not limiter.blocked("a", 183.0)
    assert not limiter.blocked("a", 300.0)
    assert len(limiter) == 0  # an address with no recent failures is forgotten


def test_repeat_offenders_cool_down_longer_each_time() -> None:
    limiter = FailedAuthLimiter(2)
    now = 0.0
    cooldowns = []
    for _ in range(8):
        _fail(limiter, "a", [now, now + 1])
        cooldowns.append(limiter.retry_after("a", now + 1))
        now += 1 + cooldowns[-1]
        assert not limiter.blocked("a", now)
    assert cooldowns == [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, MAX_COOLDOWN, MAX_COOLDOWN]


def test_offences_are_forgiven_after_a_quiet_day() -> None:
    limiter = FailedAuthLimiter(2)
    _fail(limiter, "a", [0.0, 1.0])
    _fail(limiter, "a", [100.0, 101.0])
    assert limiter.retry_after("a", 101.0) == 120.0
    later = 101.0 + FORGIVE_AFTER
    assert not limiter.blocked("a", later)
    assert len(limiter) == 0
    _fail(limiter, "a", [later, later + 1])
    assert limiter.retry_after("a", later + 1) == 60.0


def test_failures_during_a_cool_down_do_not_stack() -> None:
    limiter = FailedAuthLimiter(2)
    _fail(limiter, "a", [0.0, 1.0, 2.0, 3.0, 4.0])
    assert limiter.retry_after("a", 4.0) == 57.0


def test_memory_is_bounded() -> None:
    limiter = FailedAuthLimiter(5, max_addresses=100)
    for i in range(1000):
        for _ in range(10):
            limiter.record_failure(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(limiter) == 100
    assert limiter.blocked("10.0.3.231", 2.0)  # the most recent address is still tracked
