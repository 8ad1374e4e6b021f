"""Hostile tunnel clients against a real gateway: floods, huge messages, malformed frames.

Each attacker is a hand-written tunnel client (testing/raw_tunnel.py) on the gateway the
module's good tunnel also uses. Each test asserts that only the offender is closed, with the
documented GOAWAY code, that the good tunnel's latency holds meanwhile, and that the gateway
logs the close once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
from e2e_support import TunnelEnv, start_tunnel_env
from hostile_support import LatencyProbe, open_fds, rss_mib

from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.frames import FLAG_FIN, FrameType, encode_frame, encode_u32, encode_u64
from tunnelgate.testing import websocket as ws
from tunnelgate.testing.processes import poll_until_async
from tunnelgate.testing.raw_tunnel import RawTunnel, code_of

PING = encode_frame(FrameType.PING, 0, encode_u64(1))
PINGS_PER_MESSAGE = 58_000  # the attack's shape: about 1 MiB of PINGs a message
ATTACK_TIME = 10.0  # seconds an attacker keeps trying before the test calls it a failure
CUT_OFF_WITHIN = 5.0  # seconds in which a flooding peer must be disconnected
MAX_RSS_GROWTH = 100.0  # MiB
LATENCY_FACTOR = 10.0  # the good tunnel's median latency may grow at most this much
# Seconds: below this a ratio of medians says nothing. A flood the gateway does not cut off
# put the good tunnel's median at 1.5-2.8 s (the builds before issue 6); at 5 ms the limit
# failed now and then on a 2-core machine shared with other test runs (13 ms against 12).
LATENCY_FLOOR = 0.05
# One 4 MiB message of 380,000 frames handled in one go stalls the gateway for well over
# 100 ms; in slices of 1,024 frames, each turn costs under a millisecond. On a machine
# shared with other work a few milliseconds of extra median latency are noise, not this.
SLICED_FLOOR = 0.025


@pytest.fixture(scope="module")
def env() -> Iterator[TunnelEnv]:
    with start_tunnel_env(gateway_args=["--heartbeat-interval", "1"]) as tunnel_env:
        yield tunnel_env


async def _flood(attacker: RawTunnel, message: bytes, *, read: bool) -> float:
    """Send `message` again and again until the gateway cuts the attacker off; the time
    that took (the test fails if it never happens)."""
    started = time.monotonic()
    reader = asyncio.get_running_loop().create_task(attacker.wait_closed()) if read else None
    try:
        while time.monotonic() - started < ATTACK_TIME:
            try:
                await attacker.send(message)
            except (ConnectionError, TimeoutError):
                break
            if reader is not None and reader.done():
                break
        else:
            raise AssertionError(f"the flood was not cut off in {ATTACK_TIME} s")
        return time.monotonic() - started
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _attack(env: TunnelEnv, message: bytes, *, read: bool, name: str) -> None:
    probe = LatencyProbe(env)
    baseline = await probe.measure(20)
    rss_before = rss_mib(env.gateway.pid)
    fds_before = open_fds(env.gateway.pid)
    mark = env.gateway_mark()
    attacker = await RawTunnel.open(env.gateway_port, receive_buffer=None if read else 4096)
    async with attacker:
        answer = await attacker.register(1, name)
        assert answer["type"] == "registered", answer
        probe.start()
        try:
            took = await _flood(attacker, message, read=read)
        finally:
            await probe.stop()
    assert took < CUT_OFF_WITHIN, f"cut off after {took:.1f} s"
    line = await env.wait_gateway_event(
        lambda o: o.get("event") == "tunnel_disconnected" and o.get("code") is not None,
        after=mark,
    )
    assert line["code"] == "enhance_your_calm", line
    assert line["level"] == "warning", line
    assert probe.peak_rss - rss_before < MAX_RSS_GROWTH, (rss_before, probe.peak_rss)
    assert not probe.failures, probe.failures
    assert probe.latencies, "no probe completed during the attack"
    assert probe.median <= max(LATENCY_FACTOR * baseline, LATENCY_FLOOR), (
        baseline,
        probe.median,
    )
    # Only the offender went: the name it held is free again, the good tunnel still serves.
    assert (await env.get("/")).status == 200
    # Its descriptor is given back (the socket is closed, not left to drain forever).
    await poll_until_async(lambda: open_fds(env.gateway.pid) <= fds_before, 5.0)


async def test_ping_flood_not_reading_is_cut_off(env: TunnelEnv) -> None:
    await _attack(env, PING * PINGS_PER_MESSAGE, read=False, name="pinger")


async def test_ping_flood_reading_the_pongs_is_cut_off(env: TunnelEnv) -> None:
    await _attack(env, PING * PINGS_PER_MESSAGE, read=True, name="pinger2")


async def test_refused_open_flood_is_cut_off(env: TunnelEnv) -> None:
    opens = b"".join(encode_frame(FrameType.OPEN, sid, b"") for sid in range(1, 100_000, 2))
    await _attack(env, opens, read=False, name="opener")


async def test_empty_data_flood_is_cut_off(env: TunnelEnv) -> None:
    # Stream ids the gateway never opened are a protocol error; an empty DATA on a
    # stream it did open and reset is the cheap-for-them shape (CVE-2019-9518).
    probe_name = "empty"
    attacker = await RawTunnel.open(env.gateway_port)
    async with attacker:
        assert (await attacker.register(1, probe_name))["type"] == "registered"
        request = env.get_name(probe_name)
        getter = asyncio.get_running_loop().create_task(request)
        sid = 0
        while not sid:
            for frame in await attacker.read_frames():
                if frame.type == FrameType.OPEN:
                    sid = frame.stream_id
        await attacker.send(encode_frame(FrameType.RESET, sid, encode_u32(ErrorCode.CANCEL)))
        assert (await getter).status == 502
        empty = encode_frame(FrameType.DATA, sid, b"")
        await attacker.send(empty * 50_000)
        goaway = await attacker.wait_goaway()
    assert code_of(goaway) == ErrorCode.ENHANCE_YOUR_CALM, goaway


async def test_huge_message_of_tiny_frames_does_not_starve_others(env: TunnelEnv) -> None:
    """1-byte DATA frames for a stream the gateway reset cost it work but are not a flood
    (they cost the sender as much); 380,000 of them in one 4 MiB message are handled in
    slices, one per loop turn, so the good tunnel keeps its latency."""
    attacker = await RawTunnel.open(env.gateway_port)
    async with attacker:
        assert (await attacker.register(1, "slicer"))["type"] == "registered"
        getter = asyncio.get_running_loop().create_task(env.get_name("slicer"))
        sid = 0
        while not sid:
            for frame in await attacker.read_frames():
                if frame.type == FrameType.OPEN:
                    sid = frame.stream_id
        await attacker.send(encode_frame(FrameType.RESET, sid, encode_u32(ErrorCode.CANCEL)))
        assert (await getter).status == 502
        tiny = encode_frame(FrameType.DATA, sid, b"x")
        # Masked once here: masking 4 MiB in Python would stall this test's own loop
        # (and its latency probe) far more than the gateway.
        message = ws.encode_frame(ws.OP_BINARY, tiny * (4 * 1024 * 1024 // len(tiny) - 1))
        probe = LatencyProbe(env)
        baseline = await probe.measure(20)
        probe.start()
        try:
            for _ in range(10):
                await attacker.send_raw(message)
        finally:
            await probe.stop()
        # Still connected and answered: it broke no rule.
        await attacker.send(PING)
        while not any(f.type == FrameType.PONG for f in await attacker.read_frames()):
            pass
    assert not probe.failures, probe.failures
    assert probe.median <= max(LATENCY_FACTOR * baseline, SLICED_FLOOR), (
        baseline,
        probe.median,
    )


async def test_registration_flood_is_bounded_and_logged_in_one_line(env: TunnelEnv) -> None:
    mark = env.gateway_mark()
    attacker = await RawTunnel.open(env.gateway_port)
    async with attacker:
        registers = b"".join(
            encode_frame(
                FrameType.CONTROL,
                0,
                b'{"type":"register","id":%d,"protocol":"http","name":"www"}' % i,
            )
            for i in range(1, 10_001)
        )
        await attacker.send(registers)
        goaway = await attacker.wait_goaway()
    assert code_of(goaway) == ErrorCode.ENHANCE_YOUR_CALM, goaway
    await env.wait_gateway_event(
        lambda o: o.get("event") == "tunnel_disconnected" and o.get("code") is not None,
        after=mark,
    )
    lines = env.gateway_events(mark)
    assert len(lines) <= 5, lines
    answers = [f for f in attacker.frames if f.type == FrameType.CONTROL]
    assert len(answers) <= 64  # MAX_REGISTRATIONS_PER_CONNECTION


async def test_connection_left_with_no_tunnel_after_a_rejection_is_closed(env: TunnelEnv) -> None:
    attacker = await RawTunnel.open(env.gateway_port)
    async with attacker:
        answer = await attacker.register(1, "www")  # a reserved name
        assert answer["type"] == "rejected", answer
        goaway = await attacker.wait_goaway()
    assert code_of(goaway) == ErrorCode.NO_ERROR, goaway


# --- malformed frames: each closes only its own tunnel, with the documented code ------------
MALFORMED = [
    pytest.param(
        ws.encode_frame(ws.OP_BINARY, bytes([99]) + bytes(9)),
        ErrorCode.PROTOCOL_ERROR,
        id="unknown-frame-type",
    ),
    pytest.param(
        ws.encode_frame(ws.OP_BINARY, encode_frame(FrameType.DATA, 0, b"x")),
        ErrorCode.PROTOCOL_ERROR,
        id="data-on-stream-0",
    ),
    pytest.param(
        ws.encode_frame(ws.OP_BINARY, encode_frame(FrameType.WINDOW, 41, encode_u32(5))),
        ErrorCode.PROTOCOL_ERROR,
        id="window-for-a-stream-never-opened",
    ),
    pytest.param(
        ws.encode_frame(ws.OP_BINARY, encode_frame(FrameType.PING, 0, b"short")),
        ErrorCode.FRAME_SIZE_ERROR,
        id="ping-of-the-wrong-size",
    ),
    pytest.param(
        ws.encode_frame(ws.OP_BINARY, bytes([0, 0, 0, 0, 0, 1, 0x10, 0, 0, 1])),
        ErrorCode.FRAME_SIZE_ERROR,
        id="frame-over-1-MiB",
    ),
    pytest.param(
        ws.encode_frame(ws.OP_BINARY, encode_frame(FrameType.CONTROL, 0, b"{not json")),
        ErrorCode.PROTOCOL_ERROR,
        id="control-not-json",
    ),
    pytest.param(ws.encode_frame(ws.OP_TEXT, b"hello"), ErrorCode.PROTOCOL_ERROR, id="text"),
    pytest.param(
        ws.encode_frame(ws.OP_BINARY, encode_frame(FrameType.DATA, 2, b"x", FLAG_FIN)),
        ErrorCode.PROTOCOL_ERROR,
        id="data-for-a-gateway-stream-never-opened",
    ),
]


@pytest.mark.parametrize(("wire", "code"), MALFORMED)
async def test_malformed_frame_closes_only_its_tunnel(
    env: TunnelEnv, wire: bytes, code: ErrorCode
) -> None:
    mark = env.gateway_mark()
    attacker = await RawTunnel.open(env.gateway_port)
    async with attacker:
        assert (await attacker.register(1))["type"] == "registered"
        await attacker.send_raw(wire)
        goaway = await attacker.wait_goaway()
    assert code_of(goaway) == code, goaway
    line = await env.wait_gateway_event(
        lambda o: o.get("event") == "tunnel_disconnected" and o.get("code") is not None,
        after=mark,
    )
    assert line["code"] == code.name.lower(), line
    assert (await env.get("/")).status == 200
