"""The client against a gateway that is unreachable, broken or hostile (issue 6).

Every failure before the tunnels are registered is retried with back-off and counted toward
``--max-retries``; SIGINT/SIGTERM end the client at once, with status 0, in every state. The
client is a real process (``python -m tunnelgate http``); what it talks to is a
``BrokenEndpoint`` (tunnelgate.testing.endpoints) on this test's event loop, standing in for
the network or an attacker, or the real gateway where the test is about the gateway. Waits
are on the client's output, the endpoint's counters or process exits, each with a deadline.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator

import pytest

from tunnelgate.proto.codes import ErrorCode
from tunnelgate.testing.endpoints import Behaviour, BrokenEndpoint
from tunnelgate.testing.proc import JsonObject, json_object
from tunnelgate.testing.processes import (
    Proc,
    build_request,
    free_port,
    http_request,
    start_client,
    start_gateway,
    tunnelgate_argv,
    wait_ready_async,
)

EXIT_FAILED = 1
EXIT_REJECTED = 2
STOP_DEADLINE = 1.5
"""Seconds a signalled client may take to exit ("well under 2 s")."""
EXIT_TIMEOUT = 10.0
"""Seconds a client that gives up or is rejected gets to exit."""
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
APP_PORT = str(free_port())  # no request reaches the app in these tests


def client(server: str, *args: str) -> Proc:
    return start_client("http", APP_PORT, "--server", server, *args)


def events(proc: Proc, event: str) -> list[JsonObject]:
    return [obj for obj in proc.json_lines() if obj.get("event") == event]


async def assert_stops_at_once(proc: Proc, sig: signal.Signals) -> None:
    """``sig`` ends ``proc`` within STOP_DEADLINE, with status 0 and no traceback."""
    assert proc.returncode is None, proc.output()
    started = time.monotonic()
    proc.signal(sig)
    code = await proc.wait_exit_async(STOP_DEADLINE)
    elapsed = time.monotonic() - started
    assert code == 0, proc.output()
    assert not [line for line in proc.stderr_lines if "Traceback" in line], proc.output()
    assert elapsed < STOP_DEADLINE, proc.output()


async def assert_gives_up(proc: Proc, endpoint: BrokenEndpoint, retries: int) -> None:
    """``proc`` exits 1 saying it gives up, after exactly ``retries`` + 1 attempts."""
    assert await proc.wait_exit_async(EXIT_TIMEOUT) == EXIT_FAILED, proc.output()
    assert endpoint.accepted == retries + 1, proc.output()
    attempts = [obj["attempt"] for obj in events(proc, "reconnecting")]
    assert attempts == list(range(1, retries + 1)), proc.output()
    assert len(events(proc, "connecting")) == retries + 1, proc.output()
    errors = [str(obj["message"]) for obj in events(proc, "error")]
    assert len(errors) == 1, proc.output()
    assert errors[0].startswith(f"giving up after {retries} retries: "), proc.output()


# --- every failure before `registered` is retried and counted -----------------------------------
async def test_connection_closed_before_the_answer_is_retried_then_given_up() -> None:
    """The attack of issue 6: the gateway at its descriptor limit closes at once."""
    async with BrokenEndpoint(Behaviour.CLOSE) as endpoint:
        with client(endpoint.url, "--max-retries", "2") as proc:
            await assert_gives_up(proc, endpoint, retries=2)


@pytest.mark.parametrize(
    ("behaviour", "status", "reason"),
    [
        (Behaviour.RESET, 503, "closed"),
        (Behaviour.STATUS, 503, "503"),
        (Behaviour.STATUS, 429, "429"),
        (Behaviour.UPGRADE_THEN_CLOSE, 503, "connection"),
    ],
    ids=["reset", "503", "429", "closed-after-101"],
)
async def test_failed_attempt_is_retried_and_counted(
    behaviour: Behaviour, status: int, reason: str
) -> None:
    async with BrokenEndpoint(behaviour, status=status) as endpoint:
        with client(endpoint.url, "--max-retries", "1") as proc:
            await assert_gives_up(proc, endpoint, retries=1)
            said = str(events(proc, "reconnecting")[0]["reason"]).lower()
            assert reason in said, proc.output()


async def test_tls_error_is_retried_and_counted() -> None:
    async with BrokenEndpoint(Behaviour.PLAINTEXT) as endpoint:
        server = endpoint.url.replace("ws://", "wss://")
        with client(server, "--max-retries", "1") as proc:
            await assert_gives_up(proc, endpoint, retries=1)
            said = str(events(proc, "reconnecting")[0]["reason"]).lower()
            # connect.py says "TLS failed (REASON)" since 89b1f02; "[SSL: ...]" when the
            # error has no reason.
            assert "tls failed" in said or "ssl" in said, proc.output()


# --- SIGINT / SIGTERM in every state -------------------------------------------------------------
@SIGNALS
async def test_stop_while_backing_off_between_retries(sig: signal.Signals) -> None:
    async with BrokenEndpoint(Behaviour.CLOSE) as endpoint:
        with client(endpoint.url) as proc:
            await proc.wait_for_json_async(lambda obj: obj.get("event") == "reconnecting")
            await assert_stops_at_once(proc, sig)


@SIGNALS
async def test_stop_while_the_upgrade_is_unanswered(sig: signal.Signals) -> None:
    async with BrokenEndpoint(Behaviour.SILENT) as endpoint:
        with client(endpoint.url) as proc:
            await endpoint.wait_until(lambda e: e.accepted >= 1)
            await assert_stops_at_once(proc, sig)
            assert endpoint.accepted == 1


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a connect to it stays pending (SYNs dropped)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5.0):
            yield port


async def test_stop_while_the_tcp_connect_is_pending(full_backlog: int) -> None:
    with client(f"ws://127.0.0.1:{full_backlog}/connect") as proc:
        await proc.wait_for_json_async(lambda obj: obj.get("event") == "connecting")
        await assert_stops_at_once(proc, signal.SIGTERM)


async def test_stop_while_handshaking_says_goodbye() -> None:
    """101 received, registration unanswered: the client still closes with GOAWAY NO_ERROR."""
    async with BrokenEndpoint(Behaviour.UPGRADE_THEN_SILENT) as endpoint:
        with client(endpoint.url, "--subdomain", "shy") as proc:
            await endpoint.wait_until(lambda e: len(e.registers) >= 1)
            await assert_stops_at_once(proc, signal.SIGTERM)
            await endpoint.wait_until(lambda e: bool(e.goaways))
    assert endpoint.goaways == [ErrorCode.NO_ERROR]
    assert [r.name for r in endpoint.registers] == ["shy"]


# --- a rejection followed by the gateway's own goodbye -----------------------------------------
@pytest.mark.parametrize("separate_goaway", [False, True], ids=["same-message", "next-message"])
@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_rejection_then_goaway_prints_one_line_and_exits_2(
    separate_goaway: bool, log_format: str
) -> None:
    async with BrokenEndpoint(Behaviour.REJECT, separate_goaway=separate_goaway) as endpoint:
        argv = ["http", APP_PORT, "--server", endpoint.url, "--subdomain", "taken"]
        with Proc(tunnelgate_argv(*argv, "--log-format", log_format)) as proc:
            code = await proc.wait_exit_async(EXIT_TIMEOUT)
    assert code == EXIT_REJECTED, proc.output()
    assert endpoint.accepted == 1, proc.output()
    lines = [line for line in proc.stderr_lines if line.strip()]
    if log_format == "text":  # connection news go to stderr too, for people
        assert lines[0].startswith("Connecting to "), proc.output()
        lines = lines[1:]
        assert not [line for line in proc.stdout_lines if line.strip()], proc.output()
    else:
        said = [obj.get("event") for obj in proc.json_lines()]
        assert said == ["connecting", "rejected"], proc.output()
    assert len(lines) == 1, proc.output()
    assert "taken" in lines[0], proc.output()
    assert "rejected" in lines[0], proc.output()


# --- a gateway of another protocol version ----------------------------------------------------
async def test_a_gateway_of_another_version_is_one_clear_error_and_no_retry() -> None:
    async with BrokenEndpoint(Behaviour.OTHER_VERSION) as endpoint:
        with client(endpoint.url) as proc:
            code = await proc.wait_exit_async(EXIT_TIMEOUT)
    assert code == EXIT_FAILED, proc.output()
    assert endpoint.accepted == 1, proc.output()  # a retry would get the same answer
    [message] = [str(obj["message"]) for obj in events(proc, "error")]
    assert "does not speak tunnelgate.v2" in message, proc.output()
    assert events(proc, "reconnecting") == [], proc.output()


# --- the real gateway -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[Proc, int]]:
    proc, port = start_gateway()
    try:
        yield proc, port
    finally:
        proc.terminate()


async def test_client_comes_back_once_the_gateway_answers(gateway: tuple[Proc, int]) -> None:
    """Two attempts closed at once, then the network lets the client through to the gateway:
    the tunnel comes up on the last retry --max-retries allows."""
    _, port = gateway
    behaviours = (Behaviour.CLOSE, Behaviour.CLOSE, Behaviour.RELAY)
    async with BrokenEndpoint(*behaviours, relay_port=port) as endpoint:
        with client(endpoint.url, "--subdomain", "phoenix", "--max-retries", "2") as proc:
            ready = await wait_ready_async(proc, EXIT_TIMEOUT)
            assert ready["url"] == f"http://phoenix.localhost:{port}"
            assert endpoint.accepted == 3
            assert [obj["attempt"] for obj in events(proc, "reconnecting")] == [1, 2]


async def test_failures_after_a_registered_session_are_counted(gateway: tuple[Proc, int]) -> None:
    """A connection that registered, then upgrades that close before re-registering: those
    are failures (not successes because the name is remembered), so the client gives up."""
    _, port = gateway
    behaviours = (Behaviour.RELAY, Behaviour.UPGRADE_THEN_CLOSE)
    async with BrokenEndpoint(*behaviours, relay_port=port) as endpoint:
        with client(endpoint.url, "--subdomain", "lapsed", "--max-retries", "2") as proc:
            await wait_ready_async(proc, EXIT_TIMEOUT)
            await endpoint.drop_connections()
            assert await proc.wait_exit_async(EXIT_TIMEOUT) == EXIT_FAILED, proc.output()
    assert endpoint.accepted == 3, proc.output()
    assert [obj["attempt"] for obj in events(proc, "reconnecting")] == [1, 2], proc.output()


@SIGNALS
async def test_stop_when_registered_frees_the_name_at_once(
    gateway: tuple[Proc, int], sig: signal.Signals
) -> None:
    gw, port = gateway
    name = f"bye-{sig.name.lower()}"
    with client(f"ws://127.0.0.1:{port}/connect", "--subdomain", name) as proc:
        await wait_ready_async(proc, EXIT_TIMEOUT)
        mark = len(gw.stderr_lines)
        await assert_stops_at_once(proc, sig)
    # Said goodbye: the gateway freed the name (not held for the reconnect grace).
    await gw.wait_for_line_async(
        lambda line: (
            (obj := json_object(line)) is not None
            and obj.get("event") == "tunnel_closed"
            and obj.get("name") == name
        ),
        EXIT_TIMEOUT,
        stream="stderr",
        after=mark,
    )
    response = await http_request(port, build_request("GET", "/", host=f"{name}.localhost:{port}"))
    assert response.status == 404, response
