"""transport/splice.py: a public socket and a link socket joined by one pipe, on real
loopback sockets: bytes, half-closes, resets and backpressure both ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tunnelgate.transport.reset import abort_with_reset
from tunnelgate.transport.splice import LinkEnd, splice

TIMEOUT = 5.0


class Owner:
    def __init__(self) -> None:
        self.finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def pipe_finished(self, aborted: bool) -> None:
        self.finished.set_result(aborted)


class Held(asyncio.Protocol):
    """The gateway's side of the public connection until it is spliced."""

    def __init__(self) -> None:
        self.made: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self.made.set_result(transport)


@dataclass
class Rig:
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]  # the public client
    node: tuple[asyncio.StreamReader, asyncio.StreamWriter]  # the other gateway
    link: LinkEnd
    owner: Owner


@contextlib.asynccontextmanager
async def rig(first: bytes = b"") -> AsyncIterator[Rig]:
    loop = asyncio.get_running_loop()
    held = Held()
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue(1)

    async def on_node(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put((r, w))

    public_server = await loop.create_server(lambda: held, "127.0.0.1", 0)
    node_server = await asyncio.start_server(on_node, "127.0.0.1", 0)
    writers: list[asyncio.StreamWriter] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            client = await asyncio.open_connection(
                "127.0.0.1", public_server.sockets[0].getsockname()[1]
            )
            _, link = await loop.create_connection(
                LinkEnd, "127.0.0.1", node_server.sockets[0].getsockname()[1]
            )
            node = await accepted.get()
            public = await held.made
        writers += (client[1], node[1])
        owner = Owner()
        splice(public, link, owner, first)
        yield Rig(client, node, link, owner)
    finally:
        for writer in writers:
            writer.transport.abort()
        public_server.close()
        node_server.close()


def reading(writer: asyncio.StreamWriter) -> asyncio.Transport:
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    return transport


async def test_bytes_go_both_ways_first_bytes_first() -> None:
    async with rig(b"preamble+head") as r:
        r.client[1].write(b" and more")
        async with asyncio.timeout(TIMEOUT):
            assert await r.node[0].readexactly(22) == b"preamble+head and more"
            r.node[1].write(b"answer")
            assert await r.client[0].readexactly(6) == b"answer"


async def test_half_closes_pass_and_the_pipe_ends_cleanly() -> None:
    async with rig() as r:
        async with asyncio.timeout(TIMEOUT):
            r.client[1].write(b"request")
            r.client[1].write_eof()
            assert await r.node[0].read() == b"request"  # then EOF
            r.node[1].write(b"still answering")
            r.node[1].write_eof()
            assert await r.client[0].read() == b"still answering"
            assert await r.owner.finished is False


@pytest.mark.parametrize("side", ["client", "node"])
async def test_a_reset_on_one_side_resets_the_other(side: str) -> None:
    async with rig() as r:
        cut, other = (r.client, r.node) if side == "client" else (r.node, r.client)
        async with asyncio.timeout(TIMEOUT):
            abort_with_reset(cut[1].transport)
            with pytest.raises(ConnectionResetError):
                await other[0].read()
            assert await r.owner.finished is True
        assert r.link.reset_seen is (side == "node")


async def test_a_client_that_does_not_read_stops_the_link_being_read() -> None:
    async with rig() as r:
        reading(r.client[1]).pause_reading()
        total = 32 << 20
        r.node[1].write(b"x" * total)  # buffered on the node's side: not drained here
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not r.link.reading_paused:
            assert loop.time() < deadline, "the link was never paused"
            await asyncio.sleep(0.01)  # poll: the pause comes once the client's buffer fills
        public = r.link.pipe.socket if r.link.pipe is not None else None
        assert public is not None
        assert public.write_paused
        reading(r.client[1]).resume_reading()
        async with asyncio.timeout(TIMEOUT):
            got = 0
            while got < total:
                got += len(await r.client[0].read(1 << 20))
        assert got == total
        assert not r.link.reading_paused
