"""What the request parser reports: a head, body bytes, the end, bytes after an upgrade."""

from __future__ import annotations

from typing import ClassVar

from tunnelgate.event import Event


class RequestHead(Event):
    """A parsed request head. `host` is lower-cased: the Host field, or the authority of
    an absolute-form target (RFC 9112 §3.2.2), b"" for HTTP/1.0 without Host. `upgrade`
    is the lower-cased Upgrade field value when the request switches protocols."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "head_size",
        "headers",
        "host",
        "keep_alive",
        "method",
        "target",
        "upgrade",
        "version",
    )
    fields: ClassVar[tuple[str, ...]] = (
        "chunked",
        "content_length",
        "expect_continue",
        "head_size",
        "headers",
        "host",
        "keep_alive",
        "method",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        host: bytes,
        keep_alive: bool,
        upgrade: bytes | None,
        expect_continue: bool,
        chunked: bool,
        content_length: int | None,
        head_size: int,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.host = host
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.expect_continue = expect_continue
        self.chunked = chunked
        self.content_length = content_length
        self.head_size = head_size

    def __repr__(self) -> str:  # field values elided: they hold cookies and credentials
        framing = "chunked" if self.chunked else f"length={self.content_length}"
        return (
            f"<RequestHead {self.method.decode('latin-1')} {self.target[:80].decode('latin-1')}"
            f" HTTP/{self.version} host={self.host.decode('latin-1')} {framing}"
            f" headers={len(self.headers)} keep_alive={self.keep_alive} upgrade={self.upgrade!r}>"
        )


class BodyData(Event):
    """Request body bytes, never empty: de-chunked, or for a parser made with
    `raw_chunks`, a chunked body as it came (chunk extensions and trailers included,
    validated), which a proxy forwards as it is."""

    __slots__ = ("data",)
    fields: ClassVar[tuple[str, ...]] = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class RequestComplete(Event):
    __slots__ = ()
    fields: ClassVar[tuple[str, ...]] = ()


class UpgradeData(Event):
    """Bytes after the head of an upgrade request: opaque, never parsed."""

    __slots__ = ("data",)
    fields: ClassVar[tuple[str, ...]] = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


RequestEvent = RequestHead | BodyData | RequestComplete | UpgradeData
