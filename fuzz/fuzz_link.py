#!/usr/bin/env python3
"""The cluster link's preamble reader (proto/link.py LinkVerifier), which reads what any
peer of a gateway's --advertise address sends.

Input: byte 0 bit 0 clear: the rest is the link's bytes as they came (junk, cut or not);
set: the rest is signed with the right secret first (its MAC appended), so the fields
behind the MAC are explored too, and the reader's clock is set to the preamble's own
timestamp. Checked: only LinkRefused; every cut of the bytes before a preamble ends needs
more; an accepted preamble ends where the MAC does and encodes back to its own bytes; the
same bytes again are refused as a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate.proto.link import LinkRefused, LinkVerifier, encode_preamble

SECRET = b"fuzz-secret-of-thirty-two-bytes!"
WINDOW = 30.0


def read(wire: bytes, now: float) -> None:
    verifier = LinkVerifier(SECRET, window=WINDOW, max_nonces=8)
    try:
        found = verifier.read(wire, now)
    except LinkRefused:
        return
    if found is None:
        return
    preamble, end = found
    assert encode_preamble(preamble, SECRET) == wire[:end], "re-encoded differently"
    for cut in (0, 1, end // 2, end - 1):
        try:
            assert LinkVerifier(SECRET, window=WINDOW, max_nonces=8).read(wire[:cut], now) is None
        except LinkRefused as refused:  # a cut is never refused by its contents
            raise AssertionError(f"cut at {cut} refused: {refused.reason}") from None
    try:
        verifier.read(wire, now)
    except LinkRefused as refused:
        assert refused.reason == "replayed", refused.reason
    else:
        raise AssertionError("a replay was taken")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    rest = data[1:]
    if not data[0] & 1:
        read(rest, 1_800_000_000.0)
        return
    signed = rest
    now = 0.0
    if len(signed) >= 16:
        now = struct.unpack_from("!Q", signed, 8)[0] / 1000
    read(signed + hmac.digest(SECRET, signed, hashlib.sha256), now)


if __name__ == "__main__":
    fuzz(test_one_input)
