"""What the gateway counts as it goes, read by the metrics collector at scrape time.

Per-request counts are plain ints in a compiled class: a prometheus_client counter takes a
lock and a dict lookup per call, several per request. Here a request costs a handful of
native integer additions, and `gateway/metrics.py` turns the totals into Prometheus
families only when `/metrics` is asked for.
"""

from __future__ import annotations

from typing import Final

from tunnelgate.proto.codes import ErrorCode, RejectReason

# Request-duration histogram bounds in seconds: Prometheus' default buckets. Typed as a
# tuple of floats so mypyc compares them unboxed: inferred as a fixed-length tuple, the
# loop in `request` went through Python objects and cost ~150 ns a request, now ~10
# (bench/metrics_cost.py).
DURATION_BOUNDS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip


REJECT_REASONS: Final = tuple(reason.value for reason in RejectReason)
# How a tunnel connection ends (session._cause): the client's goodbye or our idle/operator
# close ("clean"), the peer gone or closing with an error ("dropped"), or the code we
# closed it with (heartbeat_timeout: a client silent past --heartbeat-timeout).
_FREEING: Final = (ErrorCode.NO_ERROR, ErrorCode.IDLE_TIMEOUT, ErrorCode.KICKED)
DISCONNECT_CAUSES: Final = (
    "clean",
    "dropped",
    *(code.name.lower() for code in ErrorCode if code not in _FREEING),
)


class RequestCounters:
    """Public HTTP requests: by status class, bytes each way, durations, cut-offs."""

    def __init__(self) -> None:
        self.status_1xx = 0
        self.status_2xx = 0
        self.status_3xx = 0
        self.status_4xx = 0
        self.status_5xx = 0
        self.aborted = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.duration_sum = 0.0
        # Observations per bucket (not cumulative): index i counts durations up to
        # DURATION_BOUNDS[i] and above the bound before; the last counts the rest.
        self.duration_buckets = [0] * (len(DURATION_BOUNDS) + 1)

    def request(
        self, status: int, seconds: float, bytes_in: int, bytes_out: int, aborted: bool
    ) -> None:
        if status < 200:
            self.status_1xx += 1
        elif status < 300:
            self.status_2xx += 1
        elif status < 400:
            self.status_3xx += 1
        elif status < 500:
            self.status_4xx += 1
        else:
            self.status_5xx += 1
        if aborted:
            self.aborted += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.duration_sum += seconds
        bucket = 0
        for bound in DURATION_BOUNDS:
            if seconds <= bound:
                break
            bucket += 1
        self.duration_buckets[bucket] += 1

    @property
    def total(self) -> int:
        return (
            self.status_1xx
            + self.status_2xx
            + self.status_3xx
            + self.status_4xx
            + (self.status_5xx)
        )


class TunnelCounters:
    """Tunnel sessions: registrations by outcome, reconnects, ends by cause, auth."""

    def __init__(self) -> None:
        self.registered = 0
        self.reconnected = 0
        # By reason and by cause: closed lists (bounded labels), each series there from the
        # start at 0, so a rate over it works before the first one happens.
        self.rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.disconnected: dict[str, int] = dict.fromkeys(DISCONNECT_CAUSES, 0)
        self.auth_failures = 0  # /connect answered 401
        self.auth_rate_limited = 0  # /connect answered 429

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def disconnect(self, cause: str) -> None:
        self.disconnected[cause] = self.disconnected.get(cause, 0) + 1


# How a public TCP or TLS-passthrough connection ended (tcp.RawPublic's log line): both
# sides done ("closed"), cut by the public client, the local service (or the client's
# connect to it), the tunnel, or some other reset; or never relayed: no tunnel online on
# the port, or no stream free on it. A closed list: bounded labels.
RAW_ENDINGS: Final = (
    "closed",
    "client_reset",
    "local_error",
    "tunnel_reset",
    "reset",
    "tunnel_offline",
    "tunnel_busy",
)


class RawCounters:
    """Public TCP and TLS-passthrough connections: how each ended, bytes each way. One
    update per connection, when it ends."""

    def __init__(self) -> None:
        self.tcp_ended: dict[str, int] = dict.fromkeys(RAW_ENDINGS, 0)
        self.tls_ended: dict[str, int] = dict.fromkeys(RAW_ENDINGS, 0)
        self.tcp_bytes_in = 0
        self.tcp_bytes_out = 0
        self.tls_bytes_in = 0
        self.tls_bytes_out = 0

    def connection(self, tls: bool, ended: str, bytes_in: int, bytes_out: int) -> None:
        if tls:
            self.tls_ended[ended] = self.tls_ended.get(ended, 0) + 1
            self.tls_bytes_in += bytes_in
            self.tls_bytes_out += bytes_out
        else:
            self.tcp_ended[ended] = self.tcp_ended.get(ended, 0) + 1
            self.tcp_bytes_in += bytes_in
            self.tcp_bytes_out += bytes_out
