from __future__ import annotations

from tunnelgate.gateway.buffers import BufferBudget


def test_pressure_starts_past_the_limit_and_lifts_at_three_quarters() -> None:
    changes: list[bool] = []
    budget = BufferBudget(1000, changes.append)
    budget.take(1000)
    assert not budget.over
    budget.take(1)
    assert budget.over
    budget.take(500)
    budget.give(600)  # 901 held: still over
    assert budget.over
    budget.give(151)  # 750 held: three quarters
    assert not budget.over
    budget.take(100)
    assert changes == [True, False]
    assert budget.held == 850
