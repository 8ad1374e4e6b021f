"""Typed control messages (JSON on stream 0) and stream-open metadata.

Control messages are rare (a few per connection), so JSON keeps them readable and
extensible; stream metadata is on the per-request path, so it is packed binary.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from tunnelgate.errors import RemoteProtocolError
from tunnelgate.proto.codes import ErrorCode, RejectReason

TunnelProtocol = Literal["http", "tcp"]


@dataclass(frozen=True, slots=True)
class Register:
    """Client asks for a tunnel. `id` is the client's handle for it on this connection."""

    id: int
    protocol: TunnelProtocol
    name: str | None = None  # http: the wanted subdomain, None = pick one
    port: int | None = None  # tcp: the wanted public port, None = pick one
    host_header: str | None = None  # http: send this Host to the local app instead
    # Random per client process: with no token, proves a reconnect is the same owner.
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Registered:
    id: int
    url: str
    name: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    id: int
    reason: RejectReason
    message: str


ControlMessage = Register | Registered | Rejected

_TYPES: Final[dict[str, type[ControlMessage]]] = {
    "register": Register,
    "registered": Registered,
    "rejected": Rejected,
}
_NAMES: Final = {cls: name for name, cls in _TYPES.items()}


def encode_control(message: ControlMessage) -> bytes:
    body = asdict(message)
    body["type"] = _NAMES[type(message)]
    return json.dumps(body, separators=(",", ":")).encode()


def _field(body: dict[str, Any], key: str, kind: type, optional: bool = False) -> Any:
    value = body.get(key)
    if value is None and optional:
        return None
    # bool is an int in Python; a JSON true must not pass as a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, f"control field {key!r} is invalid")
    return value


def decode_control(payload: bytes | memoryview) -> ControlMessage:
    try:
        body = json.loads(bytes(payload))
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "control message is not JSON") from exc
    if not isinstance(body, dict):
        raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "control message is not an object")
    kind = body.get("type")
    if kind == "register":
        protocol = _field(body, "protocol", str)
        if protocol not in ("http", "tcp"):
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "unknown tunnel protocol")
        return Register(
            id=_field(body, "id", int),
            protocol=protocol,
            name=_field(body, "name", str, optional=True),
            port=_field(body, "port", int, optional=True),
            host_header=_field(body, "host_header", str, optional=True),
            client_id=_field(body, "client_id", str, optional=True),
        )
    if kind == "registered":
        return Registered(
            id=_field(body, "id", int),
            url=_field(body, "url", str),
            name=_field(body, "name", str, optional=True),
            port=_field(body, "port", int, optional=True),
        )
    if kind == "rejected":
        reason = _field(body, "reason", str)
        try:
            parsed = RejectReason(reason)
        except ValueError:
            parsed = RejectReason.INTERNAL  # a newer peer's reason still reads as a rejection
        return Rejected(
            id=_field(body, "id", int), reason=parsed, message=_field(body, "message", str)
        )
    raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, f"unknown control message {kind!r}")


_OPEN: Final = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class OpenInfo:
    """Metadata of a gateway-opened stream: which tunnel, and who is on the public side."""

    tunnel_id: int
    client_addr: str

    def encode(self) -> bytes:
        return _OPEN.pack(self.tunnel_id) + self.client_addr.encode()

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> OpenInfo:
        if len(payload) < _OPEN.size:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "stream metadata too short")
        try:
            addr = bytes(payload[_OPEN.size :]).decode()
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(
                ErrorCode.PROTOCOL_ERROR, "stream metadata not UTF-8"
            ) from exc
        return cls(_OPEN.unpack_from(payload)[0], addr)
