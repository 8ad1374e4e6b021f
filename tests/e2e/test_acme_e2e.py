"""A certificate from a real ACME CA (Debian's pebble, started here) served for a tunnel
host: the gateway answers pebble's HTTP-01 challenge on its own HTTP listener, then serves
the issued certificate on its HTTPS listener, where a client trusting only pebble's root
verifies it."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from pathlib import Path

from tunnelgate.testing.pebble import run_pebble
from tunnelgate.testing.proc import Proc, json_object
from tunnelgate.testing.processes import (
    build_request,
    free_port,
    http_request,
    start_client,
    start_local_app_proc,
    wait_ready_async,
)

DOMAIN = "tunnel.test"
ISSUE_TIMEOUT = 30.0  # seconds: pebble issues in well under one with VA sleeps off


async def _wait_event(proc: Proc, event: str, timeout: float) -> dict[str, object]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        for line in proc.stderr_lines:
            found = json_object(line)
            if found is not None and found.get("event") == event:
                return found
        assert proc.returncode is None, proc.output()
        assert time.monotonic() < deadline, f"no {event}\n{proc.output()}"
        await asyncio.sleep(0.05)  # poll with a deadline: the log is another process's


async def test_a_pebble_issued_certificate_is_served_for_a_tunnel_host(tmp_path: Path) -> None:
    with run_pebble(tmp_path / "pebble") as pebble:
        https_port = free_port()
        argv = [
            sys.executable, "-m", "tunnelgate", "server", "--domain", DOMAIN,
            "--http", f"127.0.0.1:{pebble.http_port}",  # where pebble checks HTTP-01
            "--https", f"127.0.0.1:{https_port}",
            "--acme-email", "ops@tunnel.test", "--acme-directory", pebble.directory,
            "--state-dir", str(tmp_path / "state"), "--log-format", "json",
        ]  # fmt: skip
        # Pebble's directory speaks TLS with its own test CA: requests is told so.
        gateway = Proc(argv, env={"REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)})
        app, app_port = start_local_app_proc()
        try:
            await _wait_event(gateway, "listening", 10)
            server = f"ws://127.0.0.1:{pebble.http_port}/connect"
            client = start_client("http", str(app_port), "--server", server, "--subdomain", "acme1")
            try:
                await wait_ready_async(client)
                issued = await _wait_event(gateway, "acme_certificate_issued", ISSUE_TIMEOUT)
                assert issued["host"] == f"acme1.{DOMAIN}"
                trust = ssl.create_default_context(cadata=pebble.issuing_root().decode())
                host = f"acme1.{DOMAIN}"
                raw = build_request("GET", "/", host=f"{host}:{https_port}")
                response = await http_request(https_port, raw, tls=trust, server_name=host)
                assert response.status == 200
                assert response.body == b"hello\n"
            finally:
                client.terminate()
        finally:
            app.terminate()
            gateway.terminate()
