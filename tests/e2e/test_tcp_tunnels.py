"""TCP tunnels and TLS passthrough end to end (issue 9): a real gateway, a real client
(``tunnelgate tcp|tls``) and the raw echo of testing/tcp_app.py behind it.

Only what today's gateway already answers is here; the tests of the gateway's TCP ports
and TLS passthrough come with that side of issue 9. The client's side of these tunnels is
tested end to end against a scripted gateway in test_tcp_client.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tunnelgate.testing.processes import Proc, free_port, start_client, start_gateway

EXIT_TIMEOUT = 10.0


@contextlib.contextmanager
def client(*args: str) -> Iterator[Proc]:
    proc = start_client(*args)
    try:
        yield proc
    finally:
        proc.terminate()


def server(port: int) -> list[str]:
    return ["--server", f"ws://127.0.0.1:{port}/connect"]


async def test_tcp_on_a_gateway_without_tcp_ports_is_rejected() -> None:
    proc, port = start_gateway()
    try:
        with client("tcp", str(free_port()), *server(port)) as tunnel:
            assert await tunnel.wait_exit_async(EXIT_TIMEOUT) == 2, tunnel.output()
            assert tunnel.stderr_lines[-1].endswith("(protocol_unsupported)"), tunnel.output()
    finally:
        proc.terminate()
