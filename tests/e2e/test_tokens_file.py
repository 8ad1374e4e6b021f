"""`--tokens-file` end to end (issue 10): hashed lines, SIGHUP reloading the file while
tunnels stay up, a broken file refused on reload. Real gateway, client and local-app
processes; every wait is on output with a deadline. (Per-tunnel metrics:
test_metrics_per_tunnel.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelgate.testing.local_app import stream_blocks
from tunnelgate.testing.proc import JsonObject, Proc, ProcExited, json_object
from tunnelgate.testing.processes import (
    build_request,
    free_port,
    http_request,
    start_client,
    start_gateway,
    start_local_app_proc,
    tunnelgate_argv,
    wait_ready_async,
)

EXIT_REJECTED = 2
WAIT = 15.0
"""Seconds a client gets to come up or to exit, and the gateway to log a reload."""
BODY_BYTES = 300_000
"""Bytes of the response that must arrive byte for byte across a reload."""


def hashed(token: str) -> str:
    """The line README tells operators to write: `printf %s TOKEN | sha256sum`."""
    out = subprocess.run(["sha256sum"], input=token.encode(), capture_output=True, check=True)
    return "sha256:" + out.stdout.split()[0].decode()


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    proc, port = start_local_app_proc()
    try:
        yield port
    finally:
        proc.terminate()


class Setup:
    """One gateway on a tokens file, and the clients a test started."""

    def __init__(self, app_port: int, path: Path, *args: str) -> None:
        self.app_port = app_port
        self.path = path
        self.proc, self.port = start_gateway("--tokens-file", str(path), *args)
        self.clients: list[Proc] = []

    def client(self, name: str, token: str) -> Proc:
        server = f"ws://127.0.0.1:{self.port}/connect"
        proc = start_client(
            "http", str(self.app_port), "--server", server, "--subdomain", name, "--token", token
        )
        self.clients.append(proc)
        return proc

    async def get(self, name: str, target: str = "/") -> tuple[int, bytes]:
        raw = build_request("GET", target, host=f"{name}.localhost:{self.port}")
        response = await http_request(self.port, raw, timeout=WAIT)
        return response.status, response.body

    async def reload(self, event: str) -> JsonObject:
        """SIGHUP, and the gateway's line about it (`tokens_reloaded` or `..._failed`)."""
        mark = len(self.proc.stderr_lines)
        self.proc.signal(signal.SIGHUP)
        line = await self.proc.wait_for_line_async(
            lambda text: (obj := json_object(text)) is not None and obj.get("event") == event,
            WAIT,
            stream="stderr",
            after=mark,
        )
        found = json_object(line)
        assert found is not None
        return found

    def close(self) -> None:
        for proc in reversed(self.clients):
            proc.terminate()
        self.proc.terminate()


@contextlib.contextmanager
def setup(app_port: int, path: Path, *args: str) -> Iterator[Setup]:
    started = Setup(app_port, path, *args)
    try:
        yield started
    finally:
        started.close()


async def serves(gw: Setup, proc: Proc, name: str) -> None:
    ready = await wait_ready_async(proc, WAIT)
    assert ready["url"] == f"http://{name}.localhost:{gw.port}", proc.output()
    assert await gw.get(name) == (200, b"hello\n")


async def refused(proc: Proc) -> None:
    """`proc` exits 2 with one line saying its token was refused; no tunnel came up."""
    with contextlib.suppress(ProcExited):
        up = await wait_ready_async(proc, WAIT)
        raise AssertionError(f"the tunnel came up: {up}\n{proc.output()}")
    assert await proc.wait_exit_async(WAIT) == EXIT_REJECTED, proc.output()
    lines = [line for line in proc.stderr_lines if line.strip()]
    assert len(lines) == 1, proc.output()
    assert "token" in lines[0].lower(), proc.output()


async def test_a_hashed_token_is_accepted_and_a_wrong_one_refused(
    app_port: int, tmp_path: Path
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# CI\n{hashed('h4shed-token')}\nplain-token\n")
    assert "h4shed-token" not in path.read_text()
    with setup(app_port, path) as gw:
        await serves(gw, gw.client("hashed", "h4shed-token"), "hashed")
        await serves(gw, gw.client("plain", "plain-token"), "plain")
        await refused(gw.client("wrong", "h4shed-tokeN"))
        # The digest itself is not a token.
        await refused(gw.client("digest", hashed("h4shed-token")))


def test_a_malformed_hashed_line_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("fine-token\nsha256:abc123\n")
    argv = ["server", "--http", f"127.0.0.1:{free_port()}", "--tokens-file", str(path)]
    with Proc(tunnelgate_argv(*argv)) as proc:
        assert proc.wait_exit(WAIT) == EXIT_REJECTED  # SPEC: a config error is exit 2
        (line,) = [line for line in proc.stderr_lines if line.strip()]
    assert line.startswith(f"tunnelgate: --tokens-file: '{path}' line 2: sha256: must be"), line


async def test_sighup_reloads_the_file_and_live_tunnels_stay_up(
    app_port: int, tmp_path: Path
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"old-token\n{hashed('kept-token')}\n")
    with setup(app_port, path) as gw:
        live = gw.client("live", "old-token")
        await serves(gw, live, "live")
        # A response in flight across the reload: held after its first block until released.
        target = f"/bytes?n={BODY_BYTES}&seed=10&hold=reload"
        held = asyncio.create_task(gw.get("live", target))
        path.write_text(f"# old-token removed\n{hashed('kept-token')}\n{hashed('new-token')}\n")
        reloaded = await gw.reload("tokens_reloaded")
        assert reloaded["count"] == 2, reloaded
        assert (reloaded["added"], reloaded["removed"]) == (1, 1), reloaded
        assert reloaded["kept_tunnels_of_removed"] == 1, reloaded
        assert await gw.get("live", "/release?key=reload") == (200, b"released\n")
        status, body = await held
        assert status == 200
        assert body == b"".join(stream_blocks(BODY_BYTES, 10))  # byte for byte
        # New registrations see the new set.
        await serves(gw, gw.client("fresh", "new-token"), "fresh")
        await serves(gw, gw.client("kept", "kept-token"), "kept")
        await refused(gw.client("again", "old-token"))
        # The tunnel of the removed token is still up, and still serves.
        assert live.returncode is None
        assert await gw.get("live", f"/bytes?n={BODY_BYTES}&seed=11") == (
            200,
            b"".join(stream_blocks(BODY_BYTES, 11)),
        )


async def test_a_broken_file_on_sighup_keeps_the_old_set(app_port: int, tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("first-token\n")
    with setup(app_port, path) as gw:
        path.write_text(f"second-token\nsha256:{'z' * 64}\n")
        failed = await gw.reload("tokens_reload_failed")
        assert "line 2" in failed["error"], failed
        assert failed["kept"] == 1, failed
        await serves(gw, gw.client("first", "first-token"), "first")
        await refused(gw.client("second", "second-token"))
        path.unlink()  # a file gone is refused the same way
        failed = await gw.reload("tokens_reload_failed")
        assert "cannot read" in failed["error"], failed
        path.write_text("second-token\n")
        assert (await gw.reload("tokens_reloaded"))["count"] == 1
        await serves(gw, gw.client("second", "second-token"), "second")
        await refused(gw.client("first2", "first-token"))
