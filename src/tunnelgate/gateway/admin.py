"""The admin API (`--admin ADDR`): health, the tunnels, closing one, and metrics.

    GET    /healthz              200 ok; 503 draining once SIGTERM came (the listener stays
                                 up through the drain: a load balancer takes us out)
    GET    /api/tunnels          JSON list: name, protocol, url, account, client address,
                                 connected since, requests, bytes each way
    DELETE /api/tunnels/NAME     closes that tunnel's connection with GOAWAY KICKED: the
                                 client is told why and does not reconnect
    GET    /metrics              Prometheus text format

Off loopback every request needs `Authorization: Bearer <--admin-token>` (start-up refuses
an admin listener off loopback without one). Requests are parsed by the same strict
parser as the public edge; answers are small, so each is written whole.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Iterable
from typing import Any, Protocol, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from tunnelgate.errors import HTTPError
from tunnelgate.http1.request import RequestHead, RequestParser
from tunnelgate.logs import EventLog

from .auth import bearer_token
from .pages import error_page

log = EventLog("tunnelgate.gateway")
_TUNNELS = b"/api/tunnels"


class Tunnels(Protocol):
    """What the admin API reads and does (app.Gateway)."""

    @property
    def draining(self) -> bool: ...

    def describe_tunnels(self) -> Iterable[dict[str, Any]]: ...
    def kick(self, name: str, reason: str) -> bool: ...


class AdminConnection(asyncio.Protocol):
    def __init__(self, tunnels: Tunnels, registry: CollectorRegistry, token: str | None) -> None:
        self._tunnels = tunnels
        self._registry = registry
        self._token = token.encode() if token else None
        self._parser = RequestParser()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        try:
            events = self._parser.feed(data)
        except HTTPError as exc:
            transport.write(error_page(exc.status, exc.code, str(exc)))
            transport.close()
            return
        for event in events:
            if isinstance(event, RequestHead):
                self._answer(event)

    def _answer(self, head: RequestHead) -> None:
        transport = self._transport
        assert transport is not None
        if not self._authorized(head):
            transport.write(error_page(401, "unauthorized", "an admin token is required"))
            transport.close()
            return
        status, content_type, body = self._route(head)
        head_lines = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        )
        if not head.keep_alive:
            head_lines += "Connection: close\r\n"
        transport.write(head_lines.encode() + b"\r\n" + body)
        if not head.keep_alive:
            transport.close()

    def _authorized(self, head: RequestHead) -> bool:
        if self._token is None:
            return True  # a loopback listener (config checks it)
        given = next((v for k, v in head.headers if k.lower() == b"authorization"), None)
        token = bearer_token(given)
        return token is not None and hmac.compare_digest(token.encode(), self._token)

    def _route(self, head: RequestHead) -> tuple[str, str, bytes]:
        path = head.target.split(b"?", 1)[0]
        method = head.method
        if path == b"/healthz" and method in (b"GET", b"HEAD"):
            if self._tunnels.draining:
                return "503 Service Unavailable", "text/plain; charset=utf-8", b"draining\n"
            return "200 OK", "text/plain; charset=utf-8", b"ok\n"
        if path == b"/metrics" and method == b"GET":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == _TUNNELS and method == b"GET":
            return _json("200 OK", list(self._tunnels.describe_tunnels()))
        if path.startswith(_TUNNELS + b"/") and method == b"DELETE":
            name = path[len(_TUNNELS) + 1 :].decode("ascii", "replace").lower()
            if self._tunnels.kick(name, "closed by an operator"):
                log.info("tunnel_kicked", name=name)
                return _json("200 OK", {"closed": name})
            return _json("404 Not Found", {"error": f"no tunnel named {name!r}"})
        return _json("404 Not Found", {"error": "not found"})


def _json(status: str, value: object) -> tuple[str, str, bytes]:
    return status, "application/json", json.dumps(value, indent=1).encode() + b"\n"
