"""Fixtures shared by every test: the local app (in-process and as a process) and a guard that
no process outlives the session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tunnelgate.testing.local_app import LocalApp, start_local_app
from tunnelgate.testing.processes import start_local_app_proc, terminate_all


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
