"""Prometheus metrics, read from the gateway's own counters at scrape time.

Nothing here runs per request: the hot path adds to plain ints (counters.py), and this
collector turns them, and what is live (sessions, routes, streams), into metric families
when `/metrics` is asked for. Labels are bounded: status classes, directions, closed lists
of reasons and causes; no per-tunnel labels unless `--metrics-per-tunnel`, and then only
for live tunnels: their series are read off the live routes (the counters the admin API
shows, kept whether or not they are exported), so a tunnel's series go when it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from tunnelgate.proto.codes import StreamKind

from .buffers import BufferBudget
from .caps import ConnectionCaps
from .counters import DURATION_BOUNDS, RawCounters, RequestCounters, TunnelCounters
from .link_out import ClusterCounters
from .routes import Route
from .tls_front import HandshakeCounters


class LiveView(Protocol):
    """What the collector reads of what is live (app.Gateway)."""

    @property
    def counters(self) -> RequestCounters: ...
    @property
    def tunnel_counters(self) -> TunnelCounters: ...
    @property
    def raw_counters(self) -> RawCounters: ...
    @property
    def caps(self) -> ConnectionCaps: ...
    @property
    def buffers(self) -> BufferBudget: ...
    @property
    def handshakes(self) -> HandshakeCounters: ...
    @property
    def cluster_counters(self) -> ClusterCounters | None: ...  # None: not in a cluster

    def live_routes(self) -> Iterable[Route]: ...
    def open_streams(self) -> int: ...
    def tunnel_connections(self) -> int: ...


class GatewayCollector(Collector):
    def __init__(self, view: LiveView, *, per_tunnel: bool = False) -> None:
        self._view = view
        self._per_tunnel = per_tunnel

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._tunnels()
        yield from self._connections()
        if self._view.cluster_counters is not None:
            yield from _cluster(self._view.cluster_counters)
        if self._per_tunnel:
            yield from self._each_tunnel()

    def _each_tunnel(self) -> Iterator[Metric]:
        labels = ["tunnel", "protocol"]
        requests = CounterMetricFamily(
            "tunnelgate_tunnel_requests",
            "Public requests (HTTP) or connections (TCP, TLS) per live tunnel",
            labels=labels,
        )
        transferred = CounterMetricFamily(
            "tunnelgate_tunnel_bytes",
            "Bytes from public clients (in) and to them (out) per live tunnel",
            labels=[*labels, "direction"],
        )
        for route in self._view.live_routes():
            protocol = route.kind.name.lower()
            tunnel = str(route.port) if route.kind is StreamKind.TCP else route.name
            requests.add_metric([tunnel, protocol], route.requests)
            transferred.add_metric([tunnel, protocol, "in"], route.bytes_in)
            transferred.add_metric([tunnel, protocol, "out"], route.bytes_out)
        yield requests
        yield transferred

    def _requests(self) -> Iterator[Metric]:
        counts = self._view.counters
        requests = CounterMetricFamily(
            "tunnelgate_requests", "Public HTTP requests, by status class", labels=["status"]
        )
        for label, value in (
            ("1xx", counts.status_1xx),
            ("2xx", counts.status_2xx),
            ("3xx", counts.status_3xx),
            ("4xx", counts.status_4xx),
            ("5xx", counts.status_5xx),
        ):
            requests.add_metric([label], value)
        yield requests
        yield CounterMetricFamily(
            "tunnelgate_requests_aborted",
            "Responses cut off before their end (the public client saw a reset)",
            value=counts.aborted,
        )
        transferred = CounterMetricFamily(
            "tunnelgate_request_bytes",
            "Bytes of public requests (in) and responses (out), heads included",
            labels=["direction"],
        )
        transferred.add_metric(["in"], counts.bytes_in)
        transferred.add_metric(["out"], counts.bytes_out)
        yield transferred
        buckets: list[tuple[str, float]] = []
        total = 0
        labels = [*(str(bound) for bound in DURATION_BOUNDS), "+Inf"]
        for label, count in zip(labels, counts.duration_buckets, strict=True):
            total += count
            buckets.append((label, total))
        yield HistogramMetricFamily(
            "tunnelgate_request_duration_seconds",
            "Public HTTP requests, head to end of response",
            buckets=buckets,
            sum_value=counts.duration_sum,
        )

    def _tunnels(self) -> Iterator[Metric]:
        view, counts = self._view, self._view.tunnel_counters
        active = GaugeMetricFamily(
            "tunnelgate_tunnels_active", "Tunnels online on this gateway", labels=["protocol"]
        )
        by_kind = {kind: 0 for kind in StreamKind}
        for route in view.live_routes():
            by_kind[route.kind] += 1
        for kind, value in by_kind.items():
            active.add_metric([kind.name.lower()], value)
        yield active
        yield GaugeMetricFamily(
            "tunnelgate_tunnel_connections",
            "Tunnel client connections",
            value=view.tunnel_connections(),
        )
        yield GaugeMetricFamily(
            "tunnelgate_streams_active", "Streams open on tunnels", value=view.open_streams()
        )
        outcomes = CounterMetricFamily(
            "tunnelgate_registrations", "Tunnel registrations by outcome", labels=["outcome"]
        )
        outcomes.add_metric(["registered"], counts.registered)
        outcomes.add_metric(["reconnected"], counts.reconnected)
        outcomes.add_metric(["rejected"], sum(counts.rejected.values()))
        yield outcomes
        yield _by_label(
            "tunnelgate_registrations_rejected", "Rejections by reason", "reason", counts.rejected
        )
        yield _by_label(
            "tunnelgate_tunnel_disconnects",
            "Tunnel connections ended, by cause (clean, dropped, heartbeat_timeout, ...)",
            "cause",
            counts.disconnected,
        )
        yield CounterMetricFamily(
            "tunnelgate_auth_failures",
            "/connect refused for a bad or missing token (401)",
            value=counts.auth_failures,
        )
        yield CounterMetricFamily(
            "tunnelgate_auth_rate_limited",
            "/connect refused from an address on a failed-auth cool-down (429)",
            value=counts.auth_rate_limited,
        )

    def _connections(self) -> Iterator[Metric]:
        view = self._view
        stats = view.caps.statistics()
        yield GaugeMetricFamily(
            "tunnelgate_connections_open", "Public connections held", value=stats.open
        )
        refused = CounterMetricFamily(
            "tunnelgate_connections_refused", "Public connections refused", labels=["reason"]
        )
        refused.add_metric(["per_address_cap"], stats.refused_per_address)
        refused.add_metric(["max_connections"], stats.refused_max_connections)
        refused.add_metric(["descriptors"], stats.refused_descriptors)
        yield refused
        yield GaugeMetricFamily(
            "tunnelgate_held_response_bytes",
            "Response bytes held for slow readers (the buffer budget's use)",
            value=view.buffers.held,
        )
        raw = view.raw_counters
        ended = CounterMetricFamily(
            "tunnelgate_raw_connections",
            "Public TCP and TLS-passthrough connections, by protocol and how they ended",
            labels=["protocol", "ended"],
        )
        for protocol, counts in (("tcp", raw.tcp_ended), ("tls", raw.tls_ended)):
            for how, value in counts.items():
                ended.add_metric([protocol, how], value)
        yield ended
        relayed = CounterMetricFamily(
            "tunnelgate_raw_bytes",
            "Bytes relayed on public TCP and TLS-passthrough connections (in: from the public "
            "client)",
            labels=["protocol", "direction"],
        )
        relayed.add_metric(["tcp", "in"], raw.tcp_bytes_in)
        relayed.add_metric(["tcp", "out"], raw.tcp_bytes_out)
        relayed.add_metric(["tls", "in"], raw.tls_bytes_in)
        relayed.add_metric(["tls", "out"], raw.tls_bytes_out)
        yield relayed
        handshakes = view.handshakes
        tls = CounterMetricFamily(
            "tunnelgate_tls_handshakes", "TLS connections on the HTTPS listener", labels=["outcome"]
        )
        tls.add_metric(["completed"], handshakes.completed)
        tls.add_metric(["passed_through"], handshakes.passed_through)
        tls.add_metric(["failed"], sum((handshakes.failed or {}).values()))
        yield tls
        yield _by_label(
            "tunnelgate_tls_handshake_failures",
            "Failed TLS handshakes by reason",
            "reason",
            handshakes.failed or {},
        )


def _cluster(counters: ClusterCounters) -> Iterator[Metric]:
    yield _by_label(
        "tunnelgate_cluster_forwarded_connections",
        "Public connections relayed to the node that has their tunnel, by who ended them",
        "ended",
        counters.forwarded,
    )
    relayed = CounterMetricFamily(
        "tunnelgate_cluster_forwarded_bytes",
        "Bytes relayed to other nodes (in: from the public client)",
        labels=["direction"],
    )
    relayed.add_metric(["in"], counters.bytes_in)
    relayed.add_metric(["out"], counters.bytes_out)
    yield relayed
    yield _by_label(
        "tunnelgate_cluster_forward_failures",
        "Public connections not forwarded, by reason (node_unreachable, tunnel_offline, ...)",
        "reason",
        counters.failed,
    )
    yield CounterMetricFamily(
        "tunnelgate_cluster_adopted_connections",
        "Connections other nodes forwarded here",
        value=counters.adopted,
    )
    yield _by_label(
        "tunnelgate_cluster_links_refused",
        "Link connections refused, by reason (bad_mac, replayed, preamble_timeout, ...)",
        "reason",
        counters.refused,
    )


def _by_label(name: str, help: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, help, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def make_registry(view: LiveView, *, per_tunnel: bool = False) -> CollectorRegistry:
    """A registry of the gateway's metrics only (not the process defaults twice)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(view, per_tunnel=per_tunnel))
    return registry
