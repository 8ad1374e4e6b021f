"""The controller's HTTP API, client side: `POST {URL}/v1/authorize` (SPEC "Controller").

    request   {"token", "protocol": "http"|"tcp"|"tls", "name" | "port", "client_addr"}
    200       {"allow": true, "account": "...", "names": [...]}   -> Allowed
    200       {"allow": false, "reason": "..."}, or any 4xx       -> Denied
    timeout, connection error, 5xx, 3xx, an unreadable answer     -> ControllerUnavailable

`name` (http, tls) or `port` (tcp) is null when the client asked for none (the gateway
then picks one). `client_addr` is the client's IP address, without its port.

aiohttp's errors, timeouts and bad answers are translated here, once, into
`ControllerUnavailable`; the caller fails closed. One `aiohttp.ClientSession` is made on
first use (it belongs to the running loop) and reused for every call; redirects are not
followed (the token would go to wherever they point), and nothing is read from the
environment (proxies, netrc). `read_answer` is sans-IO: status and body in, answer out.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from tunnelgate import limits
from tunnelgate.errors import ControllerUnavailable
from tunnelgate.proto.names import normalize_name

from .auth import Wanted

PATH = "/v1/authorize"


@dataclass(frozen=True, slots=True)
class Allowed:
    account: str
    names: tuple[str, ...] = ()  # reserved for this account


@dataclass(frozen=True, slots=True)
class Denied:
    reason: str


def request_body(token: str, wanted: Wanted) -> dict[str, Any]:
    body: dict[str, Any] = {"token": token, "protocol": wanted.protocol}
    if wanted.protocol == "tcp":
        body["port"] = wanted.port
    else:
        body["name"] = wanted.name
    body["client_addr"] = client_ip(wanted.client_addr)
    return body


def client_ip(client_addr: str) -> str:
    """`203.0.113.7` of `203.0.113.7:5123` (and `2001:db8::1` of `2001:db8::1:5123`)."""
    return client_addr.rsplit(":", 1)[0]


def read_answer(status: int, body: bytes) -> Allowed | Denied:
    """The controller's answer; raises ControllerUnavailable for anything SPEC does not
    describe (fail closed)."""
    if 400 <= status < 500:
        reason = _field(body, "reason")
        said = f"the controller answered {status}"
        return Denied(_clean(reason) if isinstance(reason, str) else said)
    if status != 200:
        raise ControllerUnavailable(f"the controller answered {status}")
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        raise ControllerUnavailable("the controller's answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("allow"), bool):
        raise ControllerUnavailable('the controller\'s answer has no "allow": true or false')
    if not answer["allow"]:
        reason = answer.get("reason")
        return Denied(_clean(reason) if isinstance(reason, str) else "the controller refused")
    account = answer.get("account")
    if not isinstance(account, str) or not 1 <= len(account) <= limits.MAX_SUBJECT_LENGTH:
        raise ControllerUnavailable("the controller's allow names no account")
    return Allowed(_clean(account), _names(answer.get("names", [])))


def _field(body: bytes, key: str) -> object:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return answer.get(key) if isinstance(answer, dict) else None


def _clean(text: str) -> str:
    """One printable line, bounded: it reaches logs and the client's terminal."""
    line = "".join(c if c.isprintable() else " " for c in text).strip()
    return line[: limits.MAX_CONTROLLER_REASON] or "no reason given"


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limits.MAX_CONTROLLER_NAMES:
        limit = limits.MAX_CONTROLLER_NAMES
        raise ControllerUnavailable(f'the controller\'s "names" is not a list of at most {limit}')
    names = [normalize_name(item) if isinstance(item, str) else None for item in value]
    if None in names:
        raise ControllerUnavailable('the controller\'s "names" holds something not a name')
    return tuple(dict.fromkeys(name for name in names if name is not None))


class ControllerClient:
    """Asks the controller; one HTTP session for the gateway's life."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/") + PATH
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<ControllerClient {self.url} timeout={self.timeout:g}s>"

    async def ask(self, token: str, wanted: Wanted) -> Allowed | Denied:
        try:
            async with asyncio.timeout(self.timeout):
                status, body = await self._post(request_body(token, wanted))
        except TimeoutError:
            raise ControllerUnavailable(f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ControllerUnavailable(str(exc) or type(exc).__name__) from None
        return read_answer(status, body)

    async def _post(self, body: dict[str, Any]) -> tuple[int, bytes]:
        session = self._session_for_loop()
        async with session.post(self.url, json=body, allow_redirects=False) as response:
            limit = limits.MAX_CONTROLLER_ANSWER
            if (response.content_length or 0) > limit:
                raise ControllerUnavailable(f"the controller's answer is over {limit} bytes")
            data = bytearray()
            async for chunk in response.content.iter_chunked(limit):
                data += chunk
                if len(data) > limit:
                    raise ControllerUnavailable(f"the controller's answer is over {limit} bytes")
            return response.status, bytes(data)

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=limits.MAX_CONTROLLER_CONNECTIONS)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout in ask()
                headers={"User-Agent": "tunnelgate"},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
