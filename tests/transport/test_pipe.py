"""The raw pipe between a socket and a stream: credit, backpressure, half-closes, resets."""

from __future__ import annotations

import pytest

from tunnelgate.proto.codes import ErrorCode
from tunnelgate.testing.fakes import FakeSocket, FakeStreamTarget
from tunnelgate.transport.pipe import Pipe

SID = 3


class Owner:
    def __init__(self) -> None:
        self.finished: list[bool] = []  # `aborted` of each pipe_finished call

    def pipe_finished(self, aborted: bool) -> None:
        self.finished.append(aborted)


def make_pipe(
    *, can_eof: bool = True, unacked: int = 0
) -> tuple[Pipe, FakeStreamTarget, FakeSocket, Owner]:
    target, socket, owner = FakeStreamTarget(), FakeSocket(can_eof=can_eof), Owner()
    pipe = Pipe(target, SID, socket, owner, reset_code=ErrorCode.CONNECT_ERROR, unacked=unacked)
    target.attach(SID, pipe)
    return pipe, target, socket, owner


# --- bytes both ways ------------------------------------------------------------------
def test_bytes_flow_both_ways_and_are_counted() -> None:
    pipe, target, socket, owner = make_pipe()
    target.feed(SID, b"from the peer")
    pipe.on_socket_data(b"from the socket")
    assert bytes(socket.written) == b"from the peer"
    assert target.data(SID) == b"from the socket"
    assert target.acked[SID] == len(b"from the peer")  # the socket took them
    assert (pipe.bytes_from_stream, pipe.bytes_from_socket) == (13, 15)
    assert owner.finished == []


# --- half-close ---------------------------------------------------------------------
def test_socket_eof_then_stream_fin() -> None:
    pipe, target, socket, owner = make_pipe()
    pipe.on_socket_eof()
    assert SID in target.ended  # our FIN
    target.feed(SID, b"the peer still talks")  # the other direction flows on
    assert bytes(socket.written) == b"the peer still talks"
    assert owner.finished == []
    target.feed_end(SID)
    assert socket.eof_written
    assert socket.closed
    assert not socket.aborted
    assert owner.finished == [False]
    assert SID in target.released


def test_stream_fin_then_socket_eof() -> None:
    pipe, target, socket, owner = make_pipe()
    target.feed_end(SID)
    assert socket.eof_written
    assert not socket.closed
    pipe.on_socket_data(b"the socket still talks")
    assert target.data(SID) == b"the socket still talks"
    pipe.on_socket_eof()
    assert SID in target.ended
    assert socket.closed
    assert owner.finished == [False]


def test_stream_fin_on_a_socket_that_cannot_half_close() -> None:
    # TLS: no write_eof. The socket stays open until its side ends too.
    pipe, target, socket, owner = make_pipe(can_eof=False)
    target.feed_end(SID)
    assert not socket.eof_written
    assert not socket.closed
    pipe.on_socket_eof()
    assert socket.closed
    assert owner.finished == [False]


def test_socket_closed_cleanly_ends_the_stream_and_drops_what_still_comes() -> None:
    pipe, target, socket, owner = make_pipe()
    socket.write_paused = True
    target.feed(SID, b"12345")  # written, credit withheld
    pipe.on_socket_lost(None)
    assert SID in target.ended
    assert SID not in target.resets
    assert target.acked[SID] == 5  # the socket is gone: the credit goes back
    target.feed(SID, b"nowhere to go")
    assert bytes(socket.written) == b"12345"
    assert target.acked[SID] == 5 + 13  # not written, and the peer is not blocked
    assert owner.finished == []
    target.feed_end(SID)
    assert owner.finished == [False]
    assert not socket.closed  # it was gone already


# --- backpressure ----------------------------------------------------------------------
def test_credit_is_withheld_while_the_socket_does_not_drain() -> None:
    pipe, target, socket, _ = make_pipe()
    socket.write_paused = True
    target.feed(SID, b"a" * 1000)
    target.feed(SID, b"b" * 24)
    assert target.acked.get(SID, 0) == 0
    socket.write_paused = False
    pipe.on_socket_drained()
    assert target.acked[SID] == 1024
    pipe.on_socket_drained()  # nothing more withheld
    assert target.acked[SID] == 1024


def test_credit_withheld_before_the_pipe_is_returned_by_it() -> None:
    pipe, target, _, _ = make_pipe(unacked=700)
    pipe.on_socket_drained()
    assert target.acked[SID] == 700


def test_socket_reading_pauses_while_the_stream_has_no_credit() -> None:
    pipe, target, socket, _ = make_pipe()
    target.writable = False
    pipe.on_socket_data(b"x" * 300_000)
    assert socket.reading_paused
    target.make_writable(SID)
    assert not socket.reading_paused
    pipe.on_socket_data(b"y")
    assert not socket.reading_paused


# --- resets -------------------------------------------------------------------------------
def test_stream_reset_aborts_the_socket() -> None:
    pipe, target, socket, owner = make_pipe()
    target.feed_reset(SID, ErrorCode.CANCEL)
    assert socket.aborted
    assert not socket.closed
    assert owner.finished == [True]
    target.attach(SID, pipe)
    target.feed(SID, b"late")  # crossed the reset: ignored
    pipe.on_socket_data(b"late")
    assert socket.written == b""
    assert target.data(SID) == b""


def test_socket_lost_with_an_error_resets_the_stream() -> None:
    pipe, target, socket, owner = make_pipe()
    pipe.on_socket_lost(ConnectionResetError())
    assert target.resets == {SID: ErrorCode.CONNECT_ERROR}
    assert SID in target.released
    assert not socket.aborted  # gone already: nothing to abort
    assert owner.finished == [True]


def test_abort_resets_the_stream_and_aborts_the_socket_once() -> None:
    pipe, target, socket, owner = make_pipe()
    pipe.abort(ErrorCode.CANCEL)
    pipe.abort(ErrorCode.INTERNAL_ERROR)
    pipe.on_socket_lost(None)
    assert target.resets == {SID: ErrorCode.CANCEL}
    assert socket.aborted
    assert owner.finished == [True]


@pytest.mark.parametrize("first", ["socket", "stream"])
def test_finished_once_whatever_comes_after(first: str) -> None:
    pipe, target, _, owner = make_pipe()
    if first == "socket":
        pipe.on_socket_eof()
        target.feed_end(SID)
    else:
        target.feed_end(SID)
        pipe.on_socket_eof()
    pipe.on_socket_lost(None)
    pipe.on_reset(ErrorCode.CANCEL)
    pipe.on_socket_eof()
    assert owner.finished == [False]
    assert repr(pipe).startswith(f"<Pipe sid={SID} done")
