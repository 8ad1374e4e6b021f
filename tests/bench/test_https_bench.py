"""The benchmark's HTTPS pieces, without nginx or wrk: the run's test certificate as the
gateway reads it, the clients' TLS (probe, download), wrk's command line for an HTTPS
target, the HTTPS table and its target, and the TLS scan's report.

The benchmark is not part of the package: it is loaded from the repository by name
(``importlib``), as ``python -m bench.run`` loads it, and type-checked only where it is used.
"""

from __future__ import annotations

import hashlib
import importlib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tunnelgate.gateway.certfile import read_certificate
from tunnelgate.gateway.tls_context import build_server_context

ROOT = Path(__file__).resolve().parents[2]
HOST = "bench.localhost"
BODY = bytes(range(256)) * 1024  # 256 KiB: several TLS records


def bench(name: str) -> ModuleType:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the repository's bench/, ahead of tests/bench
    return importlib.import_module(f"bench.{name}")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return bench("tlscert").make_certificate(tmp_path_factory.mktemp("work"), "localhost", HOST)


def _context(cert: Any) -> ssl.SSLContext:
    return build_server_context(
        cert.chain_file.read_bytes(), cert.key_file.read_bytes(),
        chain_path=cert.chain_file, key_path=cert.key_file,
    )  # fmt: skip


@contextmanager
def https_server(cert: Any, response: bytes) -> Iterator[int]:
    """One HTTPS connection served on a thread with the gateway's own server context:
    the handshake, then `response` to the first request head."""
    listener = socket.create_server(("127.0.0.1", 0))
    context = _context(cert)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                tls.sendall(response)
        except OSError:  # ssl.SSLError too: a client that refused the certificate
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def test_the_run_certificate_is_one_the_gateway_serves_without_warnings(cert: Any) -> None:
    checked = read_certificate(cert.chain_file, cert.key_file, "localhost", datetime.now(UTC))

    assert checked.info.warnings == ()
    assert checked.info.names == ("localhost", "*.localhost", HOST)
    assert checked.info.fingerprint == cert.fingerprint
    assert cert.key_file.stat().st_mode & 0o077 == 0


def test_the_probe_verifies_the_name_and_reports_tls_13(cert: Any) -> None:
    probe = bench("probe")
    with https_server(cert, _ok(b"")) as port:
        found = probe.negotiated(probe.Target(port, HOST, tls=cert.client(HOST)))

    assert found["version"] == "TLSv1.3"
    assert found["cipher"] in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256")
    assert found["alpn"] == "http/1.1"


def test_a_name_the_certificate_does_not_hold_is_refused(cert: Any) -> None:
    probe = bench("probe")
    with https_server(cert, _ok(b"")) as port:
        target = probe.Target(port, "other.localhost", tls=cert.client("other.localhost"))
        with pytest.raises(ssl.SSLCertVerificationError):
            probe.negotiated(target)


def test_a_download_over_tls_is_whole(cert: Any) -> None:
    probe, download = bench("probe"), bench("download")
    with https_server(cert, _ok(BODY)) as port:
        target = probe.Target(port, HOST, tls=cert.client(HOST))
        result = download.download(target, "/big", digest=True, limit=10.0)

    assert result.errors == 0
    assert result.bytes == len(BODY)
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()


WRK_OUTPUT = """\
Running 1s test @ https://bench.localhost:4443/
  Latency Distribution
     50%  1.00ms
     99%  2.00ms
  1000 requests in 1.00s, 100.00KB read
"""


def test_wrk_gets_the_name_in_the_url_and_the_address_from_its_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loadgen, probe = bench("loadgen"), bench("probe")
    calls: list[tuple[list[str], dict[str, str] | None]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((argv, kwargs.get("env")))
        return subprocess.CompletedProcess(argv, 0, WRK_OUTPUT, "")

    monkeypatch.setattr(loadgen.shutil, "which", lambda name: "/usr/bin/wrk")
    monkeypatch.setattr(loadgen.subprocess, "run", run)
    client = probe.ClientTls(Path("ca.pem"), HOST)
    result = loadgen.Wrk().run(probe.Target(4443, HOST, tls=client), "/", 50, 1.0)
    loadgen.Wrk().run(probe.Target(8080, HOST), "/", 50, 1.0)

    (https_argv, https_env), (http_argv, http_env) = calls
    assert result.requests == 1000
    assert https_argv[-1] == "https://bench.localhost:4443/"
    script = Path(https_argv[https_argv.index("-s") + 1])
    assert "wrk.resolve" in script.read_text()
    assert https_env is not None
    assert https_env["WRK_CONNECT_TO"] == "127.0.0.1"
    assert http_argv[-1] == "http://127.0.0.1:8080/"
    assert "-s" not in http_argv
    assert http_env is None


def _system(rps: float, mb_per_s: float, tls: bool = True) -> dict[str, Any]:
    point = {"connections": 50, "requests": 1000, "rps": rps, "p50_ms": 1.0, "p99_ms": 2.0,
             "errors": 0, "cpu_us_per_request": {"gateway": 10.0, "client": 5.0}}  # fmt: skip
    bulk = {"parallel": 1, "bytes": 100, "seconds": 1.0, "mb_per_s": mb_per_s,
            "truncated": False, "errors": 0, "cpu_ms_per_mib": {"gateway": 1.5}}  # fmt: skip
    found: dict[str, Any] = {"sweep": [point], "bulk_single": bulk, "integrity": {"ok": True}}
    if tls:
        found["tls"] = {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}
    return found


def _result() -> dict[str, Any]:
    return {
        "config": {"https_systems": ["direct", "twohop", "tunnelgate"]},
        "systems": {"tunnelgate": _system(20_000, 600, tls=False)},
        "https": {
            "certificate": {"key": "ECDSA P-256", "names": ["localhost"]},
            "systems": {
                "direct": _system(50_000, 1000),
                "twohop": _system(25_000, 400),
                "tunnelgate": _system(10_000, 360),
            },
        },
    }


def test_the_https_table_gives_ratios_to_both_yardsticks_and_to_plain_http() -> None:
    report = bench("report")
    table = report.https_table(_result())
    head, _, *rows = table.splitlines()
    by_label = {row.split(" | ")[0].lstrip("| "): row.split(" | ") for row in rows}

    assert head.endswith(
        "| tunnelgate / direct | tunnelgate / two-hop | two-hop / direct | "
        "tunnelgate HTTPS / HTTP (CPU rows) |"
    )
    small = by_label["small GET req/s, 50 connections"]
    assert small[4:8] == ["0.20", "0.40", "0.50", " |"]  # throughput: not across phases
    cpu = by_label["CPU per MiB of the download, gateway / front end (ms)"]
    assert cpu[-1] == "1.00 |"
    assert "TLSv1.3 TLS_AES_256_GCM_SHA384" in by_label["TLS negotiated with the download client"]


def test_the_tls_bulk_target_is_against_the_nginx_chain_with_direct_for_reference() -> None:
    report = bench("report")
    target, reference = report.https_targets(_result())

    assert (target.value, target.met) == ("0.90", True)  # 360 / 400
    assert (reference.value, reference.met) == ("0.36", None)  # 360 / 1000, not judged
    over_http = report.https_ratios(_result())["tunnelgate https/http"]
    assert over_http["CPU per request, gateway / front end (µs)"] == pytest.approx(1.0)
    assert "one 100 MiB download (MB/s)" not in over_http


def test_validation_names_what_an_https_system_lacks() -> None:
    report = bench("report")
    result = _result()
    del result["https"]["systems"]["twohop"]
    del result["https"]["systems"]["tunnelgate"]["tls"]

    assert report._validate_https(result) == [
        "no HTTPS results for twohop",
        "tunnelgate (HTTPS): no negotiated TLS version",
    ]


def test_the_scan_report_puts_flagged_findings_first_worst_first() -> None:
    scan = bench("tls_scan")
    findings = [
        {"id": "HSTS", "severity": "LOW", "finding": "not offered"},
        {"id": "TLS1_3", "severity": "OK", "finding": "offered with final"},
        {"id": "cert_chain_of_trust", "severity": "CRITICAL", "finding": "failed (self signed)."},
    ]
    one = {"name": "self-signed", "certificate": "ECDSA", "options": ["-p"], "seconds": 1.0}
    result = {"date": "today", "versions": {}, "scans": [{**one, "findings": findings}]}

    assert [f["id"] for _, f in scan.flagged(result)] == ["cert_chain_of_trust", "HSTS"]
    flagged = scan.markdown(result).split("## Every finding")[0]
    assert "| self-signed | CRITICAL | cert_chain_of_trust | failed (self signed). |" in flagged
    assert "TLS1_3" not in flagged
