"""JWTs and the controller, end to end: real gateway and client processes, the local test
app, and a controller double over real HTTP (tunnelgate.testing.controller) in a thread.

What the client shows is the contract (SPEC "Client"): a tunnel the gateway refuses is one
line on stderr naming the reason, and exit status 2.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tunnelgate.testing.controller import ControllerDouble
from tunnelgate.testing.proc import JsonObject, json_object
from tunnelgate.testing.processes import (
    Proc,
    ProcExited,
    build_request,
    free_port,
    free_port_range,
    http_request,
    start_client,
    start_gateway,
    start_local_app_proc,
    tunnelgate_argv,
    wait_ready_async,
)
from tunnelgate.testing.tokens import SECRET, PrivateKey, make_jwt, new_key, public_jwk

EXIT_REJECTED = 2
EXIT_TIMEOUT = 10.0
"""Seconds a refused client gets to exit."""
ISSUER = "https://auth.test"


@dataclass
class Gateway:
    proc: Proc
    port: int

    @property
    def server(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connect"

    async def get(self, name: str) -> tuple[int, bytes]:
        host = f"{name}.localhost:{self.port}"
        response = await http_request(self.port, build_request("GET", "/", host=host))
        return response.status, response.body

    def events(self, event: str) -> list[JsonObject]:
        found = (json_object(line) for line in self.proc.stderr_lines)
        return [obj for obj in found if obj is not None and obj.get("event") == event]


@contextlib.contextmanager
def running_gateway(*args: str) -> Iterator[Gateway]:
    proc, port = start_gateway(*args)
    try:
        yield Gateway(proc, port)
    finally:
        proc.terminate()


class Clients:
    """Tunnel clients of one test, terminated after it."""

    def __init__(self, app_port: int) -> None:
        self.app_port = app_port
        self.procs: list[Proc] = []

    def http(self, gw: Gateway, name: str, token: str, *args: str) -> Proc:
        return self.start(
            "http", str(self.app_port), "--server", gw.server, "--subdomain", name,
            "--token", token, *args,
        )  # fmt: skip

    def start(self, *args: str) -> Proc:
        proc = start_client(*args)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    proc, port = start_local_app_proc()
    try:
        yield port
    finally:
        proc.terminate()


@pytest.fixture
def clients(app_port: int) -> Iterator[Clients]:
    started = Clients(app_port)
    try:
        yield started
    finally:
        started.close()


async def serves(gw: Gateway, proc: Proc, name: str) -> None:
    """The client's tunnel `name` comes up and reaches the local app."""
    ready = await wait_ready_async(proc)
    assert ready["url"] == f"http://{name}.localhost:{gw.port}", proc.output()
    assert await gw.get(name) == (200, b"hello\n")


async def refused(proc: Proc, *words: str) -> str:
    """`proc` exits 2 after one line on stderr that says each of `words`; no tunnel came up."""
    with contextlib.suppress(ProcExited):
        up = await wait_ready_async(proc, EXIT_TIMEOUT)
        raise AssertionError(f"the tunnel came up: {up}\n{proc.output()}")
    assert await proc.wait_exit_async(EXIT_TIMEOUT) == EXIT_REJECTED, proc.output()
    lines = [line for line in proc.stderr_lines if line.strip()]
    assert len(lines) == 1, proc.output()
    for word in words:
        assert word in lines[0], proc.output()
    return lines[0]


# --- JWT ------------------------------------------------------------------------------------
@dataclass
class JwtSetup:
    gw: Gateway
    keys: dict[str, PrivateKey | str]  # algorithm -> private key (the secret for HS256)
    tcp_ports: tuple[int, int]

    def token(self, algorithm: str, sub: str = "alice", **options: Any) -> str:
        kid = None if algorithm == "HS256" else algorithm
        options.setdefault("iss", ISSUER)
        return make_jwt(self.keys[algorithm], algorithm, sub, kid=kid, **options)


@pytest.fixture(scope="module")
def jwt_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwtSetup]:
    """A gateway taking HS256 (the secret) and ES256/EdDSA (a JWKS) tokens from one issuer."""
    keys: dict[str, PrivateKey | str] = {"HS256": SECRET}
    jwks = []
    for algorithm in ("ES256", "EdDSA"):
        key = new_key(algorithm)
        keys[algorithm] = key
        jwks.append(public_jwk(key, kid=algorithm))
    path: Path = tmp_path_factory.mktemp("jwt") / "jwks.json"
    path.write_text(json.dumps({"keys": jwks}))
    low, high = free_port_range(2)
    args = [
        "--jwt-secret", SECRET, "--jwt-public-key", str(path), "--jwt-issuer", ISSUER,
        "--tcp-ports", f"{low}-{high}",
    ]  # fmt: skip
    with running_gateway(*args) as gw:
        yield JwtSetup(gw, keys, (low, high))


@pytest.mark.parametrize("algorithm", ["HS256", "ES256", "EdDSA"])
async def test_a_jwt_authenticated_tunnel(
    jwt_setup: JwtSetup, clients: Clients, algorithm: str
) -> None:
    name = f"jwt-{algorithm.lower()}"
    token = jwt_setup.token(algorithm, claim={"names": ["jwt-*"]})
    await serves(jwt_setup.gw, clients.http(jwt_setup.gw, name, token), name)


async def test_a_name_outside_the_claim_exits_2_with_the_reason(
    jwt_setup: JwtSetup, clients: Clients
) -> None:
    token = jwt_setup.token("ES256", claim={"names": ["web", "team-*"]})
    proc = clients.http(jwt_setup.gw, "blog", token)
    line = await refused(proc, "not_authorized", "'blog' is not a name this token may take")
    assert "web, team-*" in line
    assert (await jwt_setup.gw.get("blog"))[0] == 404


async def test_a_port_outside_the_claim_exits_2(jwt_setup: JwtSetup, clients: Clients) -> None:
    low, high = jwt_setup.tcp_ports
    token = jwt_setup.token("HS256", claim={"ports": [high]})
    server = jwt_setup.gw.server
    proc = clients.start(
        "tcp", "5432", "--server", server, "--remote-port", str(low), "--token", token
    )
    await refused(proc, "not_authorized", f"port {low} is not one this token may take")
    allowed = clients.start(
        "tcp", "5432", "--server", server, "--remote-port", str(high), "--token", token
    )
    ready = await wait_ready_async(allowed)
    assert str(ready["url"]).endswith(f":{high}"), allowed.output()


@pytest.mark.parametrize(
    "options",
    [{"expires_in": -3600}, {"iss": "https://evil.test"}],
    ids=["expired", "wrong-issuer"],
)
async def test_a_jwt_that_does_not_check_out_is_refused(
    jwt_setup: JwtSetup, clients: Clients, options: dict[str, Any]
) -> None:
    token = jwt_setup.token("EdDSA", **options)
    await refused(clients.http(jwt_setup.gw, "late", token), "auth_failed")
    assert any(event.get("reason") for event in jwt_setup.gw.events("jwt_refused"))


# --- the controller -------------------------------------------------------------------------------
@dataclass
class ControllerSetup:
    gw: Gateway
    controller: ControllerDouble


@pytest.fixture(scope="module")
def controller_setup() -> Iterator[ControllerSetup]:
    with ControllerDouble() as controller:
        args = ["--controller", controller.url, "--controller-timeout", "1"]
        with running_gateway(*args) as gw:
            yield ControllerSetup(gw, controller)


async def test_the_controller_allows_and_names_the_account(
    controller_setup: ControllerSetup, clients: Clients
) -> None:
    gw, controller = controller_setup.gw, controller_setup.controller
    controller.allow("tok-carol", "carol")
    await serves(gw, clients.http(gw, "carol-site", "tok-carol"), "carol-site")
    (asked,) = [r for r in controller.requests if r["token"] == "tok-carol"]
    assert asked == {
        "token": "tok-carol",
        "protocol": "http",
        "name": "carol-site",
        "client_addr": "127.0.0.1",
    }
    allowed = [e for e in gw.events("controller_allowed") if e.get("name") == "carol-site"]
    assert allowed[0]["account"] == "carol"


async def test_the_controller_denies_with_its_reason(
    controller_setup: ControllerSetup, clients: Clients
) -> None:
    gw, controller = controller_setup.gw, controller_setup.controller
    controller.deny("tok-dave", "account suspended")
    await refused(clients.http(gw, "dave-site", "tok-dave"), "not_authorized", "account suspended")
    controller.answer("tok-erin", 403, {"reason": "over quota"})
    await refused(clients.http(gw, "erin-site", "tok-erin"), "not_authorized", "over quota")


async def test_names_reserved_for_an_account_are_refused_to_another(
    controller_setup: ControllerSetup, clients: Clients
) -> None:
    gw, controller = controller_setup.gw, controller_setup.controller
    controller.allow("tok-acme", "acme", names=["shop"])
    controller.allow("tok-frank", "frank")  # a lax controller would let frank take it
    await serves(gw, clients.http(gw, "acme-home", "tok-acme"), "acme-home")
    line = await refused(clients.http(gw, "shop", "tok-frank"), "name_reserved")
    assert "'shop' is reserved for another account" in line
    await serves(gw, clients.http(gw, "shop", "tok-acme"), "shop")


async def test_a_failing_controller_fails_closed(
    controller_setup: ControllerSetup, clients: Clients
) -> None:
    gw, controller = controller_setup.gw, controller_setup.controller
    controller.answer("tok-gina", 500, {"error": "boom"})
    await refused(clients.http(gw, "gina-site", "tok-gina"), "controller_unavailable")
    controller.stall("tok-hank", 5.0)  # past --controller-timeout 1
    await refused(clients.http(gw, "hank-site", "tok-hank"), "controller_unavailable")


async def test_the_controller_down_is_controller_unavailable_but_local_tokens_work(
    clients: Clients,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with running_gateway("--token", "static-token", "--controller", nobody) as gw:
        line = await refused(clients.http(gw, "ivan-site", "tok-ivan"), "controller_unavailable")
        assert "controller unavailable" in line
        # A token a local method knows is never sent to the controller.
        await serves(gw, clients.http(gw, "static-site", "static-token"), "static-site")


def test_an_unusable_jwt_key_stops_start_up(tmp_path: Path) -> None:
    weak = tmp_path / "weak.pem"
    weak.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    for path, problem in [(tmp_path / "missing.pem", "cannot read"), (weak, "not a PEM public")]:
        argv = ["server", "--http", f"127.0.0.1:{free_port()}", "--jwt-public-key", str(path)]
        with Proc(tunnelgate_argv(*argv)) as proc:
            assert proc.wait_exit(EXIT_TIMEOUT) == 2, proc.output()
            (line,) = [line for line in proc.stderr_lines if line.strip()]
            assert line.startswith("tunnelgate: --jwt-public-key: "), line
            assert problem in line, line
