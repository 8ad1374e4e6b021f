"""`tunnelgate server --workers 2`: real processes on one public port (issue 12 item 4).

Both workers accept (the kernel spreads connections among their SO_REUSEPORT listeners),
SIGTERM drains both and the supervisor exits 0, a killed worker is started again, a worker
that keeps crashing stops the lot, one that cannot start stops the lot at once, and the
workers die with the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import json_line, wait_log_line

from tunnelgate.testing.proc import JsonObject
from tunnelgate.testing.processes import (
    Proc,
    build_request,
    free_port,
    free_port_range,
    http_request,
    open_connection,
    poll_until_async,
    start_client,
    start_local_app_proc,
    tunnelgate_argv,
    wait_ready,
)
from tunnelgate.testing.redis_server import RedisServer
from tunnelgate.testing.tcp_app import start_tcp_app
from tunnelgate.testing.workers import (
    CLUSTER_SECRET,
    events,
    pid_alive,
    start_workers_gateway,
    wait_workers_ready,
    worker_pids,
)

CONNECTIONS = 40  # all on one worker by chance: 2 * 2**-40
HELD = 8  # none on the tunnel's worker by chance: 2**-8
POLL = 0.05  # seconds between polls (each wait has its deadline)
EXIT_TIMEOUT = 15.0


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[tuple[Proc, int]]:
    proc, port = start_workers_gateway(2, redis_server.url)
    try:
        yield proc, port
    finally:
        proc.terminate()


def _request_lines(proc: Proc, prefix: str) -> list[dict[str, object]]:
    found = (json_line(line) for line in proc.stderr_lines)
    return [
        o
        for o in found
        if o is not None and o.get("event") == "request" and str(o["path"]).startswith(prefix)
    ]


async def _get_each(port: int, prefix: str, count: int) -> None:
    for i in range(count):  # a new connection each: the kernel picks a listener per connection
        raw = build_request("GET", f"{prefix}{i}", host=f"127.0.0.1:{port}")
        response = await http_request(port, raw)
        assert response.status == 404, response


async def test_both_workers_accept_on_the_one_port(workers: tuple[Proc, int]) -> None:
    proc, port = workers
    pids = worker_pids(proc)
    assert len(set(pids.values())) == 2
    assert proc.pid not in pids.values()  # the supervisor serves nothing itself
    listening = [o for o in events(proc, "listening") if o.get("listener") == "http"]
    assert sorted(o["worker"] for o in listening) == [0, 1]
    assert {o["addr"] for o in listening} == {f"127.0.0.1:{port}"}

    await _get_each(port, "/spread-", CONNECTIONS)
    await poll_until_async(lambda: len(_request_lines(proc, "/spread-")) == CONNECTIONS)
    by_worker = [o["worker"] for o in _request_lines(proc, "/spread-")]
    assert set(by_worker) == {0, 1}, by_worker


async def test_sigterm_drains_both_workers_and_exits_0(workers: tuple[Proc, int]) -> None:
    proc, port = workers
    pids = worker_pids(proc)
    proc.signal(signal.SIGTERM)
    assert await proc.wait_exit_async(EXIT_TIMEOUT) == 0, proc.output()
    assert sorted(o["worker"] for o in events(proc, "drain_finished")) == [0, 1]
    exited = {o["worker"]: o["code"] for o in events(proc, "worker_exited")}
    assert exited == {0: 0, 1: 0}
    assert not any(pid_alive(pid) for pid in pids.values())
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass  # nobody listens any more


async def test_a_killed_worker_is_started_again(workers: tuple[Proc, int]) -> None:
    proc, port = workers
    before = worker_pids(proc)
    mark = len(proc.stderr_lines)
    os.kill(before[1], signal.SIGKILL)
    wait_workers_ready(proc, [1], after=mark)
    after = worker_pids(proc)
    assert after[0] == before[0]
    assert after[1] != before[1]
    assert [(o["worker"], o["code"]) for o in events(proc, "worker_exited", mark)] == [
        (1, -signal.SIGKILL)
    ]
    # Both serve again.
    await _get_each(port, "/again-", CONNECTIONS)
    await poll_until_async(lambda: len(_request_lines(proc, "/again-")) == CONNECTIONS)
    assert {o["worker"] for o in _request_lines(proc, "/again-")} == {0, 1}


def _reloaded_by(index: int) -> Callable[[JsonObject], bool]:
    return lambda obj: obj.get("event") == "tokens_reloaded" and obj.get("worker") == index


async def _app_requests(app_port: int) -> int:
    response = await http_request(app_port, build_request("GET", "/stats"))
    return int(response.json()["requests"])


async def test_a_second_sigterm_cuts_the_drain_short(redis_server: RedisServer) -> None:
    app, app_port = start_local_app_proc()
    proc, port = start_workers_gateway(2, redis_server.url)
    server = f"ws://127.0.0.1:{port}/connect"
    client = start_client("http", str(app_port), "--subdomain", "held", "--server", server)
    with app, proc, client:
        wait_ready(client)
        # Held at the app until a release that never comes, on each connection the kernel
        # gives the tunnel's worker (without the cluster's forwarding the others get 404).
        request = build_request("GET", "/slow?key=never", host=f"held.localhost:{port}")
        held = [await open_connection(port) for _ in range(HELD)]
        for connection in held:
            await connection.send(request)
        deadline = time.monotonic() + EXIT_TIMEOUT
        while await _app_requests(app_port) == 0:
            assert time.monotonic() < deadline, "no request reached the app"
            await asyncio.sleep(0.01)  # poll interval; the deadline bounds the wait
        proc.signal(signal.SIGTERM)
        draining = await wait_log_line(proc, lambda o: o.get("event") == "drain_started")
        assert draining["timeout_s"] == 30.0  # far longer than the test waits
        mark = len(proc.stderr_lines)
        proc.signal(signal.SIGTERM)
        assert await proc.wait_exit_async(EXIT_TIMEOUT) == 0, proc.output()
        for connection in held:
            await connection.aclose()
    cut = events(proc, "drain_cut_short", mark)
    assert [o.get("worker") for o in cut if "worker" in o], proc.output()  # a worker's own
    assert any("workers" in o for o in cut)  # the supervisor's, forwarding it


async def test_sighup_reaches_every_worker(tmp_path: Path, redis_server: RedisServer) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alpha\n")
    proc, _ = start_workers_gateway(2, redis_server.url, "--tokens-file", str(tokens))
    with proc:
        tokens.write_text("alpha\nbeta\n")
        mark = len(proc.stderr_lines)
        proc.signal(signal.SIGHUP)
        for index in (0, 1):
            line = await wait_log_line(proc, _reloaded_by(index), after=mark)
            assert (line["count"], line["added"]) == (2, 1)
        assert events(proc, "reload_forwarded", mark)[0]["workers"] == 2
        assert proc.returncode is None  # a reload, not a stop


async def test_a_worker_crashing_fast_again_and_again_stops_them_all(
    workers: tuple[Proc, int],
) -> None:
    proc, _ = workers
    for crash in range(5):  # WORKER_MAX_FAST_CRASHES, each within WORKER_FAST_CRASH
        mark = len(proc.stderr_lines)
        os.kill(worker_pids(proc)[1], signal.SIGKILL)
        if crash < 4:
            wait_workers_ready(proc, [1], after=mark)
    assert await proc.wait_exit_async(EXIT_TIMEOUT) == 1, proc.output()
    [gave_up] = events(proc, "worker_crashed_too_often")
    assert (gave_up["worker"], gave_up["crashes"]) == (1, 5)
    delays = [o["delay"] for o in events(proc, "worker_restarting")]
    assert delays == [0.1, 0.2, 0.4, 0.8]  # doubling from WORKER_RESTART_DELAY
    assert events(proc, "worker_exited")[-1]["worker"] == 0  # stopped (drained) with it


async def test_a_worker_that_cannot_start_stops_them_all(redis_server: RedisServer) -> None:
    admin = free_port()
    cluster = ["--redis", redis_server.url, "--cluster-secret", CLUSTER_SECRET]
    argv = tunnelgate_argv(
        "server", "--workers", "2", *cluster, "--advertise", f"127.0.0.1:{free_port()}",
        "--http", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{admin}",
        "--log-format", "json",
    )  # fmt: skip
    with socket.socket() as taken, Proc(argv) as proc:
        taken.bind(("127.0.0.1", admin + 1))  # worker 1's admin port (--admin's + 1)
        taken.listen()
        assert await proc.wait_exit_async(EXIT_TIMEOUT) == 1, proc.output()
    assert any("cannot start" in line for line in proc.stderr_lines), proc.output()
    [failed] = events(proc, "worker_failed_to_start")
    assert failed["worker"] == 1
    assert not events(proc, "worker_restarting")


async def test_workers_die_with_the_supervisor(workers: tuple[Proc, int]) -> None:
    proc, _ = workers
    pids = worker_pids(proc)
    proc.signal(signal.SIGKILL)
    await proc.wait_exit_async(EXIT_TIMEOUT)
    # PR_SET_PDEATHSIG: each worker is sent SIGTERM, drains (nothing open) and exits.
    await poll_until_async(lambda: not any(pid_alive(pid) for pid in pids.values()))


async def test_several_workers_without_redis_exit_2() -> None:
    argv = tunnelgate_argv("server", "--workers", "2", "--http", f"127.0.0.1:{free_port()}")
    with Proc(argv) as proc:
        assert await proc.wait_exit_async(EXIT_TIMEOUT) == 2
    assert proc.stderr_lines == [
        "tunnelgate: --workers: 2 processes share one namespace through --redis (with "
        "--cluster-secret and --advertise); give those, or --workers 1"
    ]


# --- the workers as cluster nodes: one tunnel, served through both ------------------------


def _nodes(proc: Proc) -> dict[int, str]:
    """Each worker's node (its --advertise address), from its `cluster_joined` line."""
    return {int(o["worker"]): str(o["node"]) for o in events(proc, "cluster_joined")}


async def test_one_name_is_served_through_both_workers(
    redis_server: RedisServer, local_app_proc: int
) -> None:
    proc, port = start_workers_gateway(2, redis_server.url)
    server = f"ws://127.0.0.1:{port}/connect"
    client = start_client("http", str(local_app_proc), "--subdomain", "both", "--server", server)
    with proc, client:
        wait_ready(client)
        for i in range(CONNECTIONS):  # a new connection each: either worker may accept it
            raw = build_request("GET", f"/echo?i={i}", host=f"both.localhost:{port}")
            response = await http_request(port, raw)
            assert response.status == 200, response
            assert response.json()["query"] == f"i={i}"
        await poll_until_async(lambda: len(_request_lines(proc, "/echo?i=")) == CONNECTIONS)
        served = _request_lines(proc, "/echo?i=")
        [holder] = {o["worker"] for o in served}  # the worker with the tunnel logs them all
        other = 1 - int(str(holder))
        via = [o for o in served if o.get("via") == _nodes(proc)[other]]
        assert 0 < len(via) < CONNECTIONS  # both accepted some; the other's were forwarded
        forwarded = [o for o in events(proc, "cluster_forwarded") if o["target"] == "both"]
        assert {o["worker"] for o in forwarded} == {other}
        assert len(forwarded) == len(via)


async def test_a_tcp_port_is_served_through_both_workers(redis_server: RedisServer) -> None:
    low, high = free_port_range(4)
    proc, port = start_workers_gateway(2, redis_server.url, "--tcp-ports", f"{low}-{high}")
    echo = await start_tcp_app()
    client = start_client("tcp", str(echo.port), "--server", f"ws://127.0.0.1:{port}/connect")
    try:
        with proc, client:
            url = str(wait_ready(client)["url"])
            tunnel_port = int(url.rsplit(":", 1)[1])
            target = f"port:{tunnel_port}"
            # The other worker listens on the port (SO_REUSEPORT) once it follows the
            # lease: until a connection it accepted was forwarded, keep connecting.
            deadline = time.monotonic() + EXIT_TIMEOUT
            while not [o for o in events(proc, "cluster_forwarded") if o["target"] == target]:
                assert time.monotonic() < deadline, proc.output()
                payload = os.urandom(64 * 1024)
                async with await open_connection(tunnel_port) as conn:
                    await conn.send(payload)
                    await conn.write_eof()
                    assert await conn.read_until_eof() == payload
                await asyncio.sleep(POLL)  # poll interval: the forwarding line comes at its end
            [holder] = {o["worker"] for o in events(proc, "tcp_connection")}
            forwarded = [o for o in events(proc, "cluster_forwarded") if o["target"] == target]
            assert {o["worker"] for o in forwarded} == {1 - int(str(holder))}
    finally:
        await echo.aclose()
