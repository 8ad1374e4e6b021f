"""Typed control messages (JSON on stream 0) and stream-open metadata.

Control messages are rare (a few per connection), so JSON keeps them readable and
extensible; stream metadata is on the per-request path, so it is packed binary.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from tunnelgate import limits
from tunnelgate.errors import RemoteProtocolError
from tunnelgate.proto.codes import ErrorCode, RejectReason, StreamKind

TunnelProtocol = Literal["http", "tcp", "tls"]


@dataclass(frozen=True, slots=True)
class Register:
    """Client asks for a tunnel. `id` is the client's handle for it on this connection."""

    id: int
    protocol: TunnelProtocol
    name: str | None = None  # http: the wanted subdomain, None = pick one; tls: required
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
        if protocol not in ("http", "tcp", "tls"):
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


# tunnel id, kind, flags, then the lengths of the address, the method and the target.
_OPEN: Final = struct.Struct("!IBBBBH")
_HTTP10: Final = 0x01  # flags: an HTTP/1.0 request
_MAX_SHORT_FIELD: Final = 255  # an address or a method longer than this is cut
_KINDS: Final = {int(kind): kind for kind in StreamKind}  # a dict: StreamKind(n) is slow


class OpenInfo:
    """Metadata of a gateway-opened stream: which tunnel, who is on the public side, and
    what the stream carries; for an HTTP request also its method, target (cut to
    MAX_OPEN_TARGET) and version, so the client need not read them from the stream.

    A value, compared by its fields. Not a dataclass: it is made for every request, and
    a compiled plain class builds in a fraction of a frozen dataclass's time."""

    __slots__ = ("client_addr", "http_version", "kind", "method", "target", "tunnel_id")

    def __init__(
        self,
        tunnel_id: int,
        client_addr: str,
        kind: StreamKind = StreamKind.HTTP,
        method: bytes = b"",
        target: bytes = b"",
        http_version: str = "1.1",
    ) -> None:
        self.tunnel_id = tunnel_id
        self.client_addr = client_addr
        self.kind = kind
        self.method = method
        self.target = target
        self.http_version = http_version

    def _key(self) -> tuple[int, str, StreamKind, bytes, bytes, str]:
        return (
            self.tunnel_id,
            self.client_addr,
            self.kind,
            self.method,
            self.target,
            self.http_version,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpenInfo):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"OpenInfo({self.tunnel_id}, {self.client_addr!r}, {self.kind.name}, "
            f"{self.method!r}, {self.target[:64]!r}, {self.http_version!r})"
        )

    def encode(self) -> bytes:
        addr = self.client_addr.encode()
        method = self.method
        target = self.target
        if len(addr) > _MAX_SHORT_FIELD:
            addr = addr[:_MAX_SHORT_FIELD]
        if len(method) > _MAX_SHORT_FIELD:
            method = method[:_MAX_SHORT_FIELD]
        if len(target) > limits.MAX_OPEN_TARGET:
            target = target[: limits.MAX_OPEN_TARGET]
        flags = _HTTP10 if self.http_version == "1.0" else 0
        fixed = _OPEN.pack(self.tunnel_id, self.kind, flags, len(addr), len(method), len(target))
        return b"".join((fixed, addr, method, target))

    @staticmethod
    def decode(payload: bytes) -> OpenInfo:
        """Raises RemoteProtocolError for metadata that is short, not UTF-8 where text is
        due, or of an unknown kind. Bytes past the known fields are ignored."""
        if len(payload) < _OPEN.size:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "stream metadata too short")
        tunnel_id, kind, flags, addr_size, method_size, target_size = _OPEN.unpack_from(payload)
        method_at = _OPEN.size + addr_size
        target_at = method_at + method_size
        end = target_at + target_size
        if len(payload) < end:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "stream metadata truncated")
        stream_kind = _KINDS.get(kind)
        if stream_kind is None:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, f"unknown stream kind {kind}")
        try:
            addr = payload[_OPEN.size : method_at].decode()
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(
                ErrorCode.PROTOCOL_ERROR, "stream metadata not UTF-8"
            ) from exc
        version = "1.0" if flags & _HTTP10 else "1.1"
        return OpenInfo(
            tunnel_id,
            addr,
            stream_kind,
            payload[method_at:target_at],
            payload[target_at:end],
            version,
        )
