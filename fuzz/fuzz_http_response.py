#!/usr/bin/env python3
"""The local app's response parser (http1/response.py), which frames passthrough bytes.

Input: byte 0 picks the methods of the requests answered (two bits each, cycling over
GET, HEAD, POST, CONNECT) and byte 1 the size of the pieces the bytes are fed in (0:
whole); the rest is what the app sends, answers in a row. Limits are small (1 KiB head,
16 fields). Checked: only HTTPError(502) escapes, and the parser stays dead after it; how
the bytes are cut changes neither the heads, nor where each response ends, nor whether
they are refused; a cut head never holds more than the head limit.
"""

from __future__ import annotations

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate.errors import HTTPError
    from tunnelgate.http1.response import ResponseComplete, ResponseHead, ResponseParser

MAX_HEAD = 1024
MAX_FIELDS = 16
METHODS = (b"GET", b"HEAD", b"POST", b"CONNECT")
_HEAD, _STOPPED = 1, 5  # ResponseParser's states
# Per response: its head's framing, and the offset in the stream where it ended.
Seen = tuple[object, ...]


class Run:
    def __init__(self, methods: int) -> None:
        self.parser = ResponseParser(MAX_HEAD, MAX_FIELDS)
        self.methods = methods
        self.answered = 0
        self.seen: list[Seen] = []
        self.stopped = False  # a 101 or a 2xx to CONNECT: the rest is not HTTP
        self.next()

    def next(self) -> None:
        self.parser.expect(METHODS[(self.methods >> (2 * (self.answered % 4))) & 3])

    def feed(self, piece: bytes, at: int) -> None:
        """Feed bytes stream[at:at+len(piece)], going on to the next answer after each."""
        while piece and not self.stopped:
            completed, leftover = False, 0
            for event in self.parser.feed(piece):
                if isinstance(event, ResponseHead):
                    repr(event)
                    self.seen.append(head_of(event))
                elif isinstance(event, ResponseComplete):
                    self.seen.append(("end", at + len(piece) - event.leftover))
                    completed, leftover = True, event.leftover
            if self.parser._state == _STOPPED:
                self.stopped = True
            if not completed or self.stopped:
                return
            self.answered += 1
            self.next()
            at += len(piece) - leftover
            piece = piece[len(piece) - leftover :]


def head_of(head: ResponseHead) -> Seen:
    return (
        head.status,
        head.version,
        head.keep_alive,
        head.interim,
        head.chunked,
        head.content_length,
        tuple(head.headers),
    )


def parse(stream: bytes, piece: int, methods: int) -> tuple[list[Seen], bool]:
    run = Run(methods)
    size = piece or max(len(stream), 1)
    try:
        for at in range(0, len(stream), size):
            run.feed(stream[at : at + size], at)
            if run.parser._state == _HEAD:
                assert run.parser._framer.size <= MAX_HEAD, "a cut head held past the limit"
        idle = run.answered and run.parser._state == _HEAD and not run.parser._framer.size
        if not run.stopped and not idle:  # the app closes: ends a body that runs to EOF
            for event in run.parser.feed_eof():
                assert isinstance(event, ResponseComplete)
                run.seen.append(("eof",))
    except HTTPError as exc:
        assert exc.status == 502, f"refused with {exc.status}"
        try:
            run.parser.feed_eof()
        except HTTPError:
            return run.seen, True
        raise AssertionError("a refused parser took more") from None
    return run.seen, False


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    methods, piece, stream = data[0], data[1], data[2:]
    seen, refused = parse(stream, 0, methods)
    cut_seen, cut_refused = parse(stream, piece, methods)
    assert refused == cut_refused, f"whole refused: {refused}, cut refused: {cut_refused}"
    if not refused:
        assert seen == cut_seen, f"whole: {seen}, cut: {cut_seen}"


if __name__ == "__main__":
    fuzz(test_one_input)
