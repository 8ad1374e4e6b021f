"""gateway/held_waits.py: requests waiting for a held name's owner across the cluster."""

from __future__ import annotations

from tunnelgate.gateway.held_waits import HeldWaits


def test_a_change_wakes_that_names_waiters_only() -> None:
    waits = HeldWaits(per_name=4)
    web, api = waits.join("web"), waits.join("api")
    assert web is not None
    assert api is not None
    waits.changed("web")
    assert web.is_set()
    assert not api.is_set()
    again = waits.join("web")  # a woken waiter that waits on joins a new event
    assert again is not None
    assert not again.is_set()


def test_a_resync_wakes_everyone() -> None:
    waits = HeldWaits(per_name=4)
    events = [waits.join(name) for name in ("a", "b", "b")]
    waits.changed_all()
    assert all(event is not None and event.is_set() for event in events)
    assert waits.waiting() == 0


def test_each_name_has_a_bounded_queue_and_leaving_frees_a_place() -> None:
    waits = HeldWaits(per_name=2)
    first, second = waits.join("web"), waits.join("web")
    assert first is not None
    assert second is not None
    assert waits.join("web") is None  # full: the request gets 503 hold_queue_full
    assert waits.join("api") is not None  # another name has its own queue
    waits.leave("web", first)
    assert waits.waiting("web") == 1
    assert waits.join("web") is not None
    waits.leave("web", second)
    waits.changed("web")
    waits.leave("web", first)  # a stale event (after a change) changes nothing
    assert waits.waiting("web") == 0
    assert waits.waiting() == 1
