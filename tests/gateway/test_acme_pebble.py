"""The ACME manager against a real CA: Debian's pebble on loopback (tunnelgate.testing.pebble),
validating HTTP-01 against a small real HTTP server that asks the manager's
`challenge_response`, as the edge will. Every host resolves to 127.0.0.1 through
pebble-challtestsrv's DNS; pebble issues in milliseconds with PEBBLE_VA_NOSLEEP."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from acme_helpers import DOMAIN, EMAIL, FAST, Clock, http01_responder
from cryptography import x509
from tls_helpers import client_context, echo_server, run

from tunnelgate.gateway.acme import AcmeManager
from tunnelgate.gateway.acme_schedule import AcmeBounds
from tunnelgate.logs import LineWriter, configure_logging
from tunnelgate.testing.pebble import Pebble, run_pebble
from tunnelgate.testing.proc import poll_until_async

HOST = f"app.{DOMAIN}"


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """One pebble for the module (each test has its own state directory, so its own
    account and certificates)."""
    with run_pebble(tmp_path_factory.mktemp("pebble")) as running:
        yield running


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


def manager(
    pebble: Pebble,
    state: Path,
    *,
    clock: Clock | None = None,
    bounds: AcmeBounds = FAST,
    trust: bool = True,
) -> AcmeManager:
    return AcmeManager(
        domain=DOMAIN,
        email=EMAIL,
        directory=pebble.directory,
        state_dir=state,
        ca_bundle=pebble.ca_bundle if trust else None,
        bounds=bounds,
        clock=clock or Clock(),
    )


@asynccontextmanager
async def running(acme: AcmeManager, pebble: Pebble) -> AsyncIterator[AcmeManager]:
    """The manager started, with the HTTP-01 responder pebble checks on its port."""
    async with http01_responder(pebble.http_port, acme.challenge_response):
        await acme.start()
        try:
            yield acme
        finally:
            await acme.aclose()


async def verified_fingerprint(acme: AcmeManager, root: Path, host: str = HOST) -> str:
    """Serve the host's context on loopback and handshake with a client that trusts only
    pebble's root and checks the host name: the fingerprint it saw."""
    context = acme.context_for(host)
    assert context is not None
    async with echo_server(context) as server:
        connection = await server.connect(client_context(root), server_name=host)
        assert await connection.echo() == b"ping"
        return connection.fingerprint


def issued_until(state: Path) -> datetime:
    """The end of the certificate kept for HOST."""
    (chain,) = state.glob(f"acme/*/certs/{HOST}/cert.pem")
    return x509.load_pem_x509_certificate(chain.read_bytes()).not_valid_after_utc


def test_issues_a_certificate_that_verifies_against_pebbles_root(
    pebble: Pebble, tmp_path: Path, log_stream: io.StringIO
) -> None:
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.issuing_root())

    async def scenario() -> None:
        async with running(manager(pebble, tmp_path / "state"), pebble) as acme:
            assert acme.context_for(HOST) is None  # nothing yet: the fallback is served
            acme.ensure(HOST)
            await poll_until_async(lambda: acme.context_for(HOST) is not None)
            await verified_fingerprint(acme, root)
            assert acme.statistics().issued == 1
            assert acme.challenge_response("anything") is None  # answers are withdrawn

    run(scenario())
    issued = events(log_stream, "acme_certificate_issued")
    assert [event["host"] for event in issued] == [HOST]
    assert events(log_stream, "acme_order_started")[0]["host"] == HOST
    assert events(log_stream, "acme_account_ready")
    folder = Path(str(issued[0]["path"])).parent
    for path in (folder / "cert.pem", folder / "key.pem", *folder.parent.parent.glob("*.key")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (folder, folder.parent, tmp_path / "state", tmp_path / "state" / "acme"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_a_host_asked_for_many_times_at_once_gets_one_order(pebble: Pebble, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(manager(pebble, tmp_path), pebble) as acme:

            async def handshakes() -> None:  # as many handshakes arriving together would
                for _ in range(20):
                    acme.ensure(HOST)
                    await asyncio.sleep(0)

            await asyncio.gather(*(handshakes() for _ in range(5)))
            await poll_until_async(lambda: acme.context_for(HOST) is not None)
            acme.ensure(HOST)  # and once more, now that it is there
            await asyncio.sleep(0.05)
            assert acme.statistics().orders == 1
            assert acme.statistics().issued == 1

    run(scenario())


def test_a_kept_certificate_is_served_after_a_restart_without_an_order(
    pebble: Pebble, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running(manager(pebble, tmp_path), pebble) as first:
            first.ensure(HOST)
            await poll_until_async(lambda: first.context_for(HOST) is not None)
            root = tmp_path / "root.pem"
            root.write_bytes(await asyncio.to_thread(pebble.issuing_root))
            issued = await verified_fingerprint(first, root)
        async with running(manager(pebble, tmp_path), pebble) as second:
            assert second.context_for(HOST) is not None  # loaded by start()
            second.ensure(HOST)
            await asyncio.sleep(0.05)
            assert await verified_fingerprint(second, root) == issued
            assert second.statistics().orders == 0
            assert second.statistics().loaded == 1

    run(scenario())


def test_a_certificate_due_for_renewal_is_renewed_and_served_until_then(
    pebble: Pebble, tmp_path: Path, log_stream: io.StringIO
) -> None:
    clock = Clock()

    async def scenario() -> None:
        root = tmp_path / "root.pem"
        root.write_bytes(await asyncio.to_thread(pebble.issuing_root))
        async with running(manager(pebble, tmp_path, clock=clock), pebble) as acme:
            acme.ensure(HOST)
            await poll_until_async(lambda: acme.context_for(HOST) is not None)
            old_context = acme.context_for(HOST)
            old = await verified_fingerprint(acme, root)
            # Jump to 29 days before the end (pebble's certificates last five years).
            not_after = await asyncio.to_thread(issued_until, tmp_path)
            clock.offset = not_after - clock() - timedelta(days=29)
            acme.renew_due()  # what the hourly check does
            assert acme.context_for(HOST) is old_context  # served while it renews
            await poll_until_async(lambda: acme.statistics().issued == 2)
            assert acme.context_for(HOST) is not old_context
            assert await verified_fingerprint(acme, root) != old
            assert acme.statistics().orders == 2

    run(scenario())
    renewed = events(log_stream, "acme_certificate_renewed")
    assert [event["host"] for event in renewed] == [HOST]


def test_a_ca_that_is_down_is_retried_with_back_off_then_used_once_up(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    async def scenario() -> None:
        with run_pebble(tmp_path / "pebble", start=False) as down:
            async with running(manager(down, tmp_path / "state"), down) as acme:
                acme.ensure(HOST)
                await asyncio.sleep(1.0)
                # Back-off 0.1, 0.2, 0.4, 0.4 s (FAST): about five tries in a second, not
                # the thousands of a busy loop; each waited for the one before it.
                failed = acme.statistics().failed
                assert 2 <= failed <= 6, failed
                acme.ensure(HOST)  # a handshake meanwhile adds no order: one is running
                await asyncio.to_thread(down.start)
                await poll_until_async(lambda: acme.context_for(HOST) is not None)
                assert acme.statistics().issued == 1

    run(scenario())
    failures = events(log_stream, "acme_order_failed")
    assert failures
    assert {event["kind"] for event in failures} == {"unavailable"}
    assert "Connection refused" in str(failures[0]["error"])


def test_a_failed_validation_backs_off_that_host_only(
    pebble: Pebble, tmp_path: Path, log_stream: io.StringIO
) -> None:
    async def scenario() -> None:
        acme = manager(pebble, tmp_path, bounds=replace(FAST, retry_initial=30.0))
        wrong = {"answer": True}

        def answer(token: str) -> bytes | None:  # a responder that says the wrong thing
            return b"wrong" if wrong["answer"] else acme.challenge_response(token)

        async with http01_responder(pebble.http_port, answer):
            await acme.start()
            try:
                acme.ensure(HOST)
                await poll_until_async(lambda: acme.statistics().failed == 1)
                acme.ensure(HOST)  # backing off: no second order
                await asyncio.sleep(0.1)
                assert acme.statistics().orders == 1
                assert acme.statistics().backing_off == 1
                wrong["answer"] = False
                other = f"other.{DOMAIN}"
                acme.ensure(other)  # another host is not held back
                await poll_until_async(lambda: acme.context_for(other) is not None)
                assert acme.context_for(HOST) is None
            finally:
                await acme.aclose()

    run(scenario())
    (failure,) = events(log_stream, "acme_order_failed")
    assert failure["kind"] == "refused"
    assert "http-01 validation invalid" in str(failure["error"])
    assert "incorrectResponse" in str(failure["error"]) or "unauthorized" in str(failure["error"])


def test_a_ca_whose_certificate_does_not_verify_is_unavailable_and_says_why(
    pebble: Pebble, tmp_path: Path, log_stream: io.StringIO
) -> None:
    async def scenario() -> None:
        untrusting = manager(pebble, tmp_path, trust=False)  # the default trust store
        async with running(untrusting, pebble) as acme:
            acme.ensure(HOST)
            await poll_until_async(lambda: acme.statistics().failed >= 1)
            assert acme.context_for(HOST) is None

    run(scenario())
    failure = events(log_stream, "acme_order_failed")[0]
    assert failure["kind"] == "unavailable"
    assert "CERTIFICATE_VERIFY_FAILED" in str(failure["error"])
