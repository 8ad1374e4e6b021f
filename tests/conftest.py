"""Fixtures shared by every test: the local app (in-process and as a process), a real
redis-server (cluster tests), a guard that no process outlives the session, and one that
the install under test is the one meant."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tunnelgate import compiled
from tunnelgate.testing.local_app import LocalApp, start_local_app
from tunnelgate.testing.processes import start_local_app_proc, terminate_all
from tunnelgate.testing.redis_server import RedisServer, run_redis


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test an install that is not the one meant: by default every module listed in
    tunnelgate/compiled.py compiled and no older than its source (an extension built from an
    older source is imported instead of the source you just edited); with
    TUNNELGATE_PURE_PYTHON=1 (`make e2e-pure`) none of them compiled."""
    interpreted = os.environ.get("TUNNELGATE_PURE_PYTHON") == "1"
    found = compiled.problems(interpreted=interpreted)
    if found:
        meant = "interpreted (TUNNELGATE_PURE_PYTHON=1)" if interpreted else "compiled"
        lines = "\n".join(f"  {problem}" for problem in found)
        pytest.exit(f"this run tests the {meant} install of {compiled.PACKAGE}, but:\n{lines}", 2)


@pytest.fixture(autouse=True, scope="session")
def _no_leaked_processes() -> Iterator[None]:
    """Kill, by PID, any process a test or fixture started and did not terminate."""
    try:
        yield
    finally:
        terminate_all()


@pytest.fixture
async def local_app() -> AsyncIterator[LocalApp]:
    """The test app on this test's event loop; fails the test if a handler crashed."""
    app = await start_local_app()
    try:
        yield app
    finally:
        await app.aclose()
    assert not app.errors, f"local app handlers failed: {app.errors!r}"


@pytest.fixture
def local_app_proc() -> Iterator[int]:
    """The test app as its own process (python -m tunnelgate.testing.local_app); its port."""
    proc, port = start_local_app_proc()
    try:
        yield port
    finally:
        proc.terminate()


@pytest.fixture(scope="module")
def redis_module() -> Iterator[RedisServer]:
    """A redis-server of the module's own, on a free loopback port; stopped after."""
    with run_redis() as server:
        yield server


@pytest.fixture
def redis_server(redis_module: RedisServer) -> RedisServer:
    """The module's redis-server, running (a test may have killed it) and empty."""
    redis_module.start()
    answer = redis_module.command("FLUSHALL")
    assert answer.startswith(b"+OK"), answer
    return redis_module
