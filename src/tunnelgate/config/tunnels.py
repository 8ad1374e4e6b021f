"""`TunnelSpec`: one tunnel the client asks for, from the command line (`tunnelgate http
3000 --subdomain web`) or from a [tunnels.NAME] table of a tunnels.toml (`tunnelgate start`).

Which keys each protocol takes:

    http   addr (PORT, HOST:PORT or URL), subdomain, host_header
    tcp    addr (PORT or HOST:PORT), remote_port, proxy_protocol
    tls    addr (PORT or HOST:PORT), subdomain (required: the SNI routes to it), proxy_protocol

`proxy_protocol` is not offered for http: X-Forwarded-For already carries the client's
address, and a keep-alive local connection serves requests of many public clients, while a
PROXY header names one client for the whole connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from tunnelgate import limits
from tunnelgate.errors import ConfigError
from tunnelgate.proto.messages import TunnelProtocol
from tunnelgate.proto.names import normalize_name
from tunnelgate.proxy_header import ProxyVersion

from .parsers import Invalid, format_address, host, port, split_host_port, string
from .sources import file_label, normalize_keys

Scheme = Literal["http", "https"]
TUNNEL_KEYS: Final = frozenset(
    {"addr", "subdomain", "host_header", "remote_port", "proxy_protocol"}
)
# The keys each protocol takes besides addr.
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "http": frozenset({"subdomain", "host_header"}),
    "tcp": frozenset({"remote_port", "proxy_protocol"}),
    "tls": frozenset({"subdomain", "proxy_protocol"}),
}
_FILE_KEYS: Final = {"proto", *TUNNEL_KEYS}
_TUNNEL_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,63}\Z")


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """One tunnel the client asks for, and the local service it forwards to."""

    name: str
    protocol: TunnelProtocol
    local_host: str
    local_port: int
    local_scheme: Scheme = "http"
    subdomain: str | None = None  # http: None = the gateway picks one; tls: required
    host_header_rewrite: bool = False  # http only: send the local address as Host
    remote_port: int | None = None  # tcp only; None = the gateway picks one
    proxy_protocol: ProxyVersion | None = None  # tcp, tls: a PROXY header to the local service

    @property
    def local_address(self) -> str:
        """'HOST:PORT' of the local service ('[::1]:3000' for IPv6)."""
        return format_address((self.local_host, self.local_port))

    @property
    def local_url(self) -> str:
        """'http://127.0.0.1:3000' for http, '127.0.0.1:5432' for tcp and tls, as output
        shows it."""
        if self.protocol != "http":
            return self.local_address
        return f"{self.local_scheme}://{self.local_address}"

    @property
    def local_host_header(self) -> str:
        """The Host header `--host-header rewrite` sends: the port only when not the default."""
        default_port = 443 if self.local_scheme == "https" else 80
        if self.local_port == default_port:
            return f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return self.local_address


# --- values of a tunnel ------------------------------------------------------------------


def _local_addr(value: object, protocol: str) -> tuple[Scheme, str, int]:
    """'PORT', 'HOST:PORT' or, for http, 'http(s)://HOST[:PORT][/]' -> (scheme, host, port)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "http", "127.0.0.1", port(value)
    text = string(value)
    if "://" not in text:
        host_text, port_text = split_host_port(text)
        return "http", host(host_text) if host_text else "127.0.0.1", port(port_text)
    if protocol != "http":
        raise Invalid(f"must be PORT or HOST:PORT, got {text!r}")
    try:
        parts = urlsplit(text)
        url_port = parts.port
    except ValueError:
        raise Invalid(f"must be PORT, HOST:PORT or an http(s) URL, got {text!r}") from None
    scheme = parts.scheme.lower()
    bad = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
    if scheme not in ("http", "https") or not parts.hostname or bad:
        raise Invalid(f"must be an http(s)://HOST[:PORT] URL without a path, got {text!r}")
    local_scheme: Scheme = "https" if scheme == "https" else "http"
    default_port = 443 if local_scheme == "https" else 80
    return local_scheme, host(parts.hostname), url_port or default_port


def _subdomain(value: object) -> str:
    name = normalize_name(value) if isinstance(value, str) else None
    if name is None:
        raise Invalid(
            f"{value!r} is not a valid name: 1-63 of a-z 0-9 -, not starting or ending with -"
        )
    return name


def _host_header(value: object) -> bool:
    if value != "rewrite":
        raise Invalid(f"the only value is 'rewrite', got {value!r}")
    return True


def _proxy_protocol(value: object) -> ProxyVersion:
    if value == "v1" or value == "v2":
        return value
    raise Invalid(f"must be v1 or v2, got {value!r}")


def tunnel(name: str, values: Mapping[str, Any], label: Callable[[str], str]) -> TunnelSpec:
    """One TunnelSpec from raw values (proto, addr, ...); `label` names a key in messages."""

    def parse(key: str, parser: Callable[[object], Any]) -> Any:
        if values.get(key) is None:
            return None
        try:
            return parser(values[key])
        except Invalid as exc:
            raise ConfigError(f"{label(key)}: {exc}") from None

    protocol = values.get("proto")
    if protocol not in ("http", "tcp", "tls"):
        raise ConfigError(f"{label('proto')}: must be http, tcp or tls, got {protocol!r}")
    if "addr" not in values:
        raise ConfigError(f"{label('addr')}: missing")
    scheme, local_host, local_port = parse("addr", lambda v: _local_addr(v, protocol))
    for key in sorted(TUNNEL_KEYS - _ALLOWED[protocol] - {"addr"}):
        if values.get(key) is not None:
            raise ConfigError(f"{label(key)}: not allowed for {protocol} tunnels")
    if protocol == "tls" and values.get("subdomain") is None:
        raise ConfigError(
            f"{label('subdomain')}: required for tls tunnels (the TLS server name, "
            "NAME.DOMAIN, is what routes a connection to the tunnel)"
        )
    return TunnelSpec(
        name=name,
        protocol=protocol,
        local_host=local_host,
        local_port=local_port,
        local_scheme=scheme,
        subdomain=parse("subdomain", _subdomain),
        host_header_rewrite=bool(parse("host_header", _host_header)),
        remote_port=parse("remote_port", port),
        proxy_protocol=parse("proxy_protocol", _proxy_protocol),
    )


# --- the [tunnels] tables of a tunnels.toml ----------------------------------------------


def file_tunnels(tables: object) -> tuple[TunnelSpec, ...]:
    """Every [tunnels.NAME] table, checked one by one and together."""
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{file_label('tunnels')}: must hold at least one [tunnels.NAME] table")
    specs: list[TunnelSpec] = []
    for name, table in tables.items():
        prefix = f"tunnels.{name}."
        if not isinstance(table, dict):
            raise ConfigError(f"{file_label('tunnels.' + name)}: must be a table")
        if not _TUNNEL_NAME.match(name):
            raise ConfigError(f"{file_label('tunnels.' + name)}: names are 1-63 of A-Za-z0-9_.-")
        values = normalize_keys(table, _FILE_KEYS, prefix)
        specs.append(tunnel(name, values, _prefixed_label(prefix)))
    _check_together(specs)
    return tuple(specs)


def _prefixed_label(prefix: str) -> Callable[[str], str]:
    return lambda key: file_label(prefix + key)


def _check_together(tunnels: list[TunnelSpec]) -> None:
    if len(tunnels) > limits.MAX_TUNNELS_PER_CONNECTION:
        raise ConfigError(
            f"{file_label('tunnels')}: at most {limits.MAX_TUNNELS_PER_CONNECTION} tunnels "
            f"a connection, got {len(tunnels)}"
        )
    for key in ("subdomain", "remote_port"):
        seen: dict[object, str] = {}
        for spec in tunnels:
            value = getattr(spec, key)
            if value is not None and value in seen:
                raise ConfigError(
                    f"{file_label(f'tunnels.{spec.name}.{key}')}: {value!r} is also "
                    f"asked for by tunnels.{seen[value]}"
                )
            seen[value] = spec.name
