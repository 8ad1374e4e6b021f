"""Opening the tunnel WebSocket: how each refusal of the upgrade is translated."""

from __future__ import annotations

import pytest
from picows import WSListener

from tunnelgate.client.connect import open_websocket
from tunnelgate.errors import ConnectFailed, TunnelRejected, UnsupportedVersion
from tunnelgate.testing.endpoints import Behaviour, BrokenEndpoint


async def _open(url: str) -> None:
    await open_websocket(url, WSListener, ssl_context=None, headers={})


async def test_a_gateway_of_another_version_is_final_and_says_so() -> None:
    async with BrokenEndpoint(Behaviour.OTHER_VERSION) as endpoint:
        with pytest.raises(UnsupportedVersion, match=r"does not speak tunnelgate\.v2"):
            await _open(endpoint.url)


@pytest.mark.parametrize(
    ("status", "error"), [(401, TunnelRejected), (400, ConnectFailed), (503, ConnectFailed)]
)
async def test_other_refusals(status: int, error: type[Exception]) -> None:
    async with BrokenEndpoint(Behaviour.STATUS, status=status) as endpoint:
        with pytest.raises(error):
            await _open(endpoint.url)
