"""The benchmark's anchor: two relays in C, wrk -> nginx proxy -> nginx proxy -> origin.

Any tunnel is a path of two relays (the gateway and the client) between the public client and
the app. Two nginx reverse proxies, one worker each, on the same cores, are the C floor of such
a path: what a relay costs when it is as cheap as nginx makes it. tunnelgate is reported
against this chain as well as against the origin alone (direct), measured in the same run.

Each hop keeps its connections to the next one alive (``keepalive`` in the upstream block,
HTTP/1.1 upstream with no ``Connection`` header) and buffers nothing (``proxy_buffering off``,
``proxy_request_buffering off``), as a tunnel streams; access logs are off, as for the origin.
The front hop sets ``X-Forwarded-*`` and both pass the public Host on, as tunnelgate does.

With the run's test certificate the front hop terminates TLS (``listen ... ssl``, set up as
tunnelgate's listener is: :func:`bench.origin.nginx_tls`) and talks plain HTTP to the back hop,
as the gateway does to its tunnel: the HTTPS yardstick of the same path.

The smoke run has no nginx (it uses the Python origin): there the hops are two Python TCP
relays (:mod:`bench.relay`), and the report names them as such.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .origin import (
    NGINX_HEAD,
    NOFILE,
    Origin,
    ServerCertificate,
    nginx_tls,
    nginx_workdir,
    run_nginx,
)
from .probe import ClientTls, Target, answers
from .procs import (
    BenchError,
    ManagedProc,
    Processes,
    announced_port,
    children,
    free_port,
    wait_until,
)
from .systems import DOMAIN, SUBDOMAIN

START_TIMEOUT: Final = 10.0
# Idle connections each hop keeps open to the next: more than the sweep's 200 concurrent
# requests, so no request waits for a new upstream connection (nginx's `keepalive`).
UPSTREAM_IDLE: Final = 256

PROXY_CONF: Final = (
    NGINX_HEAD
    + """\
    upstream next_hop {{
        server 127.0.0.1:{upstream} max_fails=0;  # never marked down: a bench, not a pool
        keepalive {idle};
        keepalive_requests 10000000;
        keepalive_timeout 75s;
    }}
    server {{
        listen 127.0.0.1:{port}{ssl} backlog=4096;
        server_name _;
{tls}
        location / {{
            proxy_pass http://next_hop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
{forwarded}
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""
)
FORWARDED: Final = """\
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;"""


@dataclass(frozen=True, slots=True)
class Hop:
    proc: ManagedProc
    port: int
    worker_pid: int  # the process that relays (nginx's one worker, not its master)


def start_nginx_hop(
    procs: Processes,
    workdir: Path,
    name: str,
    upstream: int,
    *,
    front: bool,
    tls: ServerCertificate | None = None,
) -> Hop:
    work = nginx_workdir(workdir, name)
    port = free_port()
    conf = PROXY_CONF.format(
        work=work, nofile=NOFILE, connections=NOFILE // 2, port=port, upstream=upstream,
        idle=UPSTREAM_IDLE, forwarded=FORWARDED if front else "",
        ssl=" ssl" if tls is not None else "", tls=nginx_tls(tls) if tls is not None else "",
    )  # fmt: skip
    proc = run_nginx(procs, name, work, conf, port)
    return Hop(proc, port, children(proc.pid)[0])


def start_python_hop(procs: Processes, name: str, upstream: int) -> Hop:
    argv = [sys.executable, "-m", "bench.relay", "--to", str(upstream)]
    proc = procs.start(name, argv)
    wait_until(f"{name} to listen", lambda: bool(announced_port(proc)), START_TIMEOUT, proc)
    return Hop(proc, announced_port(proc), proc.pid)


class TwoHop:
    """wrk -> front hop -> back hop -> origin; `kind` "nginx", or "python" (smoke run);
    with `tls` (nginx only) the front hop terminates HTTPS for `client_tls`."""

    name = "twohop"

    def __init__(
        self,
        procs: Processes,
        origin: Origin,
        workdir: Path,
        kind: str,
        *,
        tls: ServerCertificate | None = None,
        client_tls: ClientTls | None = None,
    ) -> None:
        self.origin = origin
        if kind == "nginx":
            suffix = "-tls" if tls is not None else ""
            self.back = start_nginx_hop(
                procs, workdir, f"twohop{suffix}-back", origin.port, front=False
            )
            self.front = start_nginx_hop(
                procs, workdir, f"twohop{suffix}-front", self.back.port, front=True, tls=tls
            )
        elif tls is not None:
            raise BenchError("the Python two-hop relays do not terminate TLS")
        elif kind == "python":
            self.back = start_python_hop(procs, "relay-back", origin.port)
            self.front = start_python_hop(procs, "relay-front", self.back.port)
        else:
            raise BenchError(f"unknown two-hop kind {kind!r}")
        self.target = Target(self.front.port, f"{SUBDOMAIN}.{DOMAIN}", tls=client_tls)
        self.restarts = 0

    def ensure_route(self) -> bool:
        for hop in (self.front, self.back):
            if not hop.proc.alive:
                raise BenchError(f"{hop.proc.name} died:\n{hop.proc.log_tail()}")
        return answers(self.target, self.origin.small_path, self.origin.small_body)

    def cpu_pids(self) -> dict[str, int]:
        # The roles of tunnelgate's processes, so the report's rows line up: the front hop
        # stands where the gateway does, the back hop where the client does.
        return {
            "gateway": self.front.worker_pid,
            "client": self.back.worker_pid,
            "origin": self.origin.worker_pid,
        }

    def rss_pids(self) -> dict[str, int]:
        return {"gateway": self.front.worker_pid, "client": self.back.worker_pid}
