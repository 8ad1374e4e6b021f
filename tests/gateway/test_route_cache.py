"""gateway/route_cache.py: name -> node answers, bounded and short-lived."""

from __future__ import annotations

from tunnelgate.gateway.route_cache import NodeCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_lives_for_its_ttl() -> None:
    clock = Clock()
    cache = NodeCache(10, 2.0, clock)
    cache.put("web", "10.0.0.2:7000")
    clock.now = 1.9
    assert cache.get("web") == "10.0.0.2:7000"
    clock.now = 2.0
    assert cache.get("web") is None
    assert len(cache) == 0


def test_the_oldest_answer_goes_when_full() -> None:
    cache = NodeCache(2, 60.0, Clock())
    for name in ("a", "b", "c"):
        cache.put(name, f"node-{name}")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, "node-b", "node-c")
    cache.put("b", "node-b2")  # put again: the newest
    cache.put("d", "node-d")
    assert (cache.get("b"), cache.get("c"), cache.get("d")) == ("node-b2", None, "node-d")


def test_drop_a_name_or_every_name_of_a_node() -> None:
    cache = NodeCache(10, 60.0, Clock())
    cache.put("a", "n1")
    cache.put("b", "n1")
    cache.put("c", "n2")
    cache.drop("c")
    assert cache.get("c") is None
    cache.drop_node("n1")
    assert len(cache) == 0
