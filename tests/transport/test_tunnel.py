"""TunnelConnection on a fake WebSocket: a handler's exception stays in its stream, and
running out of stream ids ends the connection with GOAWAY SHUTDOWN."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from tunnelgate.errors import LocalProtocolError, NoAvailableStreamIDError
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import ControlMessage, Registered
from tunnelgate.proto.mux import MAX_STREAM_ID, Connection, Role
from tunnelgate.testing.memory_tunnel import TunnelHarness
from tunnelgate.transport.tunnel import ConnectionEnd, StreamHandler, TunnelConnection

WINDOW = 256 * 1024


class Handler:
    """Records its callbacks; raises from the one named `fail_on`."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.calls: list[str] = []
        self.data = bytearray()

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_on:
            raise RuntimeError(f"bug in {name}")

    def on_data(self, data: bytes) -> None:
        self.data += data
        self._call("on_data")

    def on_end(self) -> None:
        self._call("on_end")

    def on_reset(self, code: int) -> None:
        self._call(f"on_reset:{ErrorCode(code).name}")
        if self.fail_on == "on_reset":
            raise RuntimeError("bug in on_reset")

    def on_writable(self) -> None:
        self._call("on_writable")


class Hooks:
    def __init__(self) -> None:
        self.opened: list[Handler] = []
        self.fail_open = False
        self.fail_control = False
        self.ends: list[ConnectionEnd] = []

    def on_stream_opened(self, stream_id: int, metadata: bytes) -> StreamHandler | None:
        if self.fail_open:
            raise RuntimeError("bug in on_stream_opened")
        handler = Handler()
        self.opened.append(handler)
        return handler

    def on_control(self, message: ControlMessage) -> None:
        if self.fail_control:
            raise RuntimeError("bug in on_control")

    def on_go_away(self, code: int, reason: str) -> None:
        pass

    def on_closed(self, end: ConnectionEnd) -> None:
        self.ends.append(end)


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[TunnelHarness, Hooks]]:
    hooks = Hooks()
    harness = TunnelHarness(TunnelConnection(Role.GATEWAY, hooks))
    yield harness, hooks
    harness.connection.abort()


def failures(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.msg == event]


async def open_two(harness: TunnelHarness, fail_on: str) -> tuple[Handler, Handler, int, int]:
    """A stream whose handler fails on `fail_on`, and a healthy one; the peer has both."""
    bad, good = Handler(fail_on), Handler()
    bad_sid = harness.connection.open_stream(b"", bad)
    good_sid = harness.connection.open_stream(b"", good)
    await harness.receive()
    return bad, good, bad_sid, good_sid


async def assert_still_serves(harness: TunnelHarness, good: Handler, good_sid: int) -> None:
    harness.peer.send_data(good_sid, b"still here")
    harness.deliver()
    assert bytes(good.data).endswith(b"still here")
    assert harness.connection.send(good_sid, b"and answering")
    assert [e for e in await harness.receive() if isinstance(e, ev.DataReceived)] == [
        ev.DataReceived(good_sid, b"and answering")
    ]
    assert not harness.connection.closed


# --- a handler's exception stays in its stream ------------------------------------------
@pytest.mark.parametrize("fail_on", ["on_data", "on_end"])
async def test_a_failing_handler_resets_its_stream_only(
    gateway: tuple[TunnelHarness, Hooks], caplog: pytest.LogCaptureFixture, fail_on: str
) -> None:
    harness, _ = gateway
    bad, good, bad_sid, good_sid = await open_two(harness, fail_on)
    with caplog.at_level(logging.ERROR, logger="tunnelgate.tunnel"):
        harness.peer.send_data(bad_sid, b"boom", end_stream=fail_on == "on_end")
        harness.deliver()
    assert ev.StreamReset(bad_sid, ErrorCode.INTERNAL_ERROR) in await harness.receive()
    # Told once, so it can let go of what it holds; then nothing more.
    assert bad.calls[-1] == "on_reset:INTERNAL_ERROR"
    [record] = failures(caplog, "stream_handler_failed")
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == f"bug in {fail_on}"
    harness.peer.send_data(good_sid, b"x")  # bad_sid is gone on both sides
    await assert_still_serves(harness, good, good_sid)
    assert not harness.connection.is_open(bad_sid)


async def test_a_failing_on_writable_resets_its_stream_only(
    gateway: tuple[TunnelHarness, Hooks], caplog: pytest.LogCaptureFixture
) -> None:
    harness, _ = gateway
    bad, good, bad_sid, good_sid = await open_two(harness, "on_writable")
    assert not harness.connection.send(bad_sid, b"z" * (WINDOW + 10))  # 10 bytes held
    received = await harness.receive()
    taken = sum(len(e.data) for e in received if isinstance(e, ev.DataReceived))
    harness.peer.acknowledge_data(bad_sid, taken)  # credit: the rest goes, then writable
    with caplog.at_level(logging.ERROR, logger="tunnelgate.tunnel"):
        harness.deliver()
    assert ev.StreamReset(bad_sid, ErrorCode.INTERNAL_ERROR) in await harness.receive()
    assert bad.calls == ["on_writable", "on_reset:INTERNAL_ERROR"]
    assert len(failures(caplog, "stream_handler_failed")) == 1
    await assert_still_serves(harness, good, good_sid)


async def test_a_failing_on_reset_is_logged_and_not_called_again(
    gateway: tuple[TunnelHarness, Hooks], caplog: pytest.LogCaptureFixture
) -> None:
    harness, _ = gateway
    bad, good, bad_sid, good_sid = await open_two(harness, "on_reset")
    with caplog.at_level(logging.ERROR, logger="tunnelgate.tunnel"):
        harness.peer.reset_stream(bad_sid, ErrorCode.CANCEL)
        harness.deliver()
    assert bad.calls == ["on_reset:CANCEL"]
    assert len(failures(caplog, "stream_handler_failed")) == 1
    await assert_still_serves(harness, good, good_sid)


async def test_a_failing_stream_opened_hook_refuses_that_stream_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = Hooks()
    harness = TunnelHarness(TunnelConnection(Role.CLIENT, hooks))
    hooks.fail_open = True
    first = harness.peer.open_stream(b"meta")
    with caplog.at_level(logging.ERROR, logger="tunnelgate.tunnel"):
        harness.deliver()
    assert ev.StreamReset(first, ErrorCode.INTERNAL_ERROR) in await harness.receive()
    assert len(failures(caplog, "stream_handler_failed")) == 1
    hooks.fail_open = False
    second = harness.peer.open_stream(b"meta")
    harness.peer.send_data(second, b"request")
    harness.deliver()
    assert bytes(hooks.opened[0].data) == b"request"
    assert not harness.connection.closed
    harness.connection.abort()


async def test_a_failing_session_hook_closes_the_connection(
    gateway: tuple[TunnelHarness, Hooks], caplog: pytest.LogCaptureFixture
) -> None:
    harness, hooks = gateway
    hooks.fail_control = True
    harness.peer.send_control(Registered(1, "http://x.localhost"))
    with caplog.at_level(logging.ERROR, logger="tunnelgate.tunnel"):
        harness.deliver()
    assert ev.GoAwayReceived(ErrorCode.INTERNAL_ERROR, "internal error") in await harness.receive()
    assert len(failures(caplog, "session_hook_failed")) == 1
    assert harness.connection.closed


async def test_every_handler_hears_of_the_end_even_if_one_fails(
    gateway: tuple[TunnelHarness, Hooks], caplog: pytest.LogCaptureFixture
) -> None:
    harness, hooks = gateway
    bad, good, _, _ = await open_two(harness, "on_reset")
    with caplog.at_level(logging.ERROR, logger="tunnelgate.tunnel"):
        harness.connection.abort()
        await harness.receive()  # a loop turn: the disconnect arrives
    assert bad.calls == ["on_reset:INTERNAL_ERROR"]
    assert good.calls == ["on_reset:INTERNAL_ERROR"]
    assert len(hooks.ends) == 1


# --- stream-id exhaustion --------------------------------------------------------------
async def test_running_out_of_stream_ids_ends_the_connection_with_shutdown(
    gateway: tuple[TunnelHarness, Hooks],
) -> None:
    harness, hooks = gateway
    connection = harness.connection
    # The test hook: this connection has one stream id left (the highest even one).
    connection.mux = Connection(Role.GATEWAY, next_stream_id=MAX_STREAM_ID - 1)
    last = Handler()
    assert connection.open_stream(b"", last) == MAX_STREAM_ID - 1
    with pytest.raises(NoAvailableStreamIDError) as info:
        connection.open_stream(b"", Handler())
    assert isinstance(info.value, LocalProtocolError)  # the gateway answers 503, as for a cap
    events = await harness.receive()
    assert ev.StreamOpened(MAX_STREAM_ID - 1, b"") in events
    assert events[-1] == ev.GoAwayReceived(ErrorCode.SHUTDOWN, "stream ids exhausted")
    assert connection.closed
    assert harness.ws.is_disconnected
    with pytest.raises(LocalProtocolError):  # going away: no new streams, ever
        connection.open_stream(b"", Handler())
    await harness.receive()  # a loop turn: the disconnect arrives
    # Closed by us with SHUTDOWN: the gateway holds the names for the reconnect grace
    # and the client (which sees SHUTDOWN from the gateway) reconnects for them.
    [end] = hooks.ends
    assert (end.code, end.reason, end.by_peer) == (
        ErrorCode.SHUTDOWN,
        "stream ids exhausted",
        False,
    )
    assert last.calls == ["on_reset:INTERNAL_ERROR"]


# --- GOAWAY with the connection kept (the gateway's drain) --------------------------------
async def test_go_away_keeps_the_streams_open_until_close(
    gateway: tuple[TunnelHarness, Hooks],
) -> None:
    harness, hooks = gateway
    connection = harness.connection
    handler = Handler()
    sid = connection.open_stream(b"", handler)
    await harness.receive()
    connection.go_away(ErrorCode.SHUTDOWN, "draining")
    assert (await harness.receive())[-1] == ev.GoAwayReceived(ErrorCode.SHUTDOWN, "draining")
    assert not connection.closed
    assert not harness.ws.is_disconnected
    with pytest.raises(LocalProtocolError):  # no new stream after our GOAWAY
        connection.open_stream(b"", Handler())
    # The stream in flight goes on, both ways, to its end.
    harness.peer.send_data(sid, b"response", end_stream=True)
    harness.deliver()
    assert bytes(handler.data) == b"response"
    assert connection.send(sid, b"last", end=True)
    assert ev.DataReceived(sid, b"last") in await harness.receive()
    assert connection.mux.open_streams == 0
    connection.go_away(ErrorCode.SHUTDOWN, "again")  # said once only
    connection.close(ErrorCode.SHUTDOWN, "drained")
    events = await harness.receive()
    assert not any(isinstance(e, ev.GoAwayReceived) for e in events), events
    assert harness.ws.is_disconnected
    await harness.receive()
    [end] = hooks.ends
    assert (end.code, end.reason, end.by_peer) == (ErrorCode.SHUTDOWN, "drained", False)


async def test_a_goodbye_after_our_go_away_is_the_end(
    gateway: tuple[TunnelHarness, Hooks],
) -> None:
    harness, hooks = gateway
    harness.connection.go_away(ErrorCode.SHUTDOWN, "draining")
    harness.peer.go_away(ErrorCode.NO_ERROR, "client stopping")
    harness.deliver()  # the client left during the drain: its names are freed
    harness.connection.close(ErrorCode.SHUTDOWN, "drained")
    await harness.receive()
    await harness.receive()
    [end] = hooks.ends
    assert (end.code, end.by_peer) == (ErrorCode.NO_ERROR, True)


# --- round-trip time from the heartbeat's PING/PONG ---------------------------------------
async def test_the_pong_to_the_latest_ping_gives_the_round_trip_time(
    gateway: tuple[TunnelHarness, Hooks],
) -> None:
    harness, _ = gateway
    assert harness.connection.rtt is None
    harness.connection.ping()
    assert await harness.receive() == []  # the peer's core answers a PING by itself
    harness.deliver()  # its PONG
    rtt = harness.connection.rtt
    assert rtt is not None
    assert 0.0 <= rtt < 5.0
    assert f"rtt={rtt * 1000:.1f}ms" in repr(harness.connection)


async def test_the_pong_to_an_older_ping_is_not_taken_for_the_latest(
    gateway: tuple[TunnelHarness, Hooks],
) -> None:
    harness, _ = gateway
    harness.connection.ping()
    await harness.receive()
    harness.connection.ping()  # its PONG is not back yet: PONG 1 must not time PING 2
    harness.deliver()
    assert harness.connection.rtt is None
