"""Open the tunnel WebSocket: the client's socket boundary.

One attempt is a TCP connect, TLS for wss://, and the WebSocket upgrade, bounded together
by `limits.CONNECT_TIMEOUT`. Every way it can fail is translated here, once: a 401 is
`TunnelRejected` (final), a `400 unsupported_version` is `UnsupportedVersion` (final: the
gateway speaks another protocol version), anything else is `ConnectFailed` (retried by
the agent).

We drive picows' client protocol ourselves instead of calling `picows.ws_connect`, because
of what picows 2.3.1 does there:

- when the peer closes before answering the upgrade, `connection_lost` completes the
  handshake *successfully* (the handshake future gets None) and `ws_connect` returns a
  transport with no listener: the agent took that for a connection and waited forever for
  a close that had already happened (issue 6);
- cancelling `ws_connect` while the answer is pending leaves its socket open until
  picows' own handshake timer fires; here a cancelled or timed-out attempt aborts its
  socket at once;
- it follows redirects, resending our `Authorization` header to wherever they point.

Building the protocol directly is what `transport/handoff.py` does on the gateway side,
hence the exact picows pin.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Protocol, cast

import picows
from picows import WSListener, WSTransport
from picows import picows as _picows_impl
from picows.url import WSParsedURL, parse_url

from tunnelgate import limits
from tunnelgate.errors import ConnectFailed, TunnelRejected, UnsupportedVersion
from tunnelgate.proto.codes import RejectReason
from tunnelgate.transport.tunnel import SUBPROTOCOL

# picows.ws_connect's first read buffer; picows doubles it while messages are larger.
_READ_BUFFER = 16 * limits.KiB
_logger = logging.getLogger("tunnelgate.picows.client")
_logger.setLevel(logging.WARNING)  # picows logs every connection at INFO
_shared_logger = logging.LoggerAdapter(_logger, {})  # no child Logger per connection
_OTHER_VERSION = "unsupported_version"  # the gateway's error code (docs/protocol.md §1)


class _ClientProtocol(Protocol):
    """What we use of picows' WSProtocol (not in its stubs)."""

    @property
    def transport(self) -> WSTransport | None: ...
    @property
    def listener(self) -> WSListener | None: ...
    async def wait_until_handshake_complete(self) -> None: ...


async def open_websocket(
    server: str,
    listener_factory: Callable[[], WSListener],
    *,
    ssl_context: ssl.SSLContext | None,
    headers: Mapping[str, str],
) -> WSTransport:
    """The upgraded WebSocket to `server`, its listener made by `listener_factory`.

    Raises TunnelRejected for a 401, UnsupportedVersion for a gateway of another protocol
    version and ConnectFailed for any other failure; a cancelled attempt leaves no socket
    behind."""
    url = parse_url(server)
    protocol = _client_protocol(url.netloc, url.resource_name, listener_factory, headers)
    try:
        await _handshake(protocol, url, ssl_context)
    except BaseException:  # failed, timed out or cancelled: drop the socket now
        if protocol.transport is not None:
            protocol.transport.disconnect(graceful=False)
        raise
    assert protocol.transport is not None  # set by connection_made
    return protocol.transport


async def _handshake(
    protocol: _ClientProtocol, url: WSParsedURL, ssl_context: ssl.SSLContext | None
) -> None:
    """Connect and upgrade within CONNECT_TIMEOUT; every failure translated, here only."""
    loop = asyncio.get_running_loop()
    server = url.url
    try:
        async with asyncio.timeout(limits.CONNECT_TIMEOUT):
            await loop.create_connection(
                lambda: cast(asyncio.BaseProtocol, protocol),
                url.host,
                url.port,
                ssl=ssl_context,
                server_hostname=url.host if ssl_context is not None else None,
            )
            await protocol.wait_until_handshake_complete()
    except TimeoutError as exc:  # before OSError: TimeoutError is one
        raise ConnectFailed(f"{server}: no answer within {limits.CONNECT_TIMEOUT:g} s") from exc
    except picows.WSHandshakeError as exc:
        raise _refusal(server, exc) from exc
    except ssl.SSLCertVerificationError as exc:  # before OSError: it is one
        why = exc.verify_message or exc.reason or "not trusted"
        raise ConnectFailed(
            f"{url.host}: the gateway's certificate is not trusted ({why}); give its CA "
            "with --ca FILE, or --insecure to skip the check"
        ) from exc
    except ssl.SSLError as exc:
        raise ConnectFailed(f"{url.host}: TLS failed ({exc.reason or exc})") from exc
    except (OSError, picows.WSError) as exc:
        raise ConnectFailed(f"cannot reach {server}: {str(exc) or type(exc).__name__}") from exc
    if protocol.listener is None:  # the peer closed before answering (module docstring)
        raise ConnectFailed(f"{server} closed the connection before answering the upgrade")


def _refusal(
    server: str, exc: picows.WSHandshakeError
) -> TunnelRejected | UnsupportedVersion | ConnectFailed:
    """A 401 is final (SPEC: bad token, exit status 2), and so is a 400 for a protocol
    version the gateway does not speak; any other answer is retried: 429 and 5xx are a
    busy or failing gateway, and a redirect is not followed."""
    response = exc.response
    status = response.status if response is not None else None
    if status == 401:
        return TunnelRejected(RejectReason.AUTH_FAILED.value, "the token was refused")
    if response is not None and response.headers.get("X-Tunnelgate-Error") == _OTHER_VERSION:
        return UnsupportedVersion(
            f"{server} does not speak {SUBPROTOCOL}, the protocol of this client: "
            "the client and the gateway need matching versions"
        )
    if status is not None and status != 101:
        return ConnectFailed(f"{server} answered the upgrade with {int(status)}")
    return ConnectFailed(f"{server} sent a bad upgrade answer: {exc}")


def _client_protocol(
    host_port: str,
    path: str,
    listener_factory: Callable[[], WSListener],
    headers: Mapping[str, str],
) -> _ClientProtocol:
    """picows' client protocol, as `ws_connect` builds it (picows 2.3.1)."""
    protocol: _ClientProtocol = _picows_impl.WSProtocol(  # type: ignore[attr-defined]
        host_port,
        path,
        True,  # is_client_side
        listener_factory,
        _shared_logger,
        True,  # disconnect_on_exception
        None,  # handshake timeout: open_websocket's CONNECT_TIMEOUT covers the whole attempt
        False,  # our own heartbeats run in the mux (PING/PONG frames)
        20.0,
        20.0,
        picows.WSAutoPingStrategy.PING_WHEN_IDLE,
        True,  # answer WebSocket pings
        limits.MAX_TUNNEL_MESSAGE,
        dict(headers),
        _READ_BUFFER,
    )
    return protocol
