"""The origin every system forwards to: nginx, or a pure-Python stand-in for the smoke test.

nginx runs with one worker, its configuration and files generated under the work directory:
a 13-byte body at ``/``, and a 1 MiB and a 100 MiB random file (made once and kept, since
making 100 MiB of random bytes takes a while). The access log is off, so the origin's own cost
per request is as low as nginx makes it. ``run_nginx`` and ``NGINX_HEAD`` also start the
proxies of the nginx two-hop chain (:mod:`bench.twohop`), so every nginx is set up alike.

With the run's test certificate (:mod:`bench.tlscert`) the nginx origin also serves the same
files over HTTPS on a second port (the "direct" HTTPS yardstick), set up as tunnelgate's
listener is (``nginx_tls``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from tunnelgate.gateway.tls_context import GROUP_LISTS, TLS12_CIPHERS

from .procs import (
    ManagedProc,
    Processes,
    announced_port,
    children,
    free_port,
    port_open,
    wait_until,
)

SMALL_BODY: Final = b"Hello, world!"  # 13 bytes, as the issue asks
MID_SIZE: Final = 1024 * 1024
BIG_SIZE: Final = 100 * 1024 * 1024
START_TIMEOUT: Final = 10.0
NOFILE: Final = 65536  # the scale run keeps ~10,000 pooled connections to the origin
NGINX: Final = "/usr/sbin/nginx"  # where Debian puts it; /usr/sbin may be missing from PATH


@dataclass(frozen=True, slots=True)
class Origin:
    """What the systems need to know about a running origin."""

    kind: str  # "nginx" or "python"
    port: int
    small_path: str
    mid_path: str
    big_path: str
    big_size: int
    mid_sha256: str
    small_body: bytes
    proc: ManagedProc
    tls_port: int | None = None  # the same files over HTTPS (nginx with a certificate)

    @property
    def worker_pid(self) -> int:
        """The process that serves requests (nginx's one worker, not its master)."""
        if self.kind == "nginx":
            workers = children(self.proc.pid)
            if workers:
                return workers[0]
        return self.proc.pid


def _write_random(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 1024 * 1024))
            out.write(block)
            left -= len(block)
    tmp.replace(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


# What every nginx of the benchmark shares (the origin and the two-hop proxies): one worker,
# in the foreground, files under its own work directory, no access log, keep-alive connections
# kept as long as wrk keeps them (for the whole run).
NGINX_HEAD: Final = """\
worker_processes 1;
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
"""

NGINX_CONF: Final = (
    NGINX_HEAD
    + """\
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name _;
        root {docroot};
        location = / {{ default_type text/plain; try_files /index.txt =404; }}
    }}
{tls_server}}}
"""
)
TLS_SERVER: Final = """\
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        server_name _;
        root {docroot};
{tls}
        location = / {{ default_type text/plain; try_files /index.txt =404; }}
    }}
"""

# tunnelgate's listener as nginx directives (gateway/tls_context.py): TLS 1.2 and 1.3, the
# same TLS 1.2 suites and groups, the client's cipher order, session tickets and a session
# cache (the benchmark's clients resume nothing: one handshake per connection, then
# keep-alive). TLS 1.3 suites are OpenSSL's defaults on both. No kTLS (nginx's
# `ssl_conf_command Options KTLS`): the gateway encrypts in user space, and so does nginx
# here; records of up to 16 KiB on both (ssl_buffer_size).
NGINX_TLS: Final = """\
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {ciphers};
        ssl_prefer_server_ciphers off;
        ssl_ecdh_curve {groups};
        ssl_session_cache shared:BENCH:4m;
        ssl_session_tickets on;
        ssl_buffer_size 16k;"""


class ServerCertificate(Protocol):
    """What nginx needs of the run's certificate (bench.tlscert.BenchCertificate)."""

    @property
    def chain_file(self) -> Path: ...
    @property
    def key_file(self) -> Path: ...


def nginx_tls(cert: ServerCertificate) -> str:
    """The ssl_* directives of a server block serving `cert` as tunnelgate would."""
    return NGINX_TLS.format(
        chain=cert.chain_file, key=cert.key_file, ciphers=TLS12_CIPHERS, groups=GROUP_LISTS[-1]
    )


def nginx_workdir(workdir: Path, name: str) -> Path:
    """`workdir`/`name` with the temp directories nginx wants, readable by its worker."""
    work = workdir.resolve() / name
    for d in (work, work / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)  # nginx's worker runs as nobody when we are root
    return work


def run_nginx(procs: Processes, name: str, work: Path, conf: str, port: int) -> ManagedProc:
    """nginx with the configuration `conf` (written to `work`/nginx.conf), once it listens
    on `port` and its worker is up; named `name` among the processes."""
    path = work / "nginx.conf"
    path.write_text(conf)
    nginx = shutil.which("nginx") or NGINX
    argv = [nginx, "-p", str(work), "-c", str(path), "-e", str(work / "nginx-error.log")]
    proc = procs.start(name, argv)
    wait_until(f"{name} to listen", lambda: port_open(port), START_TIMEOUT, proc)
    wait_until(f"{name}'s worker", lambda: bool(children(proc.pid)), START_TIMEOUT, proc)
    return proc


def start_nginx(
    procs: Processes,
    workdir: Path,
    big_size: int = BIG_SIZE,
    *,
    tls: ServerCertificate | None = None,
) -> Origin:
    work = nginx_workdir(workdir, "nginx")
    docroot = workdir.resolve() / "docroot"
    docroot.mkdir(parents=True, exist_ok=True)
    docroot.chmod(0o755)
    (docroot / "index.txt").write_bytes(SMALL_BODY)
    _write_random(docroot / "1m.bin", MID_SIZE)
    big_name = "100m.bin" if big_size == BIG_SIZE else f"big-{big_size}.bin"
    _write_random(docroot / big_name, big_size)
    port = free_port()
    tls_port = free_port() if tls is not None else None
    tls_server = ""
    if tls is not None:
        tls_server = TLS_SERVER.format(port=tls_port, docroot=docroot, tls=nginx_tls(tls))
    conf = NGINX_CONF.format(
        work=work, docroot=docroot, port=port, nofile=NOFILE, connections=NOFILE // 2,
        tls_server=tls_server,
    )  # fmt: skip
    proc = run_nginx(procs, "nginx", work, conf, port)
    return Origin(
        kind="nginx",
        port=port,
        small_path="/",
        mid_path="/1m.bin",
        big_path=f"/{big_name}",
        big_size=big_size,
        mid_sha256=_sha256(docroot / "1m.bin"),
        small_body=SMALL_BODY,
        proc=proc,
        tls_port=tls_port,
    )


def start_python_origin(procs: Processes, big_size: int) -> Origin:
    """tunnelgate's own test app (``tunnelgate.testing.local_app``) as the origin: no apt."""
    from tunnelgate.testing.local_app import expected_bytes_sha256

    argv = [sys.executable, "-m", "tunnelgate.testing.local_app", "--port", "0"]
    proc = procs.start("origin", argv)
    wait_until(
        "the Python origin to listen", lambda: bool(announced_port(proc)), START_TIMEOUT, proc
    )
    port = announced_port(proc)
    return Origin(
        kind="python",
        port=port,
        small_path="/",
        mid_path=f"/bytes?n={MID_SIZE}&seed=1",
        big_path=f"/bytes?n={big_size}&seed=2",
        big_size=big_size,
        mid_sha256=expected_bytes_sha256(MID_SIZE, 1),
        small_body=b"hello\n",
        proc=proc,
    )
