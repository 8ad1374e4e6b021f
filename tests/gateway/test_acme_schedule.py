"""When the ACME manager may ask the CA: back-off per host and for every order, renewal
times. No I/O: time is passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tunnelgate.errors import AcmeError
from tunnelgate.gateway.acme_schedule import AcmeBounds, AcmeSchedule, Backoff, renewal_time

BOUNDS = AcmeBounds(
    retry_initial=300.0,
    retry_max=6 * 3600.0,
    unavailable_initial=5.0,
    unavailable_max=600.0,
    rate_limit_hold=3600.0,
    max_retry_after=86400.0,
    max_cached_hosts=3,
)
REFUSED = AcmeError("refused", "http-01 validation invalid")
DOWN = AcmeError("unavailable", "connection refused")


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(300.0, 3600.0)
    now, delays = 0.0, []
    for _ in range(6):
        delays.append(backoff.failed(now))
        now = backoff.until
    assert delays == [300.0, 600.0, 1200.0, 2400.0, 3600.0, 3600.0]
    backoff.reset()
    assert backoff.failed(now) == 300.0


def test_failures_ending_together_count_once() -> None:
    backoff = Backoff(5.0, 600.0)
    assert backoff.failed(100.0) == 5.0
    assert backoff.failed(101.0) == 4.0  # a second worker's attempt, made at the same time
    assert backoff.failures == 1
    assert backoff.failed(105.0) == 10.0


def test_a_refusal_backs_off_that_host_only() -> None:
    schedule = AcmeSchedule(BOUNDS)
    assert schedule.failed("a.example.test", REFUSED, 0.0) == 300.0
    assert not schedule.may_order("a.example.test", 299.0)
    assert schedule.may_order("a.example.test", 300.0)
    assert schedule.may_order("b.example.test", 0.0)
    assert schedule.hold(0.0) == 0.0
    assert schedule.failed("a.example.test", REFUSED, 300.0) == 600.0
    schedule.succeeded("a.example.test")
    assert schedule.may_order("a.example.test", 301.0)


def test_an_unreachable_ca_holds_every_order_until_it_answers() -> None:
    schedule = AcmeSchedule(BOUNDS)
    assert schedule.failed("a.example.test", DOWN, 0.0) == 5.0
    assert schedule.hold(1.0) == 4.0
    assert schedule.may_order("a.example.test", 1.0)  # the host itself is not to blame
    assert schedule.failed("b.example.test", DOWN, 5.0) == 10.0
    schedule.succeeded("b.example.test")
    assert schedule.hold(6.0) == 0.0
    assert schedule.failed("b.example.test", DOWN, 6.0) == 5.0  # from the start again


def test_a_rate_limit_holds_every_order_for_the_cas_retry_after() -> None:
    schedule = AcmeSchedule(BOUNDS)
    limited = AcmeError("rate_limited", "too many orders", retry_after=120.0)
    assert schedule.failed("a.example.test", limited, 0.0) == 120.0
    assert schedule.hold(20.0) == 100.0
    without = AcmeError("rate_limited", "too many orders")
    assert schedule.failed("a.example.test", without, 200.0) == 3600.0
    absurd = AcmeError("rate_limited", "see you next year", retry_after=365 * 86400.0)
    assert schedule.failed("a.example.test", absurd, 0.0) == 86400.0


def test_hosts_backing_off_are_bounded() -> None:
    schedule = AcmeSchedule(BOUNDS)
    for number in range(10):
        schedule.failed(f"h{number}.example.test", REFUSED, 0.0)
    assert schedule.backing_off() == 3
    assert schedule.may_order("h0.example.test", 1.0)  # the oldest were forgotten
    assert not schedule.may_order("h9.example.test", 1.0)


def test_renewal_time_is_30_days_ahead_or_a_third_of_a_short_life() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    bounds = AcmeBounds()
    ninety = renewal_time(start, start + timedelta(days=90), bounds)
    assert ninety == start + timedelta(days=60)  # Let's Encrypt's 90-day certificates
    six = renewal_time(start, start + timedelta(days=6), bounds)
    assert six == start + timedelta(days=4)  # short-lived: with a third of its life left
    years = renewal_time(start, start + timedelta(days=1826), bounds)
    assert years == start + timedelta(days=1796)
