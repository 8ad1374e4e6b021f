"""The whole exception tree, in one place.

    TunnelgateError
    ├── ConfigError                 bad option, key or value; start-up stops
    │   └── CertificateError        a TLS certificate or key that cannot be served (which
    │                               file, what is wrong); a reload keeps the old one
    ├── ProtocolError               tunnel protocol violation, with a wire code
    │   ├── LocalProtocolError      the core refused a command (over a cap, going away, a bug)
    │   │   └── NoAvailableStreamIDError  this side used up its stream ids: reconnect
    │   └── RemoteProtocolError     the peer misbehaved; the connection is closed
    ├── HTTPError                   a public request we refuse, with its status
    ├── TunnelRejected              the gateway refused a registration (client side)
    ├── UnsupportedVersion          the gateway speaks no protocol version the client does
    ├── ConnectFailed               the client could not open a tunnel connection; retried
    ├── AcmeError                   the ACME CA refused a request, limited our rate, or could
    │                               not be reached; the order is retried with back-off
    ├── ControllerUnavailable       the controller did not answer in time, failed (5xx) or
    │                               said something unreadable; the gateway fails closed
    └── RegistryUnavailable         the shared registry (Redis, cluster mode) did not answer
                                    in time or could not be reached; claims fail closed

Low-level errors (OSError, TimeoutError, picows errors) are translated where the
socket is touched, once, and never leak past the transport layer; those of certificate
files (OSError, ssl.SSLError, cryptography's ValueError) where they are read; those of
the ACME client (acme's problem documents, requests' errors) in gateway/acme_client.py;
a JWT's (PyJWT's PyJWTError) where it is checked (gateway/jwt_auth.py: a refused token);
the controller's (aiohttp's ClientError, TimeoutError, a bad answer) where it is called
(gateway/controller.py); Redis's (redis-py's RedisError, OSError, TimeoutError) in
gateway/redis_registry.py.
"""

from __future__ import annotations

from typing import Literal


class TunnelgateError(Exception):
    """Base of every error tunnelgate raises on purpose."""


class ConfigError(TunnelgateError):
    """A configuration key or value is wrong; the message names the key."""


class CertificateError(ConfigError):
    """A certificate, key or state directory that cannot be used; the message names the
    file (and the option it came from) and the problem."""


class ProtocolError(TunnelgateError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """Raised when our own side asks the core for something it cannot do now (a stream
    over the cap, after GOAWAY) or that the protocol forbids."""


class NoAvailableStreamIDError(LocalProtocolError):
    """This side has opened its last stream id (2**32 - 1 at most): no stream can be opened
    on this connection again. The transport closes it (GOAWAY SHUTDOWN) so that the client
    reconnects, as an HTTP/2 client opens a new connection (h2's error of the same name)."""


class RemoteProtocolError(ProtocolError):
    """Raised when the peer sent something the protocol forbids."""


class HTTPError(TunnelgateError):
    """A public HTTP request the gateway answers itself with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TunnelRejected(TunnelgateError):
    """The gateway rejected a tunnel registration; `reason` is a closed wire code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnsupportedVersion(TunnelgateError):
    """The gateway answered the upgrade `400 unsupported_version`: it speaks none of the
    protocol versions the client offered. Final: a retry would get the same answer."""


class ConnectFailed(TunnelgateError):
    """A tunnel connection attempt failed before the upgrade: refused, reset, timed out,
    TLS, closed or a bad answer before the 101. The message says which; the client
    retries it with back-off."""


# What an AcmeError means for what comes next: `refused`, the CA's answer about this
# request (a failed challenge, a refused name: back off this host); `rate_limited`, over
# one of the CA's limits (hold every order); `unavailable`, the CA could not be reached or
# answered nonsense (hold every order, for less long).
AcmeErrorKind = Literal["refused", "rate_limited", "unavailable"]


class AcmeError(TunnelgateError):
    """An ACME request that did not succeed. The message carries the CA's problem detail
    (RFC 8555 section 6.7) when there was one; `retry_after` is the CA's Retry-After in
    seconds, when it sent one."""

    def __init__(
        self, kind: AcmeErrorKind, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind: AcmeErrorKind = kind
        self.retry_after = retry_after


class ControllerUnavailable(TunnelgateError):
    """The controller (--controller) gave no usable answer: a timeout, a connection error,
    a 5xx or 3xx, or a body that is not the answer SPEC describes. The message says which;
    the registration it was asked about is rejected `controller_unavailable`."""


class RegistryUnavailable(TunnelgateError):
    """The shared registry (--redis) gave no answer within limits.REDIS_TIMEOUT, or could
    not be reached; the registration it was asked about is rejected `registry_unavailable`."""
