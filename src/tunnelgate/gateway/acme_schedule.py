"""When the ACME manager may ask the CA for what: no I/O, time passed in as `now`.

    bounds = AcmeBounds()                   every limit, from limits.py (tests shrink them)
    schedule = AcmeSchedule(bounds)
    schedule.may_order(host, now)           False while `host` backs off
    schedule.hold(now)                      seconds every order must still wait
    schedule.failed(host, error, now)       -> seconds until that host or the CA is tried again
    schedule.succeeded(host, now)
    renewal_time(not_before, not_after, bounds)

Three kinds of failure (errors.AcmeError.kind), three answers:

    refused       the CA's word on this host (a failed challenge, a refused name): this
                  host backs off, exponentially, capped; other hosts go on
    rate_limited  every order waits for the CA's Retry-After (or ACME_RATE_LIMIT_HOLD)
    unavailable   the CA cannot be reached or fails: every order waits, exponentially,
                  capped; reset by the next answer that is not a failure
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from tunnelgate import limits
from tunnelgate.errors import AcmeError


@dataclass(frozen=True, slots=True)
class AcmeBounds:
    """Every bound the ACME manager keeps, defaulting to limits.py (where each says why)."""

    max_orders: int = limits.ACME_MAX_ORDERS
    max_queued: int = limits.ACME_MAX_QUEUED
    max_cached_hosts: int = limits.ACME_MAX_CACHED_HOSTS
    request_timeout: float = limits.ACME_REQUEST_TIMEOUT
    order_timeout: float = limits.ACME_ORDER_TIMEOUT
    poll_interval: float = limits.ACME_POLL_INTERVAL
    max_poll_interval: float = limits.ACME_MAX_POLL_INTERVAL
    retry_initial: float = limits.ACME_RETRY_INITIAL
    retry_max: float = limits.ACME_RETRY_MAX
    unavailable_initial: float = limits.ACME_UNAVAILABLE_INITIAL
    unavailable_max: float = limits.ACME_UNAVAILABLE_MAX
    rate_limit_hold: float = limits.ACME_RATE_LIMIT_HOLD
    max_retry_after: float = limits.ACME_MAX_RETRY_AFTER
    renew_before: float = limits.ACME_RENEW_BEFORE
    renew_fraction: float = limits.ACME_RENEW_FRACTION
    renew_check_interval: float = limits.ACME_RENEW_CHECK_INTERVAL


class Backoff:
    """Exponential and capped: after n failures in a row, wait initial * 2**(n-1), at most
    `maximum` (or longer if told: a Retry-After)."""

    __slots__ = ("failures", "initial", "maximum", "until")

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self.until = 0.0  # monotonic seconds; nothing before it

    def __repr__(self) -> str:
        return f"<Backoff failures={self.failures} until={self.until:g}>"

    def failed(self, now: float, at_least: float = 0.0) -> float:
        """Count a failure; the seconds to wait from `now`. Failures while a wait is on
        (attempts made at the same time, ending together) count as one."""
        if self.until > now and at_least <= self.until - now:
            return self.until - now
        self.failures += 1
        delay: float = min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, 62))
        delay = max(delay, at_least)
        self.until = now + delay
        return delay

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)

    def reset(self) -> None:
        self.failures = 0
        self.until = 0.0


class AcmeSchedule:
    def __init__(self, bounds: AcmeBounds) -> None:
        self._bounds = bounds
        # Hosts backing off, oldest failure first; bounded like the certificate cache (a
        # host dropped here may be tried again early, which the CA's limits still bound).
        self._hosts: OrderedDict[str, Backoff] = OrderedDict()
        self._unavailable = Backoff(bounds.unavailable_initial, bounds.unavailable_max)
        self._rate_limited_until = 0.0

    def __repr__(self) -> str:
        return (
            f"<AcmeSchedule hosts_backing_off={len(self._hosts)} "
            f"unavailable={self._unavailable.failures}>"
        )

    def may_order(self, host: str, now: float) -> bool:
        backoff = self._hosts.get(host)
        return backoff is None or backoff.remaining(now) == 0.0

    def hold(self, now: float) -> float:
        """Seconds before any order may go to the CA (0: now)."""
        return max(self._unavailable.remaining(now), self._rate_limited_until - now, 0.0)

    def failed(self, host: str, error: AcmeError, now: float) -> float:
        """Record a failed order; the seconds before it (refused: this host; else: any
        order) may be tried again."""
        retry_after = min(error.retry_after or 0.0, self._bounds.max_retry_after)
        if error.kind == "rate_limited":
            delay = retry_after or self._bounds.rate_limit_hold
            self._rate_limited_until = max(self._rate_limited_until, now + delay)
            return delay
        if error.kind == "unavailable":
            return self._unavailable.failed(now, retry_after)
        self._unavailable.reset()  # the CA answered
        return self.host_failed(host, now, retry_after)

    def host_failed(self, host: str, now: float, at_least: float = 0.0) -> float:
        """This host backs off (the CA refused it, or its files cannot be written)."""
        backoff = self._hosts.pop(host, None) or Backoff(
            self._bounds.retry_initial, self._bounds.retry_max
        )
        self._hosts[host] = backoff  # most recent last
        while len(self._hosts) > self._bounds.max_cached_hosts:
            self._hosts.popitem(last=False)
        return backoff.failed(now, at_least)

    def succeeded(self, host: str) -> None:
        self._hosts.pop(host, None)
        self._unavailable.reset()

    def backing_off(self) -> int:
        return len(self._hosts)


def renewal_time(not_before: datetime, not_after: datetime, bounds: AcmeBounds) -> datetime:
    """When a certificate valid from `not_before` to `not_after` is renewed: `renew_before`
    ahead of its end, or when `renew_fraction` of its life is left if that is later."""
    lifetime = not_after - not_before
    ahead = min(timedelta(seconds=bounds.renew_before), lifetime * bounds.renew_fraction)
    return not_after - ahead
