"""Connection caps: slots per address and in all, the descriptor headroom, counting and
rate-limited logging of refusals, and the default derived from the open-file limit."""

from __future__ import annotations

import io
import json
import resource
from collections.abc import Iterator

import pytest

from tunnelgate import limits
from tunnelgate.gateway.caps import ConnectionCaps, raise_open_file_limit
from tunnelgate.logs import configure_logging

FD = 10  # a descriptor number far from any limit below
BURST = 5  # lines RateLimitedLog lets through per cause in a window


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Log lines go here as JSON while the test runs (at once: no event loop runs here)."""
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("text")


def caps(
    max_connections: int = 100, per_address: int = 10, open_files: int = 1000
) -> ConnectionCaps:
    return ConnectionCaps(max_connections, per_address, open_files)


def test_an_address_holds_at_most_its_cap_and_others_are_unaffected() -> None:
    c = caps(per_address=3)
    slots = [c.admit("10.0.0.1", FD, "10.0.0.1:1") for _ in range(3)]
    assert slots == ["10.0.0.1"] * 3
    assert c.admit("10.0.0.1", FD, "10.0.0.1:1") is None
    assert c.admit("10.0.0.2", FD, "10.0.0.2:1") == "10.0.0.2"
    assert c.statistics().refused_per_address == 1
    c.release("10.0.0.1")
    assert c.admit("10.0.0.1", FD, "10.0.0.1:1") == "10.0.0.1"  # a freed slot is usable


def test_the_global_cap_counts_every_address() -> None:
    c = caps(max_connections=2)
    assert c.admit("10.0.0.1", FD, "a") is not None
    assert c.admit("10.0.0.2", FD, "b") is not None
    assert c.admit("10.0.0.3", FD, "c") is None
    assert c.statistics().refused_max_connections == 1
    c.release("10.0.0.1")
    assert c.admit("10.0.0.3", FD, "c") == "10.0.0.3"


def test_a_connection_that_leaves_too_few_descriptors_is_refused() -> None:
    c = caps(max_connections=10_000, open_files=200)
    assert c.admit("10.0.0.1", 200 - limits.FD_HEADROOM - 1, "a") is not None
    assert c.admit("10.0.0.1", 200 - limits.FD_HEADROOM, "a") is None
    assert c.statistics().refused_descriptors == 1
    assert c.open == 1


def test_ipv6_addresses_share_a_slot_table_per_64() -> None:
    c = caps(per_address=2)
    assert c.admit("2001:db8:1:2::1", FD, "a") == "2001:db8:1:2::/64"
    assert c.admit("2001:db8:1:2:ffff::9", FD, "b") == "2001:db8:1:2::/64"
    assert c.admit("2001:db8:1:2::77", FD, "c") is None  # same /64: over its cap
    assert c.admit("2001:db8:1:3::1", FD, "d") == "2001:db8:1:3::/64"
    assert c.admit("::ffff:10.0.0.1", FD, "e") == "10.0.0.1"  # IPv4-mapped: the IPv4 key


def test_the_table_forgets_addresses_without_connections() -> None:
    c = caps(max_connections=1000)
    keys = [c.admit(f"10.0.{i // 256}.{i % 256}", FD, "x") for i in range(500)]
    assert c.statistics().open == 500
    for key in keys:
        assert key is not None
        c.release(key)
    stats = c.statistics()
    assert (stats.open, stats.addresses) == (0, 0)
    assert c.per_address == {}


def test_refusals_are_counted_and_logged_at_a_limited_rate(log_stream: io.StringIO) -> None:
    now = [0.0]
    c = ConnectionCaps(2, 1, 10_000, clock=lambda: now[0])
    c.admit("10.0.0.1", FD, "10.0.0.1:5")
    c.admit("10.0.0.2", FD, "10.0.0.2:5")
    for _ in range(30):
        c.admit("10.0.0.1", FD, "10.0.0.1:6")  # over its own cap
        c.admit("10.0.0.3", FD, "10.0.0.3:6")  # over the global cap
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    refused = [line for line in lines if line["event"] == "connection_refused"]
    stats = c.statistics()
    assert (stats.refused_per_address, stats.refused_max_connections) == (30, 30)
    by_reason = {
        r: [x for x in refused if x["reason"] == r] for r in ("per_address_cap", "max_connections")
    }
    # Each cause has its own budget of lines, so one flood does not hide the other.
    assert len(by_reason["per_address_cap"]) == BURST
    assert len(by_reason["max_connections"]) == BURST
    first = by_reason["per_address_cap"][0]
    assert (first["level"], first["client"], first["limit"]) == ("warning", "10.0.0.1:6", 1)
    assert by_reason["max_connections"][0]["limit"] == 2
    # A window later, the next line says how many were held back.
    now[0] = 10.0
    c.admit("10.0.0.1", FD, "10.0.0.1:7")
    last = json.loads(log_stream.getvalue().splitlines()[-1])
    assert (last["reason"], last["suppressed"]) == ("per_address_cap", 30 - BURST)


@pytest.mark.parametrize(
    ("open_files", "expected"),
    [
        (64, 1),  # all reserve: one connection still works
        (128, 64),  # the minimum reserve
        (1024, 922),  # a tenth kept back
        (20_000, 18_000),
        (1_048_576, 943_719),
    ],
)
def test_default_max_connections_keeps_a_reserve(open_files: int, expected: int) -> None:
    assert limits.default_max_connections(open_files) == expected


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] == resource.RLIM_INFINITY,
    reason="an unlimited hard limit is not raised to",
)
def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        assert raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
