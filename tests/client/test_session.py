"""One tunnel connection of the client: which ends of it the agent retries."""

from __future__ import annotations

import asyncio

import pytest

from tunnelgate.client.session import ClientSession
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import Registered, Rejected
from tunnelgate.testing.memory_tunnel import TunnelHarness
from tunnelgate.transport.tunnel import StreamHandler, TunnelConnection


class Owner:
    def __init__(self) -> None:
        self.goodbyes: list[str] = []

    def open_relay(
        self, connection: TunnelConnection, stream_id: int, metadata: bytes
    ) -> StreamHandler | None:
        return None

    def on_registered(self, message: Registered) -> None:
        pass

    def on_rejected(self, message: Rejected) -> None:
        pass

    def on_gateway_goodbye(self, reason: str) -> None:
        self.goodbyes.append(reason)


@pytest.mark.parametrize(
    ("code", "reason", "final"),
    [
        (ErrorCode.SHUTDOWN, "stream ids exhausted", False),  # reconnect, names come back
        (ErrorCode.SHUTDOWN, "gateway stopping", False),
        (ErrorCode.IDLE_TIMEOUT, "idle for 60 s", True),
        (ErrorCode.KICKED, "closed by an operator", True),
    ],
)
async def test_which_gateway_goodbyes_are_retried(
    code: ErrorCode, reason: str, final: bool
) -> None:
    owner = Owner()
    session = ClientSession(owner, [1])
    harness = TunnelHarness(session.connection)
    harness.peer.go_away(code, reason)
    harness.deliver()
    harness.connection.abort()  # the gateway closes the socket after its GOAWAY
    assert await session.wait_closed() == reason
    assert owner.goodbyes == [reason]
    assert session.final_close == (reason if final else None)


class Relay:
    """A local relay that does nothing but record what its stream did."""

    def __init__(self) -> None:
        self.resets: list[int] = []

    def on_data(self, data: bytes) -> None:
        pass

    def on_end(self) -> None:
        pass

    def on_reset(self, code: int) -> None:
        self.resets.append(code)

    def on_writable(self) -> None:
        pass


class RelayingOwner(Owner):
    def __init__(self) -> None:
        super().__init__()
        self.relays: dict[int, Relay] = {}

    def open_relay(
        self, connection: TunnelConnection, stream_id: int, metadata: bytes
    ) -> StreamHandler | None:
        relay = self.relays[stream_id] = Relay()
        return relay


def serving_one_stream() -> tuple[ClientSession, TunnelHarness, int]:
    session = ClientSession(RelayingOwner(), [1])
    harness = TunnelHarness(session.connection)
    sid = harness.peer.open_stream(b"")
    harness.deliver()
    assert sid in session.connection.handlers
    return session, harness, sid


async def test_a_drain_says_goodbye_keeps_the_connection_and_ends_when_idle() -> None:
    session, harness, sid = serving_one_stream()
    cut = asyncio.Event()
    drain = asyncio.create_task(session.drain("client shutting down", 5.0, cut))
    await asyncio.sleep(0)  # the GOAWAY is out; the gateway has not read it yet
    # An OPEN that crossed our GOAWAY is refused, safe for the gateway to retry.
    crossing = harness.peer.open_stream(b"")
    harness.deliver()
    events = await harness.receive()
    assert [(e.code, e.reason) for e in events if isinstance(e, ev.GoAwayReceived)] == [
        (ErrorCode.NO_ERROR, "client shutting down")
    ]
    assert not session.connection.closed
    assert [(e.stream_id, e.code) for e in events if isinstance(e, ev.StreamReset)] == [
        (crossing, ErrorCode.REFUSED_STREAM)
    ]
    assert not drain.done()
    # The stream in flight ends, both ways: the drain is over.
    session.connection.end(sid)
    harness.peer.send_data(sid, b"", end_stream=True)
    harness.deliver()
    assert await asyncio.wait_for(drain, 2.0) == "idle"


async def test_a_second_signal_cuts_the_drain_short() -> None:
    session, _, _ = serving_one_stream()
    cut = asyncio.Event()
    drain = asyncio.create_task(session.drain("client shutting down", 30.0, cut))
    await asyncio.sleep(0)  # the drain is waiting
    cut.set()
    assert await asyncio.wait_for(drain, 2.0) == "signal"


async def test_the_drain_timeout_bounds_a_stream_that_never_ends() -> None:
    session, _, _ = serving_one_stream()
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended = await asyncio.wait_for(session.drain("bye", 0.2, asyncio.Event()), 2.0)
    assert ended == "timeout"
    assert loop.time() - started >= 0.2


async def test_a_drain_ends_when_the_gateway_closes_the_connection() -> None:
    session, harness, _ = serving_one_stream()
    drain = asyncio.create_task(session.drain("bye", 30.0, asyncio.Event()))
    await asyncio.sleep(0)
    harness.connection.abort()  # the gateway went away with the stream still open
    assert await asyncio.wait_for(drain, 2.0) == "closed"
