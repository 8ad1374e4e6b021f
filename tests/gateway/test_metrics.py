"""The metrics collector (gateway/metrics.py) over a stand-in for the live gateway: what it
reads at scrape time, the closed label lists, and the opt-in per-tunnel series."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from fakes import TunnelPeer
from prometheus_client import generate_latest

from tunnelgate.gateway.buffers import BufferBudget
from tunnelgate.gateway.caps import ConnectionCaps
from tunnelgate.gateway.counters import RawCounters, RequestCounters, TunnelCounters
from tunnelgate.gateway.link_out import ClusterCounters
from tunnelgate.gateway.metrics import make_registry
from tunnelgate.gateway.routes import Route
from tunnelgate.gateway.tls_front import HandshakeCounters
from tunnelgate.proto.codes import StreamKind
from tunnelgate.testing.metrics import samples as samples_of


@dataclass
class View:
    counters: RequestCounters = field(default_factory=RequestCounters)
    tunnel_counters: TunnelCounters = field(default_factory=TunnelCounters)
    raw_counters: RawCounters = field(default_factory=RawCounters)
    caps: ConnectionCaps = field(default_factory=lambda: ConnectionCaps(100, 10, 1024))
    buffers: BufferBudget = field(default_factory=lambda: BufferBudget(1 << 20))
    handshakes: HandshakeCounters = field(default_factory=HandshakeCounters)
    cluster_counters: ClusterCounters | None = None
    routes: list[Route] = field(default_factory=list)

    def live_routes(self) -> Iterator[Route]:
        yield from self.routes

    def open_streams(self) -> int:
        return 0

    def tunnel_connections(self) -> int:
        return len(self.routes)


def route(name: str, kind: StreamKind = StreamKind.HTTP, port: int = 0) -> Route:
    target = TunnelPeer().connection  # never touched by the collector
    return Route(name, 1, target, f"http://{name}.localhost", principal="p", kind=kind, port=port)


def scrape(view: View, *, per_tunnel: bool) -> dict[str, float]:
    return samples_of(generate_latest(make_registry(view, per_tunnel=per_tunnel)).decode())


async def test_no_per_tunnel_series_unless_asked() -> None:
    view = View(routes=[route("web")])
    assert not [key for key in scrape(view, per_tunnel=False) if "tunnel=" in key]


async def test_per_tunnel_series_follow_the_live_routes() -> None:
    web, db = route("web"), route("port:20001", StreamKind.TCP, 20001)
    view = View(routes=[web, db])
    web.requests, web.bytes_in, web.bytes_out = 3, 120, 4500
    db.requests, db.bytes_out = 1, 7
    samples = scrape(view, per_tunnel=True)
    assert samples["tunnelgate_tunnel_requests_total{protocol=http,tunnel=web}"] == 3
    assert samples["tunnelgate_tunnel_bytes_total{direction=in,protocol=http,tunnel=web}"] == 120
    assert samples["tunnelgate_tunnel_bytes_total{direction=out,protocol=http,tunnel=web}"] == 4500
    # A TCP tunnel is named by its public port.
    assert samples["tunnelgate_tunnel_requests_total{protocol=tcp,tunnel=20001}"] == 1
    view.routes.remove(web)
    after = scrape(view, per_tunnel=True)
    assert not [key for key in after if "tunnel=web" in key]  # gone with its tunnel
    assert after["tunnelgate_tunnel_bytes_total{direction=out,protocol=tcp,tunnel=20001}"] == 7


def test_closed_label_lists_are_there_from_the_start() -> None:
    view = View()
    samples = scrape(view, per_tunnel=False)
    assert samples["tunnelgate_tunnel_disconnects_total{cause=heartbeat_timeout}"] == 0
    assert samples["tunnelgate_tunnel_disconnects_total{cause=dropped}"] == 0
    assert samples["tunnelgate_registrations_rejected_total{reason=name_taken}"] == 0
    assert samples["tunnelgate_registrations_total{outcome=reconnected}"] == 0
    view.tunnel_counters.disconnect("heartbeat_timeout")
    view.tunnel_counters.reconnected += 1
    samples = scrape(view, per_tunnel=False)
    assert samples["tunnelgate_tunnel_disconnects_total{cause=heartbeat_timeout}"] == 1
    assert samples["tunnelgate_registrations_total{outcome=reconnected}"] == 1


def test_requests_by_status_class_and_duration_buckets() -> None:
    view = View()
    view.counters.request(204, 0.003, 10, 20, False)
    view.counters.request(502, 0.3, 5, 6, True)
    samples = scrape(view, per_tunnel=False)
    assert samples["tunnelgate_requests_total{status=2xx}"] == 1
    assert samples["tunnelgate_requests_total{status=5xx}"] == 1
    assert samples["tunnelgate_requests_aborted_total{}"] == 1
    assert samples["tunnelgate_request_bytes_total{direction=in}"] == 15
    assert samples["tunnelgate_request_duration_seconds_bucket{le=0.005}"] == 1
    assert samples["tunnelgate_request_duration_seconds_bucket{le=0.5}"] == 2
    assert samples["tunnelgate_request_duration_seconds_count{}"] == 2


def test_tcp_and_tls_connections_by_how_they_ended() -> None:
    view = View()
    samples = scrape(view, per_tunnel=False)
    assert samples["tunnelgate_raw_connections_total{ended=client_reset,protocol=tls}"] == 0
    view.raw_counters.connection(False, "closed", 100, 2000)
    view.raw_counters.connection(False, "tunnel_offline", 0, 0)
    view.raw_counters.connection(True, "local_error", 7, 0)
    samples = scrape(view, per_tunnel=False)
    assert samples["tunnelgate_raw_connections_total{ended=closed,protocol=tcp}"] == 1
    assert samples["tunnelgate_raw_connections_total{ended=tunnel_offline,protocol=tcp}"] == 1
    assert samples["tunnelgate_raw_connections_total{ended=local_error,protocol=tls}"] == 1
    assert samples["tunnelgate_raw_bytes_total{direction=out,protocol=tcp}"] == 2000
    assert samples["tunnelgate_raw_bytes_total{direction=in,protocol=tls}"] == 7


def test_cluster_forwarding_counters_only_in_a_cluster() -> None:
    view = View()
    assert not any("cluster" in key for key in scrape(view, per_tunnel=False))
    view.cluster_counters = counters = ClusterCounters()
    counters.forwarded["client"] += 2
    counters.bytes_in, counters.bytes_out = 300, 4000
    counters.fail("node_unreachable")
    counters.refuse("bad_mac")
    counters.adopted = 5
    samples = scrape(view, per_tunnel=False)
    assert samples["tunnelgate_cluster_forwarded_connections_total{ended=client}"] == 2
    assert samples["tunnelgate_cluster_forwarded_connections_total{ended=node_reset}"] == 0
    assert samples["tunnelgate_cluster_forwarded_bytes_total{direction=out}"] == 4000
    assert samples["tunnelgate_cluster_forward_failures_total{reason=node_unreachable}"] == 1
    assert samples["tunnelgate_cluster_links_refused_total{reason=bad_mac}"] == 1
    assert samples["tunnelgate_cluster_adopted_connections_total{}"] == 5
