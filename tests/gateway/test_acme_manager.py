"""The ACME manager's bounds, with no CA that could issue anything: names outside the
domain, the queue, the memory cap (kept certificates come from trustme), a rate limit
that holds every order, expiry, and a prompt shutdown in the middle of an order."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import trustme
from acme_helpers import DOMAIN, EMAIL, FAST, Clock, keep_certificates
from fake_acme import Answer, fake_acme, problem

from tunnelgate.gateway.acme import AcmeManager
from tunnelgate.gateway.acme_schedule import AcmeBounds
from tunnelgate.gateway.acme_store import AcmeStore
from tunnelgate.logs import LineWriter, configure_logging
from tunnelgate.testing.proc import poll_until_async
from tunnelgate.testing.processes import free_port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("text")


def events(stream: io.StringIO, name: str) -> list[dict[str, object]]:
    LineWriter.flush_all()
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [event for event in found if event.get("event") == name]


def nowhere() -> str:
    """A directory URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/dir"


def manager(
    state: Path,
    directory: str,
    *,
    bounds: AcmeBounds = FAST,
    clock: Clock | None = None,
) -> AcmeManager:
    return AcmeManager(
        domain=DOMAIN,
        email=EMAIL,
        directory=directory,
        state_dir=state,
        bounds=bounds,
        clock=clock or Clock(),
    )


@pytest.mark.parametrize(
    "host",
    [
        "evil.com",
        "deep.app.example.test",
        "example.test.evil.com",
        "-bad.example.test",
        "under_score.example.test",
        "\u212aelvin.example.test",  # KELVIN SIGN: lower() would make it an ASCII k
        "*.example.test",
        "",
    ],
)
async def test_a_name_outside_the_domain_is_never_requested(tmp_path: Path, host: str) -> None:
    acme = manager(tmp_path, nowhere())
    acme.ensure(host)
    assert acme.statistics().queued == 0
    assert acme.statistics().refused == 1
    assert acme.context_for(host) is None
    await acme.aclose()


async def test_the_domain_and_one_label_under_it_are_asked_for(tmp_path: Path) -> None:
    acme = manager(tmp_path, nowhere())
    for host in ("App.Example.Test.", DOMAIN, f"tunnel.{DOMAIN}"):
        acme.ensure(host)
    assert acme.statistics().queued == 3
    await acme.aclose()


async def test_the_queue_is_bounded(tmp_path: Path, log_stream: io.StringIO) -> None:
    acme = manager(tmp_path, nowhere(), bounds=replace(FAST, max_queued=2))
    for name in ("a", "b", "c", "d", "a"):
        acme.ensure(f"{name}.{DOMAIN}")  # not started: nothing takes them from the queue
    assert acme.statistics().queued == 2
    assert acme.statistics().dropped == 2
    assert len(events(log_stream, "acme_queue_full")) == 2
    await acme.aclose()


async def test_the_least_recently_used_leave_memory_not_disk(
    tmp_path: Path, ca: trustme.CA
) -> None:
    directory = nowhere()
    hosts = [f"{name}.{DOMAIN}" for name in ("a", "b", "c")]
    kept = keep_certificates(AcmeStore(tmp_path, directory), ca, hosts, Clock()())
    acme = manager(tmp_path, directory, bounds=replace(FAST, max_cached_hosts=2))
    await acme.start()
    try:
        assert acme.statistics().cached == 2
        assert acme.context_for(hosts[0]) is None  # the oldest was not loaded
        assert acme.context_for(hosts[1]) is not None  # now b is the most recently used
        acme.ensure(hosts[0])
        await poll_until_async(lambda: acme.context_for(hosts[0]) is not None)
        assert acme.statistics().cached == 2
        assert acme.context_for(hosts[2]) is None  # c was the least recently used
        assert acme.context_for(hosts[1]) is not None
        stats = acme.statistics()
        assert (stats.orders, stats.loaded) == (0, 2)  # from disk: no CA was asked
        assert len(kept) == 3
    finally:
        await acme.aclose()


async def test_an_expired_certificate_is_not_served(tmp_path: Path, ca: trustme.CA) -> None:
    clock = Clock()
    directory = nowhere()
    keep_certificates(AcmeStore(tmp_path, directory), ca, [f"a.{DOMAIN}"], clock())
    acme = manager(tmp_path, directory, clock=clock)
    await acme.start()
    try:
        assert acme.context_for(f"a.{DOMAIN}") is not None
        clock.offset = timedelta(days=365 * 2000)  # trustme's certificates last until 3000
        assert acme.context_for(f"a.{DOMAIN}") is None
    finally:
        await acme.aclose()


async def test_a_rate_limit_holds_every_order(tmp_path: Path, log_stream: io.StringIO) -> None:
    limited = problem(429, "rateLimited", "too many orders", **{"Retry-After": "30"})
    with fake_acme({"/new-account": limited}) as ca:
        acme = manager(tmp_path, ca.directory)
        await acme.start()
        try:
            await poll_until_async(lambda: ca.posts("/new-account") == 1)  # at start-up
            acme.ensure(f"a.{DOMAIN}")
            await poll_until_async(lambda: acme.statistics().failed == 1)
            acme.ensure(f"b.{DOMAIN}")
            await poll_until_async(lambda: acme.statistics().queued == 2)
            await asyncio.sleep(0.3)  # what is checked is that nothing happens meanwhile
            assert ca.posts("/new-account") == 2  # b waits for the hold, as a does
        finally:
            await acme.aclose()
    (failure,) = events(log_stream, "acme_order_failed")
    assert failure["kind"] == "rate_limited"
    assert failure["retry_in"] == 30.0
    assert "rateLimited: too many orders" in str(failure["error"])


async def test_shutdown_does_not_wait_for_an_order_in_flight(tmp_path: Path) -> None:
    with fake_acme({"/new-account": Answer(201, hang=True)}) as ca:
        acme = manager(tmp_path, ca.directory)
        await acme.start()
        acme.ensure(f"a.{DOMAIN}")
        await poll_until_async(lambda: ca.posts("/new-account") >= 1)
        started = time.monotonic()
        await acme.aclose()
        assert time.monotonic() - started < 0.5
