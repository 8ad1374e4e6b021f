"""The failed-authentication limiter: per address, per sliding minute, bounded memory."""

from __future__ import annotations

from tunnelgate.gateway.ratelimit import FailedAuthLimiter


def test_an_address_is_blocked_after_rate_failures_in_a_minute() -> None:
    limiter = FailedAuthLimiter(3)
    for t in (0.0, 1.0, 2.0):
        assert not limiter.blocked("10.0.0.1", t)
        limiter.record_failure("10.0.0.1", t)
    assert limiter.blocked("10.0.0.1", 3.0)
    assert not limiter.blocked("10.0.0.2", 3.0)  # others are not affected


def test_failures_older_than_a_minute_no_longer_count() -> None:
    limiter = FailedAuthLimiter(2)
    limiter.record_failure("a", 0.0)
    limiter.record_failure("a", 30.0)
    assert limiter.blocked("a", 59.0)
    assert not limiter.blocked("a", 60.0)  # the first failure left the window
    assert not limiter.blocked("a", 91.0)
    assert len(limiter) == 0  # an address with no recent failures is forgotten


def test_memory_is_bounded() -> None:
    limiter = FailedAuthLimiter(5, max_addresses=100)
    for i in range(1000):
        for _ in range(10):
            limiter.record_failure(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(limiter) == 100
    assert limiter.blocked("10.0.3.231", 2.0)  # the most recent address is still tracked
