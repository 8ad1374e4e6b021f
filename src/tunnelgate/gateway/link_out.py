"""The forwarding side of a cluster link: connect to the node that has the tunnel, send the
preamble and the bytes already read, then relay the public connection to it (splice.py).

One `cluster_forwarded` line per connection when it ends: what it was for, to which node,
the public client, bytes each way, duration, and who ended it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

from tunnelgate import limits
from tunnelgate.logs import EventLog
from tunnelgate.proto.link import NONCE_BYTES, LinkKind, Preamble, encode_preamble
from tunnelgate.transport.pipe import Pipe
from tunnelgate.transport.splice import LinkEnd, PublicEnd, splice

log = EventLog("tunnelgate.gateway")
LINK_ENDINGS = ("client", "node", "client_reset", "node_reset", "cut_off")
FORWARD_FAILURES = ("node_unreachable", "tunnel_offline", "registry_unavailable", "forward_failed")
LINK_REFUSALS = (
    "bad_magic", "bad_version", "bad_mac", "bad_kind", "malformed", "stale_timestamp",
    "replayed", "replay_cache_full", "preamble_timeout", "closed_before_preamble",
    "too_many_pending", "kind_not_served",
)  # fmt: skip


@dataclass(slots=True)
class ClusterCounters:
    """Forwarded connections (by how they ended) and their bytes, for metrics."""

    forwarded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LINK_ENDINGS, 0))
    # by reason: no link was made (the metrics' label values are these closed lists)
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FORWARD_FAILURES, 0))
    bytes_in: int = 0  # public client -> owning node
    bytes_out: int = 0
    adopted: int = 0  # connections other nodes forwarded here
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LINK_REFUSALS, 0))

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


class Slots(Protocol):
    def release(self, slot: str) -> None: ...


class Tracker(Protocol):
    """Where live connections are tracked, so a drain waits for relayed ones too."""

    def connection_opened(self, connection: Relay) -> None: ...
    def connection_closed(self, connection: Relay) -> None: ...


def split_node(node: str) -> tuple[str, int]:
    """'host:port' (an --advertise address as Gateway.node has it) -> (host, port)."""
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)


async def open_link(node: str) -> LinkEnd:
    """A connection to `node`'s advertise address. Raises OSError or TimeoutError."""
    host, port = split_node(node)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(limits.LINK_CONNECT_TIMEOUT):
        _, link = await loop.create_connection(LinkEnd, host, port)
    return link


def preamble_bytes(kind: LinkKind, target: str, client: str, via: str, secret: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    sent_ms = round(time.time() * 1000)
    return encode_preamble(Preamble(kind, target, client, via, sent_ms, nonce), secret)


class Relay:
    """One public connection relayed to another node (the pipe's owner)."""

    def __init__(
        self,
        *,
        target: str,
        node: str,
        client: str,
        slot: str | None,
        slots: Slots,
        tracker: Tracker,
        counters: ClusterCounters,
        sent_ahead: int,
    ) -> None:
        self.target = target  # a name, or "port:N"
        self.node = node
        self.client = client
        self._slot = slot
        self._slots = slots
        self._tracker = tracker
        self._counters = counters
        self._sent_ahead = sent_ahead  # bytes of the public client's sent before the pipe
        self._started = time.monotonic()
        self.pipe: Pipe | None = None
        self._public: PublicEnd | None = None
        self._link: LinkEnd | None = None
        self._cut = False

    def __repr__(self) -> str:
        return f"<Relay {self.target} {self.client} -> {self.node} {self.pipe!r}>"

    def start(self, public: asyncio.Transport, link: LinkEnd, first: bytes) -> None:
        """`first`: the preamble, then the bytes read from the public client."""
        self._link = link
        self._tracker.connection_opened(self)
        self.pipe, self._public = splice(public, link, self, first)

    # --- state.LiveConnection ------------------------------------------------------------
    def drain(self) -> None:
        """Nothing to do at once: the node at the other end drains its side, and this
        relay ends with it (or is cut off when the drain is over)."""

    def cut_off(self) -> None:
        if self.pipe is not None and not self.pipe.done:
            self._cut = True
            self.pipe.abort(0)

    # --- pipe.PipeOwner ----------------------------------------------------------------
    def pipe_finished(self, aborted: bool) -> None:
        pipe, public, link = self.pipe, self._public, self._link
        assert pipe is not None
        assert public is not None
        assert link is not None
        slot, self._slot = self._slot, None
        if slot is not None:
            self._slots.release(slot)
        self._tracker.connection_closed(self)
        if self._cut:
            ended = "cut_off"
        elif aborted:
            ended = "node_reset" if link.reset_seen and not public.reset_seen else "client_reset"
        else:
            ended = "node" if link.ended_first else "client"
        bytes_in = self._sent_ahead + pipe.bytes_from_socket
        counters = self._counters
        counters.forwarded[ended] = counters.forwarded.get(ended, 0) + 1
        counters.bytes_in += bytes_in
        counters.bytes_out += pipe.bytes_from_stream
        log.info(
            "cluster_forwarded",
            target=self.target,
            node=self.node,
            client=self.client,
            bytes_in=bytes_in,
            bytes_out=pipe.bytes_from_stream,
            duration_ms=round((time.monotonic() - self._started) * 1000, 2),
            ended=ended,
        )
