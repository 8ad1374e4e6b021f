"""Where a system is reached, and a single request to check that it answers."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import Final

PROBE_TIMEOUT: Final = 5.0  # seconds one check request may take (PageKite adds ~100 ms)


@dataclass(frozen=True, slots=True)
class Target:
    """A public address and the Host header that picks the service behind it."""

    port: int
    host_header: str
    address: str = "127.0.0.1"

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}{path}"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def get(target: Target, path: str, timeout: float = PROBE_TIMEOUT) -> Answer:
    """One GET on a fresh connection; OSError/http.client errors propagate."""
    conn = http.client.HTTPConnection(target.address, target.port, timeout=timeout)
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
