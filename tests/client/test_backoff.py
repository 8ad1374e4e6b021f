"""The reconnect back-off (issue 11): full jitter, doubling from 0.5 s, capped at 30 s."""

from __future__ import annotations

import random

import pytest

from tunnelgate import limits
from tunnelgate.client.agent import backoff_delay


@pytest.mark.parametrize(
    ("retry", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (8, 30.0), (100, 30.0), (10**6, 30.0)],
)
def test_each_retry_draws_uniformly_from_zero_to_its_ceiling(
    retry: int, ceiling: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", uniform)  # agent.py calls random.uniform
    assert backoff_delay(retry) == ceiling
    assert drawn == [(0.0, ceiling)]  # full jitter: the floor is 0, not half the ceiling


def test_the_cap_is_30_seconds() -> None:
    assert limits.BACKOFF_INITIAL == 0.5
    assert limits.BACKOFF_MAX == 30.0


def test_delays_spread_over_the_whole_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", random.Random(11).uniform)
    delays = [backoff_delay(10) for _ in range(2000)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert min(delays) < 1.0  # clients dropped together do not come back in step
    assert max(delays) > 29.0
