from __future__ import annotations

from tunnelgate.gateway.buffers import BufferBudget

A, B = "192.0.2.1", "2001:db8::/64"


def test_pressure_starts_past_the_limit_and_lifts_at_three_quarters() -> None:
    changes: list[bool] = []
    budget = BufferBudget(1000, changes.append)
    budget.take(1000, A)
    assert not budget.over
    budget.take(1, B)
    assert budget.over
    budget.take(500, A)
    budget.give(600, A)  # 901 held: still over
    assert budget.over
    budget.give(151, A)  # 750 held: three quarters
    assert not budget.over
    budget.take(100, B)
    assert changes == [True, False]
    assert budget.held == 850


def test_an_address_past_its_share_is_told_and_others_are_not() -> None:
    budget = BufferBudget(1000, share=250)
    assert budget.take(250, A)  # exactly its share
    assert not budget.take(1, A)  # past it: counted all the same
    assert budget.take(250, B)  # another address has its own share
    assert budget.held == 501
    assert budget.by_address == {A: 251, B: 250}
    budget.give(251, A)
    budget.give(250, B)
    assert budget.by_address == {}  # only addresses holding something are kept
    assert budget.held == 0
    assert budget.take(250, A)  # back under: its share again
