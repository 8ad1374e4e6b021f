"""One tunnel connection of the client: which ends of it the agent retries."""

from __future__ import annotations

import pytest

from tunnelgate.client.session import ClientSession
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
