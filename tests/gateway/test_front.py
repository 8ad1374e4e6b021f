"""The front dispatcher picks a connection's protocol by its first bytes."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from fakes import FakeTransport

from tunnelgate.gateway.front import FrontDispatcher, looks_like_tls


class Recorder(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: object = None
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


def choose_by_first_bytes(tls: Recorder, http: Recorder) -> Any:
    def choose(first: bytes) -> asyncio.Protocol | None:
        if looks_like_tls(first):
            return tls
        if b"\r\n" in first:
            return http
        return None  # too little to tell

    return choose


def test_tls_and_http_go_to_their_protocols_with_every_byte() -> None:
    for first, expected in ((b"\x16\x03\x01\x02\x00hello", "tls"), (b"GET / HTTP/1.1\r\n", "http")):
        tls, http = Recorder("tls"), Recorder("http")
        transport = FakeTransport()
        front = FrontDispatcher(choose_by_first_bytes(tls, http))
        front.connection_made(cast(Any, transport))
        front.data_received(first[:3])
        if expected == "http":  # "GET" alone does not tell yet
            assert transport.protocol is None
        # Once chosen, the transport delivers to the chosen protocol, as asyncio does.
        receiver = cast(asyncio.Protocol, transport.protocol or front)
        receiver.data_received(first[3:])
        chosen = tls if expected == "tls" else http
        assert transport.protocol is chosen
        assert chosen.transport is transport
        assert chosen.data == first  # replayed: nothing lost, nothing twice


def test_undecided_after_the_peek_limit_is_dropped() -> None:
    tls, http = Recorder("tls"), Recorder("http")
    transport = FakeTransport()
    front = FrontDispatcher(choose_by_first_bytes(tls, http), max_peek=16)
    front.connection_made(cast(Any, transport))
    front.data_received(b"x" * 16)
    assert transport.aborted
    assert transport.protocol is None
