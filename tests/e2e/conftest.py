"""Fixtures of the end-to-end tests (the helpers they use are in e2e_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import TunnelEnv, start_tunnel_env


@pytest.fixture(scope="module")
def tunnel_env() -> Iterator[TunnelEnv]:
    """A gateway + client + local app trio (each its own process) shared by one module.

    Tests may use it in any order: each one makes its own connections and reads the
    processes' output from a mark it took (``client_mark()``, ``gateway_mark()``).
    """
    with start_tunnel_env() as env:
        yield env
