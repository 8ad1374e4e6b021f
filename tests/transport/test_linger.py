"""Linger (lingering close) on a fake transport and a fake clock: half-closed at once, what the
client sends is dropped, and it closes at the first bound reached: the client's EOF (the
owner's), LINGER_TIMEOUT without a byte, LINGER_TIME in all, LINGER_MAX_BYTES."""

from __future__ import annotations

import pytest

from tunnelgate import limits
from tunnelgate.testing.clock import FakeClock
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.linger import Linger


class Transport:
    """What Linger uses of an asyncio transport."""

    def __init__(self, half_close: bool = True) -> None:
        self.half_close = half_close
        self.eof_written = self.closed = self.reading = False

    def can_write_eof(self) -> bool:
        return self.half_close

    def write_eof(self) -> None:
        self.eof_written = True

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True


def start(half_close: bool = True) -> tuple[Linger, Transport, FakeClock, Deadlines]:
    clock = FakeClock()
    deadlines = Deadlines(resolution=0.1, clock=clock)
    transport = Transport(half_close)
    linger = Linger(transport, deadlines)  # type: ignore[arg-type]
    return linger, transport, clock, deadlines


def test_half_closes_and_reads_at_once() -> None:
    _, transport, _, _ = start()
    assert transport.eof_written
    assert transport.reading
    assert not transport.closed


def test_tls_cannot_half_close_and_still_lingers() -> None:
    _, transport, _, _ = start(half_close=False)
    assert not transport.eof_written
    assert transport.reading
    assert not transport.closed


def test_closes_after_linger_timeout_without_a_byte() -> None:
    linger, transport, clock, _ = start()
    clock.advance(limits.LINGER_TIMEOUT - 0.5)
    linger.data_received(100)  # a byte: the idle time starts again
    clock.advance(limits.LINGER_TIMEOUT - 0.5)
    assert not transport.closed
    clock.advance(1.0)
    assert transport.closed
    assert linger.dropped == 100


def test_closes_after_linger_time_whatever_comes() -> None:
    linger, transport, clock, deadlines = start()
    elapsed = 0.0
    while not transport.closed:
        clock.advance(1.0)
        elapsed += 1.0
        linger.data_received(1)
        assert elapsed <= limits.LINGER_TIME + 1
    assert elapsed >= limits.LINGER_TIME - 1
    assert len(deadlines) == 0


def test_closes_after_linger_max_bytes() -> None:
    linger, transport, _, deadlines = start()
    piece = 256 * limits.KiB
    for _ in range(limits.LINGER_MAX_BYTES // piece - 1):
        linger.data_received(piece)
    assert not transport.closed
    linger.data_received(piece)
    assert transport.closed
    assert len(deadlines) == 0


@pytest.mark.parametrize("how", ["stop", "end"])
def test_stop_and_end_leave_no_deadline(how: str) -> None:
    linger, transport, clock, deadlines = start()
    getattr(linger, how)()
    assert len(deadlines) == 0
    assert transport.closed == (how == "end")
    clock.advance(limits.LINGER_TIME)
