"""gateway/restarts.py: when a crashed worker starts again, and when the supervisor gives up."""

from __future__ import annotations

from tunnelgate import limits
from tunnelgate.gateway.restarts import RestartPolicy


def test_fast_crashes_double_the_delay_then_give_up() -> None:
    policy = RestartPolicy()
    delays = [
        policy.crashed(started=100.0, now=101.0) for _ in range(limits.WORKER_MAX_FAST_CRASHES)
    ]
    assert delays == [0.1, 0.2, 0.4, 0.8, None]
    assert repr(policy) == "<RestartPolicy fast_crashes=5/5>"


def test_the_delay_stops_doubling_at_its_maximum() -> None:
    policy = RestartPolicy(max_fast=100)
    delays = [policy.crashed(0.0, 1.0) for _ in range(10)]
    assert delays[-1] == limits.WORKER_RESTART_DELAY_MAX
    assert max(d for d in delays if d is not None) == limits.WORKER_RESTART_DELAY_MAX


def test_a_worker_that_ran_long_enough_starts_the_count_again() -> None:
    policy = RestartPolicy()
    for _ in range(limits.WORKER_MAX_FAST_CRASHES - 1):
        assert policy.crashed(0.0, 1.0) is not None
    # Up for WORKER_FAST_CRASH: not a fast crash; the next fast one is the first again.
    assert policy.crashed(0.0, limits.WORKER_FAST_CRASH) == limits.WORKER_RESTART_DELAY
    assert policy.crashed(50.0, 51.0) == limits.WORKER_RESTART_DELAY
    assert policy.fast_crashes == 1
