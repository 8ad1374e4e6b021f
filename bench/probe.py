"""Where a system is reached, and a single request to check that it answers.

An HTTPS target carries a :class:`ClientTls`: the CA to trust and the server name to send
(SNI, and the name the certificate is checked against). The benchmark's names under
``localhost`` do not resolve through glibc, so every client connects to the target's
address and sends the name only inside TLS and in the Host header.
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PROBE_TIMEOUT: Final = 5.0  # seconds one check request may take (PageKite adds ~100 ms)


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How a client speaks TLS to a target: trust `ca_file`, send and check `server_name`."""

    ca_file: Path
    server_name: str

    def context(self) -> ssl.SSLContext:
        return _client_context(self.ca_file)

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        """`sock` (connected) after a verified handshake."""
        return self.context().wrap_socket(sock, server_hostname=self.server_name)


@functools.cache
def _client_context(ca_file: Path) -> ssl.SSLContext:
    # OpenSSL's defaults, as wrk's (the same libssl): TLS 1.2 and 1.3 offered,
    # TLS_AES_256_GCM_SHA384 first among the TLS 1.3 suites, X25519 first among the groups.
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, slots=True)
class Target:
    """A public address and the Host header that picks the service behind it; `tls` for
    HTTPS."""

    port: int
    host_header: str
    address: str = "127.0.0.1"
    tls: ClientTls | None = field(default=None)

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    def url(self, path: str) -> str:
        """The URL for wrk: for HTTPS with the server name as host (wrk sends it as SNI and
        is told where to connect by a Lua script, :mod:`bench.loadgen`)."""
        host = self.address if self.tls is None else self.tls.server_name
        return f"{self.scheme}://{host}:{self.port}{path}"

    def connect(self, timeout: float) -> socket.socket:
        """A connected socket, TLS already handshaken for an HTTPS target."""
        sock = socket.create_connection((self.address, self.port), timeout=timeout)
        if self.tls is None:
            return sock
        try:
            return self.tls.wrap(sock)
        except BaseException:
            sock.close()
            raise


class _Connection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.address, target.port, timeout=timeout)
        self._target = target

    def connect(self) -> None:
        self.sock = self._target.connect(self.timeout or PROBE_TIMEOUT)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def get(target: Target, path: str, timeout: float = PROBE_TIMEOUT) -> Answer:
    """One GET on a fresh connection; OSError/http.client errors propagate."""
    conn = _Connection(target, timeout)
    try:
        conn.request("GET", path, headers={"Host": target.host_header, "Connection": "close"})
        response = conn.getresponse()
        return Answer(response.status, response.read())
    finally:
        conn.close()


def answers(target: Target, path: str, body: bytes, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if GET `path` gives 200 and exactly `body`."""
    try:
        answer = get(target, path, timeout)
    except (OSError, http.client.HTTPException):
        return False
    return answer.status == 200 and answer.body == body


def negotiated(target: Target, timeout: float = PROBE_TIMEOUT) -> dict[str, str | int | None]:
    """The TLS version and cipher suite the target's server picks for this client."""
    assert target.tls is not None
    with target.connect(timeout) as sock:
        assert isinstance(sock, ssl.SSLSocket)
        cipher = sock.cipher()
        return {
            "version": sock.version(),
            "cipher": cipher[0] if cipher else None,
            "secret_bits": cipher[2] if cipher else None,
            "alpn": sock.selected_alpn_protocol(),
        }
