"""The admin API and /metrics end to end: a real gateway with --admin, a real tunnel."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tunnelgate.testing.metrics import scrape
from tunnelgate.testing.processes import (
    Proc,
    build_request,
    free_port,
    http_request,
    start_client,
    start_gateway,
    start_local_app_proc,
    wait_ready_async,
)

TOKEN = "adm1n-secret"


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    proc, port = start_local_app_proc()
    try:
        yield port
    finally:
        proc.terminate()


class Admin:
    def __init__(self, port: int, token: str | None) -> None:
        self.port = port
        self.token = token

    async def call(self, method: str, target: str, token: str | None = None) -> tuple[int, bytes]:
        headers = [("Authorization", f"Bearer {token or self.token}")] if self.token else []
        raw = build_request(method, target, host=f"127.0.0.1:{self.port}", headers=headers)
        response = await http_request(self.port, raw)
        return response.status, response.body

    async def metrics(self) -> dict[str, float]:
        return await scrape(self.port, self.token)


@pytest.fixture
def gateway() -> Iterator[tuple[Proc, int, Admin]]:
    admin_port = free_port()
    proc, port = start_gateway("--admin", f"127.0.0.1:{admin_port}", "--admin-token", TOKEN)
    try:
        yield proc, port, Admin(admin_port, TOKEN)
    finally:
        proc.terminate()


async def test_tunnels_listed_metrics_move_and_delete_closes(
    gateway: tuple[Proc, int, Admin], app_port: int
) -> None:
    _, port, admin = gateway
    client = start_client(
        "http", str(app_port), "--server", f"ws://127.0.0.1:{port}/connect", "--subdomain", "adm"
    )
    try:
        await wait_ready_async(client)
        assert (await admin.call("GET", "/healthz"))[0] == 200
        before = await admin.metrics()
        for _ in range(5):
            raw = build_request("GET", "/", host=f"adm.localhost:{port}")
            assert (await http_request(port, raw)).status == 200
        after = await admin.metrics()
        assert (
            after["tunnelgate_requests_total{status=2xx}"]
            - before.get("tunnelgate_requests_total{status=2xx}", 0)
            == 5
        )
        assert after["tunnelgate_tunnels_active{protocol=http}"] == 1
        assert after["tunnelgate_request_duration_seconds_count{}"] >= 5
        assert after["tunnelgate_request_bytes_total{direction=out}"] > 0
        status, body = await admin.call("GET", "/api/tunnels")
        assert status == 200
        (tunnel,) = json.loads(body)
        assert tunnel["name"] == "adm"
        assert tunnel["protocol"] == "http"
        assert tunnel["url"] == f"http://adm.localhost:{port}"
        assert tunnel["account"] == "anonymous"
        assert tunnel["requests"] == 5
        assert tunnel["bytes_out"] > 0
        assert tunnel["client_addr"].startswith("127.0.0.1:")
        status, body = await admin.call("DELETE", "/api/tunnels/adm")
        assert (status, json.loads(body)) == (200, {"closed": "adm"})
        assert await client.wait_exit_async(10) == 1  # told why; does not reconnect
        assert any("closed by an operator" in line for line in client.stderr_lines)
        raw = build_request("GET", "/", host=f"adm.localhost:{port}")
        assert (await http_request(port, raw)).status == 404  # the name is free at once
        assert (await admin.call("DELETE", "/api/tunnels/adm"))[0] == 404
    finally:
        client.terminate()


async def test_the_admin_token_is_required_when_set(gateway: tuple[Proc, int, Admin]) -> None:
    _, _, admin = gateway
    assert (await admin.call("GET", "/api/tunnels", token="wrong"))[0] == 401
    no_token = Admin(admin.port, None)
    assert (await no_token.call("GET", "/metrics"))[0] == 401
    assert (await admin.call("GET", "/metrics"))[0] == 200
