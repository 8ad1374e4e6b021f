"""A tunnel whose network silently drops every packet (issue 11, item 7).

No FIN, no RST, no ICMP: only the heartbeat can tell. The gateway, the client and the local
app run in a network namespace of their own; the client reaches the gateway at 127.0.0.2 and
public requests come in at 127.0.0.1, so an nftables rule dropping 127.0.0.2:GATEWAY_PORT both
ways blackholes the tunnel and nothing else. Then (SPEC: "Heartbeats in both directions: a
dead peer is dropped, on both sides"; a lost tunnel answers 502):

- both sides log the loss, with the heartbeat as the cause, within interval + timeout (the
  bound that matters: a timer ticks once per interval and drops a peer silent for more than
  the timeout) plus DETECT_SLACK;
- a public request sent just as the network goes silent gets 502 once the gateway drops the
  tunnel, so within the same bound, far below --response-timeout (a hang would end in a 504
  after it, or in the requester's own time-out);
- a request after the drop gets 502 at once (the name is held for the reconnect grace);
- once the rule is gone the client reconnects and the name serves again.

Needs root for the namespace (``ip netns``, ``nft``). Where there is none, the test fails and
says so, unless TUNNELGATE_NO_NETNS=1 asks to skip it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tunnelgate.testing.netns import NO_NETNS_ENV, NetNamespace, NetnsError, netns_problem
from tunnelgate.testing.proc import JsonObject, Proc, Stream, json_object
from tunnelgate.testing.processes import (
    start_client,
    start_gateway_at,
    start_local_app_proc,
    wait_ready,
)

HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TIMEOUT = 3.0
DETECT_SLACK = 1.5
"""Seconds on top of interval + timeout: the event loop's turn, the log line's trip through a
pipe and a reader thread, a machine shared with other test runs (2 cores)."""
DETECT_BOUND = HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + DETECT_SLACK
RESPONSE_TIMEOUT = 30.0
"""The gateway's --response-timeout: a request that hung on the dead tunnel would get its 504
only after this, so a 502 within DETECT_BOUND (5.5 s) cannot be a time-out in disguise."""
IMMEDIATE_502 = 1.0
"""Seconds a request may take once the gateway knows the tunnel is gone (measured inside the
requester, from its connect: no process start-up counted)."""
RECONNECT_TIMEOUT = 45.0
"""Seconds for the client to be back after the rule is removed: its connect attempt made
during the blackhole waits for SYN retransmissions or its 10 s CONNECT_TIMEOUT, then a back-off
of at most a few seconds (retry n waits up to 0.5 s x 2^(n-1))."""
ENDLESS = 100 * 2**30
"""Bytes of the transfer in flight: more than it can move before the blackhole ends it."""
GATEWAY_PORT = 8080  # the namespace is new: every port in it is free
TUNNEL_ADDRESS = "127.0.0.2"
TABLE = "tg_blackhole"
BLACKHOLE = f"""
table inet {TABLE} {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip daddr {TUNNEL_ADDRESS} tcp dport {GATEWAY_PORT} drop
        ip saddr {TUNNEL_ADDRESS} tcp sport {GATEWAY_PORT} drop
    }}
}}
"""
HEARTBEAT = (
    "--heartbeat-interval",
    str(HEARTBEAT_INTERVAL),
    "--heartbeat-timeout",
    str(HEARTBEAT_TIMEOUT),
)


@pytest.fixture
def netns() -> Iterator[NetNamespace]:
    """A new network namespace, deleted at the end whatever happened."""
    ns = NetNamespace()
    problem = netns_problem()
    if problem is None:
        try:
            ns.__enter__()
        except NetnsError as exc:
            problem = str(exc)
    if problem is not None:
        if os.environ.get(NO_NETNS_ENV) == "1":
            pytest.skip(f"no network namespace ({NO_NETNS_ENV}=1): {problem}")
        pytest.fail(
            f"this test needs a network namespace, and cannot make one: {problem}. "
            f"Run it as root, or set {NO_NETNS_ENV}=1 to skip it."
        )
    try:
        yield ns
    finally:
        ns.delete()


def start_requester(ns: NetNamespace, host: str, *options: str) -> Proc:
    argv = [sys.executable, "-m", "tunnelgate.testing.requester", "--port", str(GATEWAY_PORT)]
    timeout = str(RESPONSE_TIMEOUT + 10)
    return Proc([*ns.prefix, *argv, "--host", host, "--timeout", timeout, *options])


def outcome(requester: Proc, timeout: float) -> JsonObject:
    """The requester's one JSON line, within ``timeout`` seconds."""
    with requester:
        return requester.wait_for_json(lambda obj: "elapsed" in obj, timeout)


def request(ns: NetNamespace, host: str) -> JsonObject:
    return outcome(start_requester(ns, host), RESPONSE_TIMEOUT + 20)


def is_event(name: str) -> Callable[[str], bool]:
    def match(line: str) -> bool:
        obj = json_object(line)
        return obj is not None and obj.get("event") == name

    return match


def wait_event(
    proc: Proc, name: str, timeout: float, after: int, stream: Stream = "stdout"
) -> tuple[JsonObject, float]:
    """``proc``'s first ``name`` event from line ``after`` on, and when it was printed."""
    line = proc.wait_for_line(is_event(name), timeout, after=after, stream=stream)
    return json.loads(line), proc.arrived_at(line, after=after, stream=stream)


def start_traffic(ns: NetNamespace, host: str, traffic: str) -> Proc | None:
    """A transfer through the tunnel, under way once this returns (None: ``idle``)."""
    if traffic == "idle":
        return None
    if traffic == "download":
        proc = start_requester(ns, host, "--stream", "--path", f"/bytes?n={ENDLESS}")
        assert proc.wait_for_json(lambda obj: obj["event"] == "head")["status"] == 200
    else:
        proc = start_requester(ns, host, "--upload", str(ENDLESS), "--path", "/upload")
        proc.wait_for_json(lambda obj: obj["event"] == "sending")
    return proc


def check_traffic_cut(proc: Proc, traffic: str, blackholed: float) -> None:
    """The transfer ended short, within DETECT_BOUND of the blackhole: a download cut
    (never complete), an upload answered 502 or its connection cut."""
    with proc:
        cut, cut_at = wait_event(proc, "ended", 30, 0)
    print(f"blackhole: the {traffic} ended after {cut_at - blackholed:.2f} s: {cut}")
    assert 0 < cut["bytes"] < ENDLESS, cut
    assert cut_at - blackholed <= DETECT_BOUND, (cut_at - blackholed, cut)
    if traffic == "upload":
        assert cut["status"] == 502 or cut["error"] is not None, cut


@pytest.mark.parametrize(
    "traffic",
    [
        "idle",
        # A transfer runs through the tunnel as it goes silent: the sender's socket buffer
        # fills and its writes pause (the client's for a download, the gateway's for an
        # upload), which must not keep either side from seeing it.
        "download",
        "upload",
    ],
)
def test_blackholed_tunnel_is_dropped_on_both_sides_and_comes_back(
    netns: NetNamespace, traffic: str
) -> None:
    app, app_port = start_local_app_proc(prefix=netns.prefix)
    gateway_args = [*HEARTBEAT, "--response-timeout", str(RESPONSE_TIMEOUT)]
    gateway_args += ["--reconnect-grace", "300"]  # the name waits for the client throughout
    gateway_args += ["--allow-anonymous"]  # 0.0.0.0, but in a namespace with loopback only
    server = f"ws://{TUNNEL_ADDRESS}:{GATEWAY_PORT}/connect"
    client_args = ["http", str(app_port), "--subdomain", "blackhole", "--server", server]
    with (
        app,
        start_gateway_at(f"0.0.0.0:{GATEWAY_PORT}", *gateway_args, prefix=netns.prefix) as gateway,
        start_client(*client_args, *HEARTBEAT, prefix=netns.prefix) as client,
    ):
        host = str(wait_ready(client)["url"]).removeprefix("http://")
        assert request(netns, host)["status"] == 200
        transfer = start_traffic(netns, host, traffic)
        gateway_mark, client_mark = len(gateway.stderr_lines), len(client.stdout_lines)

        blackholed = time.monotonic()  # before the rule: the delays below are upper bounds
        netns.nft(BLACKHOLE)
        during = start_requester(netns, host)  # sent into the silence

        dropped, gateway_at = wait_event(gateway, "tunnel_disconnected", 30, gateway_mark, "stderr")
        lost, client_at = wait_event(client, "reconnecting", 30, client_mark)
        assert "heartbeat timeout" in dropped["reason"], dropped
        assert dropped["clean"] is False, dropped
        assert "heartbeat timeout" in lost["reason"], lost
        assert gateway_at - blackholed <= DETECT_BOUND, (gateway_at - blackholed, dropped)
        assert client_at - blackholed <= DETECT_BOUND, (client_at - blackholed, lost)

        answered = outcome(during, RESPONSE_TIMEOUT + 20)
        print(  # shown with -s, and with a failure
            f"blackhole: gateway dropped the tunnel after {gateway_at - blackholed:.2f} s, the "
            f"client after {client_at - blackholed:.2f} s, the request in flight got "
            f"{answered.get('status')} after {answered['elapsed']:.2f} s (bound {DETECT_BOUND} s)"
        )
        assert answered["status"] == 502, answered
        assert answered["elapsed"] <= DETECT_BOUND, answered
        if transfer is not None:
            check_traffic_cut(transfer, traffic, blackholed)
        after_drop = request(netns, host)
        assert (after_drop["status"], after_drop["error"]) == (502, "tunnel_offline"), after_drop
        assert after_drop["elapsed"] <= IMMEDIATE_502, after_drop

        client_mark = len(client.stdout_lines)
        netns.run("nft", "delete", "table", "inet", TABLE)
        back = client.wait_for_json(
            lambda obj: obj.get("event") == "tunnel_ready", RECONNECT_TIMEOUT, after=client_mark
        )
        assert back["url"] == f"http://{host}", back
        wait_event(gateway, "tunnel_reconnected", 10, gateway_mark, "stderr")
        assert request(netns, host)["status"] == 200
