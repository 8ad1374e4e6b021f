"""The preamble of a link between two gateways of a cluster, sans-IO.

A gateway that gets a public connection for a tunnel another gateway holds opens a TCP
connection to that gateway's --advertise address and sends one preamble, then the bytes
it already read from the public client, then relays both ways. The preamble says what the
connection is for and for whom, and proves it comes from a gateway of the cluster:

    magic "TGLINK"  version u8  kind u8  timestamp u64 (ms, Unix)  nonce 16 bytes
    target: u8 length + ASCII (a name, or a TCP port's digits)
    client: u8 length + ASCII (the public client's "ip:port")
    via:    u8 length + ASCII (the forwarding gateway's advertise address)
    mac: HMAC-SHA256 of everything before it, keyed with --cluster-secret

The receiver (`LinkVerifier`) refuses a wrong magic or version at once, then checks the
MAC (constant time), the timestamp against its clock (`window` either way) and the nonce
against the ones it has seen (kept for twice the window, so any replay is refused by
one check or the other). No clock is read here: `now` is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"TGLINK"
VERSION = 1
NONCE_BYTES = 16
MAC_BYTES = 32
_FIXED = struct.Struct("!6sBBQ16s")  # magic, version, kind, timestamp ms, nonce
_FIELDS = 3  # target, client, via: each a u8 length and its bytes
MAX_FIELD = 255
MAX_PREAMBLE = _FIXED.size + _FIELDS * (1 + MAX_FIELD) + MAC_BYTES


class LinkKind(IntEnum):
    """What the public connection was, so the receiver serves it as its own of that kind."""

    HTTP = 1  # plain HTTP from --http
    HTTPS = 2  # HTTP that the forwarding gateway decrypted (X-Forwarded-Proto: https)
    TLS = 3  # TLS unopened, ClientHello first (the receiver terminates or passes it through)
    TCP = 4  # a TCP tunnel port's raw stream; target is the port


class LinkRefused(Exception):
    """The preamble is not acceptable; `reason` is a short code for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Preamble:
    kind: LinkKind
    target: str
    client: str
    via: str
    sent_ms: int  # when it was made: Unix time in milliseconds (exact on the wire)
    nonce: bytes


def encode_preamble(preamble: Preamble, secret: bytes) -> bytes:
    """The preamble's bytes, MAC included. Raises ValueError for a field over 255 bytes
    or not ASCII, a nonce of another size, a time outside u64 (the caller made it: a local
    error)."""
    if len(preamble.nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    if not 0 <= preamble.sent_ms < 1 << 64:
        raise ValueError("sent_ms must fit in 64 bits")
    parts = [_FIXED.pack(MAGIC, VERSION, preamble.kind, preamble.sent_ms, preamble.nonce)]
    for text in (preamble.target, preamble.client, preamble.via):
        field = text.encode("ascii")
        if len(field) > MAX_FIELD:
            raise ValueError(f"preamble field over {MAX_FIELD} bytes")
        parts += (bytes((len(field),)), field)
    signed = b"".join(parts)
    return signed + hmac.digest(secret, signed, hashlib.sha256)


class NonceCache:
    """Nonces seen in the last `keep` seconds, at most `max_entries` of them."""

    def __init__(self, max_entries: int, keep: float) -> None:
        self._max = max_entries
        self._keep = keep
        self._seen: set[bytes] = set()
        self._order: deque[tuple[float, bytes]] = deque()  # (forget at, nonce), oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: bytes, now: float) -> str | None:
        """Remember `nonce`; the reason to refuse it, if any."""
        order, seen = self._order, self._seen
        while order and order[0][0] <= now:
            seen.discard(order.popleft()[1])
        if nonce in seen:
            return "replayed"
        if len(seen) >= self._max:
            return "replay_cache_full"  # fail closed: forgetting one early would allow its replay
        seen.add(nonce)
        order.append((now + self._keep, nonce))
        return None


class LinkVerifier:
    """Reads and checks preambles for one receiving gateway (shared by its links)."""

    def __init__(self, secret: bytes, *, window: float, max_nonces: int) -> None:
        self._secret = secret
        self._window = window
        self.nonces = NonceCache(max_nonces, 2 * window)

    def read(self, buffer: bytes, now: float) -> tuple[Preamble, int] | None:
        """The preamble at the start of `buffer` and where it ends; None while it is
        incomplete. Raises LinkRefused."""
        head = buffer[: len(MAGIC)]
        if not MAGIC.startswith(head):
            raise LinkRefused("bad_magic")
        if len(buffer) > len(MAGIC) and buffer[len(MAGIC)] != VERSION:
            raise LinkRefused("bad_version")
        end = _preamble_end(buffer)
        if end is None:
            return None
        signed, mac = buffer[: end - MAC_BYTES], buffer[end - MAC_BYTES : end]
        expected = hmac.digest(self._secret, signed, hashlib.sha256)
        if not hmac.compare_digest(expected, mac):
            raise LinkRefused("bad_mac")
        preamble = _decode(signed)
        if abs(preamble.sent_ms / 1000 - now) > self._window:
            raise LinkRefused("stale_timestamp")
        refused = self.nonces.add(preamble.nonce, now)
        if refused is not None:
            raise LinkRefused(refused)
        return preamble, end


def _preamble_end(buffer: bytes) -> int | None:
    """Where the preamble (MAC included) ends in `buffer`, once its lengths are there."""
    at = _FIXED.size
    for _ in range(_FIELDS):
        if len(buffer) <= at:
            return None
        at += 1 + buffer[at]
    end = at + MAC_BYTES
    return end if len(buffer) >= end else None


def _decode(signed: bytes) -> Preamble:
    """The fields of a preamble whose MAC checked (so a gateway of ours made it; still
    checked, as a peer running other code could differ)."""
    _, _, kind, stamp, nonce = _FIXED.unpack_from(signed)
    try:
        link_kind = LinkKind(kind)
    except ValueError:
        raise LinkRefused("bad_kind") from None
    fields: list[str] = []
    at = _FIXED.size
    for _ in range(_FIELDS):
        size = signed[at]
        try:
            fields.append(signed[at + 1 : at + 1 + size].decode("ascii"))
        except UnicodeDecodeError:
            raise LinkRefused("malformed") from None
        at += 1 + size
    target, client, via = fields
    return Preamble(link_kind, target, client, via, stamp, nonce)
