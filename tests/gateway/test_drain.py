"""gateway/drain.py over GatewayState, with fake connections and sessions: what each is
told, when the drain ends, and what is cut off."""

from __future__ import annotations

import asyncio

from tunnelgate.gateway.drain import DRAIN_REASON, drain
from tunnelgate.gateway.state import GatewayState


class FakeConnection:
    """A public connection: idle ones close when told to drain, busy ones when `finish`."""

    def __init__(self, state: GatewayState, busy: bool) -> None:
        self.state = state
        self.busy = busy
        self.drained = False
        self.cut = False
        state.connection_opened(self)

    def drain(self) -> None:
        self.drained = True
        if not self.busy:
            self.state.connection_closed(self)

    def cut_off(self) -> None:
        self.cut = True
        self.state.connection_closed(self)

    def finish(self) -> None:
        self.busy = False
        self.state.connection_closed(self)


class FakeSession:
    def __init__(self, state: GatewayState, streams: int) -> None:
        self.state = state
        self.streams = streams
        self.went_away: list[str] = []
        self.closed_with: str | None = None
        self.cut = False
        state.session_opened(self)

    def constrain(self, on: bool) -> None:
        pass

    def drain(self, reason: str) -> None:
        self.went_away.append(reason)

    def shut_down(self, reason: str) -> None:
        if self.closed_with is None:
            self.closed_with = reason
            # The WebSocket's end comes a loop turn later.
            asyncio.get_running_loop().call_soon(self.state.session_closed, self)

    def cut_off(self, reason: str) -> None:
        self.cut = True
        asyncio.get_running_loop().call_soon(self.state.session_closed, self)

    def open_streams(self) -> int:
        return self.streams


async def test_nothing_open_ends_idle_at_once() -> None:
    state = GatewayState()
    idle = FakeConnection(state, busy=False)
    session = FakeSession(state, streams=0)
    async with asyncio.timeout(1):  # far under the drain timeout
        assert await drain(state, 30) == "idle"
    assert idle.drained
    assert not idle.cut
    assert session.went_away == [DRAIN_REASON]
    assert session.closed_with == DRAIN_REASON
    assert not session.cut
    assert state.draining
    assert state.idle


async def test_waits_for_the_last_stream_then_closes_its_session() -> None:
    state = GatewayState()
    busy = FakeConnection(state, busy=True)
    session = FakeSession(state, streams=1)
    task = asyncio.get_running_loop().create_task(drain(state, 30))
    await asyncio.sleep(0)  # the drain has started: GOAWAY said, nothing closed
    assert session.went_away == [DRAIN_REASON]
    assert busy.drained
    assert session.closed_with is None
    assert not task.done()
    session.streams = 0
    busy.finish()
    async with asyncio.timeout(1):
        assert await task == "idle"
    assert session.closed_with == DRAIN_REASON
    assert not session.cut
    assert not busy.cut


async def test_timeout_cuts_off_what_is_open() -> None:
    state = GatewayState()
    busy = FakeConnection(state, busy=True)
    session = FakeSession(state, streams=2)
    async with asyncio.timeout(2):
        assert await drain(state, 0.05) == "timeout"
    assert session.cut
    assert busy.cut
    assert state.idle


async def test_cut_short_ends_it_at_once() -> None:
    state = GatewayState()
    session = FakeSession(state, streams=1)
    task = asyncio.get_running_loop().create_task(drain(state, 30))
    await asyncio.sleep(0)
    state.cut_short()
    async with asyncio.timeout(1):
        assert await task == "signal"
    assert session.cut


async def test_what_opens_during_the_drain_is_drained_too() -> None:
    state = GatewayState()
    FakeSession(state, streams=1).streams = 1
    task = asyncio.get_running_loop().create_task(drain(state, 30))
    await asyncio.sleep(0)
    late_connection = FakeConnection(state, busy=False)  # its TLS handshake just ended
    late_session = FakeSession(state, streams=0)
    assert late_connection.drained
    assert late_session.went_away == [DRAIN_REASON]
    state.cut_short()
    async with asyncio.timeout(1):
        await task
