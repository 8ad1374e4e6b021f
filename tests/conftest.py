"""Fixtures shared by every test: the local app (in-process and as a process) and a guard that
no process outlives the session."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tunnelgate.testing.local_app import LocalApp, start_local_app
from tunnelgate.testing.processes import start_local_app_proc, terminate_all

COMPILED_MODULES = (
    "tunnelgate.proto.mux",
    "tunnelgate.proto.frames",
    "tunnelgate.http1.request",
    "tunnelgate.http1.response",
    "tunnelgate.gateway.edge",
    "tunnelgate.gateway.caps",
    "tunnelgate.gateway.exchange",
    "tunnelgate.client.upstream",
    "tunnelgate.transport.deadlines",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test stale compiled modules: an extension built from an older source is
    imported instead of the source you just edited (`make test` rebuilds them)."""
    for name in COMPILED_MODULES:
        module = importlib.import_module(name)
        built = Path(module.__file__ or "")
        if built.suffix != ".so":
            continue  # interpreted (TUNNELGATE_PURE_PYTHON=1): nothing to go stale
        source = built.with_name(built.name.split(".", 1)[0] + ".py")
        # limits.py too: mypyc builds its Final constants into the compiled modules.
        limits = built.parents[1 if built.parent.name != "tunnelgate" else 0] / "limits.py"
        for dependency in (source, limits):
            if dependency.stat().st_mtime > built.stat().st_mtime:
                pytest.exit(
                    f"{built} is older than {dependency.name}: run `make test` to rebuild", 2
                )


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
