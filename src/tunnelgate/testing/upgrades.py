"""What the test app speaks after a 101: a WebSocket echo and a raw byte echo.

Both stream: a data frame's payload is unmasked and written back piece by piece as it arrives,
so a frame of any size is echoed in bounded memory, and a fragmented message is echoed with its
fragmentation intact.
"""

from __future__ import annotations

import asyncio

from tunnelgate.testing import websocket as ws
from tunnelgate.testing.httpserver import PrefixedReader

PIECE = 64 * 1024
"""Largest piece read from the socket and written back at once."""


async def echo_raw(reader: PrefixedReader, writer: asyncio.StreamWriter) -> None:
    """Write back every byte until the peer half-closes, then close our side too."""
    while data := await reader.read(PIECE):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    await writer.drain()


async def echo_websocket(reader: PrefixedReader, writer: asyncio.StreamWriter) -> None:
    """Echo data frames, answer pings, and return after answering (or sending) a close."""
    while True:
        head = await ws.read_frame_head(reader.read_exactly)
        if head.mask is None or head.rsv:
            await _close(writer, 1002)
            return
        if head.opcode >= 0x8:
            if not await _control(head, reader, writer):
                return
        elif head.opcode in (ws.OP_CONTINUATION, ws.OP_TEXT, ws.OP_BINARY):
            await _echo_data(head, head.mask, reader, writer)
        else:
            await _close(writer, 1002)
            return


async def _echo_data(
    head: ws.FrameHead, mask: bytes, reader: PrefixedReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(ws.frame_header(head.fin, head.opcode, head.length))
    done = 0
    while done < head.length:
        piece = await reader.read_exactly(min(PIECE, head.length - done))
        writer.write(ws.apply_mask(piece, mask, done))
        done += len(piece)
        await writer.drain()
    await writer.drain()


async def _control(
    head: ws.FrameHead, reader: PrefixedReader, writer: asyncio.StreamWriter
) -> bool:
    """Handle a control frame; False when the connection is done."""
    if head.length > 125 or not head.fin or head.mask is None:
        await _close(writer, 1002)
        return False
    payload = ws.apply_mask(await reader.read_exactly(head.length), head.mask)
    if head.opcode == ws.OP_CLOSE:
        writer.write(ws.encode_frame(ws.OP_CLOSE, payload, mask=False))
        await writer.drain()
        return False
    if head.opcode == ws.OP_PING:
        writer.write(ws.encode_frame(ws.OP_PONG, payload, mask=False))
        await writer.drain()
        return True
    if head.opcode == ws.OP_PONG:
        return True
    await _close(writer, 1002)
    return False


async def _close(writer: asyncio.StreamWriter, code: int) -> None:
    writer.write(ws.encode_frame(ws.OP_CLOSE, ws.close_payload(code), mask=False))
    await writer.drain()
