"""A response cut off mid-body never looks complete to the public client (SPEC: gateway
behaviour), and the access log says it was cut off."""

from __future__ import annotations

import signal
import socket
import struct

import pytest
from e2e_support import TunnelEnv, start_tunnel_env

from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.frames import FrameType, encode_frame, encode_u32
from tunnelgate.testing.processes import build_request, open_connection
from tunnelgate.testing.raw_tunnel import RawTunnel

BODY = 1_000_000  # bytes; the app sends its first block, then holds the rest


@pytest.mark.parametrize(
    ("framing", "query"),
    [
        pytest.param("close", "&close=1", id="close-delimited"),
        pytest.param("length", "", id="content-length"),
        pytest.param("chunked", "&chunked=1", id="chunked"),
    ],
)
async def test_response_cut_by_a_killed_client_is_seen_as_cut(framing: str, query: str) -> None:
    with start_tunnel_env() as env:
        mark = env.gateway_mark()
        target = f"/bytes?n={BODY}&hold=cut{query}"
        async with await env.connect() as conn:
            await conn.send(env.build("GET", target))
            head = await conn.read_head()
            assert head.status == 200, head
            assert await conn.read_some(1), "the first block never came"
            env.client.signal(signal.SIGKILL)  # the tunnel is gone mid-body
            received = b""
            reset = False
            try:
                while piece := await conn.read_some():
                    received += piece
            except ConnectionResetError:
                reset = True
        line = await env.wait_gateway_request(target, after=mark)
    assert line["aborted"] is True, line
    assert line["status"] == 200, line
    if framing == "close":
        # No framing: only a reset tells the client the body is not complete.
        assert reset, "a cut close-delimited body ended with a clean FIN"
    elif framing == "length":
        assert len(received) + 1 < BODY  # short of its Content-Length
    else:
        assert not received.endswith(b"0\r\n\r\n"), "a cut chunked body got its last chunk"


async def test_complete_close_delimited_response_is_not_aborted(tunnel_env: TunnelEnv) -> None:
    mark = tunnel_env.gateway_mark()
    target = "/bytes?n=300000&close=1"
    async with await tunnel_env.connect() as conn:
        await conn.send(tunnel_env.build("GET", target))
        head = await conn.read_head()
        body = await conn.read_until_eof()
    assert head.status == 200
    assert len(body) == 300_000
    line = await tunnel_env.wait_gateway_request(target, after=mark)
    assert line["aborted"] is False, line


async def test_public_client_gone_mid_response_is_logged_as_cut_off(tunnel_env: TunnelEnv) -> None:
    mark = tunnel_env.gateway_mark()
    target = "/bytes?n=1000000&hold=gone"
    conn = await open_connection(tunnel_env.gateway_port)
    await conn.send(tunnel_env.build("GET", target))
    assert (await conn.read_head()).status == 200
    sock = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.writer.transport.abort()  # a reset: the client is gone, not half-closed
    line = await tunnel_env.wait_gateway_request(target, after=mark)
    assert line["aborted"] is True, line
    await tunnel_env.get("/release?key=gone")


async def test_stream_reset_by_the_tunnel_mid_response_is_a_reset(tunnel_env: TunnelEnv) -> None:
    """A tunnel client that resets a stream after part of a close-delimited body: the
    public connection is reset, not closed as if the body were complete."""
    env = tunnel_env
    mark = env.gateway_mark()
    async with await RawTunnel.open(env.gateway_port) as raw:
        assert (await raw.register(1, "resetter"))["type"] == "registered"
        host = f"resetter.localhost:{env.gateway_port}"
        async with await env.connect() as conn:
            await conn.send(build_request("GET", "/partial", host=host))
            sid = 0
            while not sid:
                sid = next(
                    (f.stream_id for f in await raw.read_frames() if f.type == FrameType.OPEN), 0
                )
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial body"
            await raw.send(encode_frame(FrameType.DATA, sid, head))
            assert (await conn.read_head()).status == 200
            assert await conn.read_some() == b"partial body"
            await raw.send(encode_frame(FrameType.RESET, sid, encode_u32(ErrorCode.INTERNAL_ERROR)))
            with pytest.raises(ConnectionResetError):
                await conn.read_some()
    line = await env.wait_gateway_request("/partial", after=mark)
    assert line["aborted"] is True, line
