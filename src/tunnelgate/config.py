"""Frozen configuration for both sides, and the loaders that build it.

Values come from four places; the first that sets a key wins:

    command line  >  environment (TUNNELGATE_<OPTION>)  >  TOML file (--config)  >  defaults

Every gateway option is described once, in `GATEWAY_OPTIONS`: its parser, its help text and
its spellings (`--max-streams`, `TUNNELGATE_MAX_STREAMS`, `max_streams` or `max-streams` in
TOML). The CLI builds its parser from that table, so help, env and file never drift apart.

A bad value stops start-up with a `ConfigError` whose message names the key as the user
spelled it. Secrets (tokens, the JWT secret) are never echoed in messages or `repr`.
Empty environment variables count as unset, as in most container tooling.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from tunnelgate import limits
from tunnelgate.errors import ConfigError
from tunnelgate.proto.names import normalize_name

Address = tuple[str, int]
LogFormat = Literal["text", "json"]
ENV_PREFIX: Final = "TUNNELGATE_"


class _Invalid(Exception):
    """A value is wrong; the loader adds which key (and from where) to the message."""


# --- value parsers: raw value (str from CLI/env, or a TOML value) -> typed value --------


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"must be a non-empty string, got {value!r}")
    return value


def _secret(value: object) -> str:
    # Sent in an HTTP header: visible ASCII only. The value is never echoed.
    if not isinstance(value, str) or not value or not re.fullmatch(r"[\x21-\x7e]+", value):
        raise _Invalid("must be non-empty printable ASCII without spaces")
    return value


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise _Invalid(f"must be true or false, got {value!r}")


def _int(value: object, minimum: int, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        number = int(value)
    else:
        raise _Invalid(f"must be {what}, got {value!r}")
    if number < minimum:
        raise _Invalid(f"must be {what}, got {value!r}")
    return number


def _count(value: object) -> int:
    return _int(value, 1, "an integer >= 1")


def _port(value: object) -> int:
    port = _int(value, 1, "a port number 1-65535")
    if port > 65535:
        raise _Invalid(f"must be a port number 1-65535, got {value!r}")
    return port


def _seconds(positive: bool) -> Callable[[object], float]:
    what = "a number of seconds > 0" if positive else "a number of seconds >= 0"

    def parse(value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise _Invalid(f"must be {what}, got {value!r}") from None
        else:
            raise _Invalid(f"must be {what}, got {value!r}")
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise _Invalid(f"must be {what}, got {value!r}")
        return number

    return parse


def _hostname(value: str) -> str:
    """A lower-cased DNS host name (labels as tunnel names), or _Invalid."""
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or any(normalize_name(label) is None for label in labels):
        raise _Invalid(f"must be a valid host name, got {value!r}")
    return name


def _host(value: str) -> str:
    """An IP address literal or a host name."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return _hostname(value)


def _domain(value: object) -> str:
    text = _text(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return _hostname(text)
    raise _Invalid(f"must be a host name (tunnels are <name>.DOMAIN), not an address: {text!r}")


def _split_host_port(text: str) -> tuple[str, str]:
    """'HOST:PORT', '[V6]:PORT', ':PORT' or 'PORT' -> (host or '', port text)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise _Invalid(f"must be [IPV6]:PORT, got {text!r}")
        return host, port
    if text.count(":") > 1:
        raise _Invalid(f"IPv6 addresses need brackets, as in [::1]:8080, got {text!r}")
    host, _, port = text.rpartition(":")
    return host, port


def _listen(value: object) -> Address | None:
    """A listener: 'HOST:PORT', ':PORT' (all interfaces), 'PORT' (loopback) or 'off'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return ("127.0.0.1", _port(value))
    text = _text(value)
    if text.lower() == "off":
        return None
    host, port = _split_host_port(text)
    if ":" not in text:
        host = "127.0.0.1"
    elif not host:
        host = "0.0.0.0"
    return (_host(host), _port(port))


def _port_range(value: object) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2:
        low, high = _port(value[0]), _port(value[1])
    else:
        text = _text(value)
        if text.lower() == "off":
            return None
        low_text, _, high_text = text.partition("-")
        low = _port(low_text)
        high = _port(high_text) if high_text else low
    if low > high:
        raise _Invalid(f"must be LO-HI with LO <= HI, got {value!r}")
    return (low, high)


def _names(value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise _Invalid(f"must be comma-separated names, got {value!r}")
    names: list[str] = []
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if item == "":
            continue
        name = normalize_name(item) if isinstance(item, str) else None
        if name is None:
            raise _Invalid(f"{item!r} is not a valid name (1-63 of a-z 0-9 -)")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _tokens(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(dict.fromkeys(_secret(item) for item in items))


def _url(*schemes: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _text(value)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            raise _Invalid(f"must be a {'/'.join(schemes)} URL, got {text!r}") from None
        if parts.scheme.lower() not in schemes or not parts.hostname:
            raise _Invalid(f"must be a {' or '.join(s + '://' for s in schemes)} URL, got {text!r}")
        return text

    return parse


def _log_format(value: object) -> LogFormat:
    if value == "text":
        return "text"
    if value == "json":
        return "json"
    raise _Invalid(f"must be text or json, got {value!r}")


# --- the gateway -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway needs, validated. Durations are float seconds."""

    domain: str = "localhost"
    http: Address | None = ("127.0.0.1", 8080)
    https: Address | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tcp_ports: tuple[int, int] | None = None
    tcp_bind: str = "127.0.0.1"
    tokens: tuple[str, ...] = field(default=(), repr=False)
    tokens_file: str | None = None
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = None
    controller: str | None = None
    allow_anonymous: bool = False
    reserved: tuple[str, ...] = ("tunnel", "www", "api", "admin")
    admin: Address | None = None
    log_format: LogFormat = "text"
    redis: str | None = None
    heartbeat_interval: float = limits.HEARTBEAT_INTERVAL
    heartbeat_timeout: float = limits.HEARTBEAT_TIMEOUT
    idle_timeout: float = limits.IDLE_TIMEOUT
    reconnect_grace: float = limits.RECONNECT_GRACE
    head_timeout: float = limits.HEAD_TIMEOUT
    response_timeout: float = limits.RESPONSE_TIMEOUT
    max_header_bytes: int = limits.MAX_HEADER_BYTES
    max_streams: int = limits.MAX_STREAMS
    max_tunnels_per_token: int = limits.MAX_TUNNELS_PER_TOKEN
    auth_fail_rate: int = limits.AUTH_FAIL_RATE
    max_connections: int | None = None  # None: limits.default_max_connections(open files)
    max_connections_per_address: int = limits.MAX_CONNECTIONS_PER_ADDRESS

    @property
    def has_auth(self) -> bool:
        return bool(self.tokens or self.jwt_secret or self.jwt_public_key or self.controller)


@dataclass(frozen=True, slots=True)
class Option:
    """One option: its key ('max-streams'), the config field it sets, parser and help."""

    key: str
    field: str
    parse: Callable[[object], object]
    metavar: str | None  # None: a flag that takes no value
    help: str
    group: Literal["gateway", "limits", "client"] = "gateway"
    repeatable: bool = False
    path: bool = False  # relative paths in a config file are relative to the file
    unset: str = "none"  # how a None default reads in --help

    @property
    def flag(self) -> str:
        return "--" + self.key

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper().replace("-", "_")


def _gw(
    key: str, parse: Callable[[object], object], metavar: str | None, help: str, **kw: Any
) -> Option:
    name = "tokens" if key == "token" else key.replace("-", "_")
    return Option(key, name, parse, metavar, help, **kw)


GATEWAY_OPTIONS: Final[tuple[Option, ...]] = (
    _gw("domain", _domain, "D", "public hosts are <name>.D"),
    _gw("http", _listen, "ADDR",
        "public HTTP listener: HOST:PORT, :PORT (all interfaces), PORT (loopback) or off",
        unset="off"),
    _gw("https", _listen, "ADDR", "public HTTPS listener, as --http", unset="off"),
    _gw("tls-cert", _text, "F", "PEM certificate chain for --https (a wildcard *.D certificate)",
        path=True),
    _gw("tls-key", _text, "F", "PEM private key of --tls-cert", path=True),
    _gw("tcp-ports", _port_range, "LO-HI", "ports that TCP tunnels may be given", unset="off"),
    _gw("tcp-bind", lambda v: _host(_text(v)), "HOST", "address the TCP tunnel ports listen on"),
    _gw("token", _tokens, "T", "an accepted token (repeatable)", repeatable=True),
    _gw("tokens-file", _text, "F", "file of accepted tokens: one a line, # comments", path=True),
    _gw("jwt-secret", _secret, "S", "accept HS256 JWTs signed with this secret"),
    _gw("jwt-public-key", _text, "F", "accept RS256/ES256/EdDSA JWTs checked with this PEM key",
        path=True),
    _gw("controller", _url("http", "https"), "URL",
        "ask this controller (POST URL/v1/authorize) to authorize each tunnel"),
    _gw("allow-anonymous", _bool, None,
        "allow tunnels without auth on a non-loopback listener (without it, anonymous "
        "tunnels are allowed only while every listener is on loopback)"),
    _gw("reserved", _names, "NAMES", "comma-separated subdomains no tunnel may take"),
    _gw("admin", _listen, "ADDR", "admin API and metrics listener, as --http", unset="off"),
    _gw("log-format", _log_format, "text|json", "log lines as text, or one JSON object a line"),
    _gw("redis", _url("redis", "rediss", "unix"), "URL",
        "cluster mode: share routing with other gateways through this Redis"),
    _gw("heartbeat-interval", _seconds(True), "S", "ping period in seconds", group="limits"),
    _gw("heartbeat-timeout", _seconds(True), "S",
        "a peer silent this many seconds is dead", group="limits"),
    _gw("idle-timeout", _seconds(False), "S",
        "close a tunnel with no traffic for this many seconds, 0 = never", group="limits"),
    _gw("reconnect-grace", _seconds(False), "S",
        "seconds a dropped tunnel's name or port waits for its owner", group="limits"),
    _gw("head-timeout", _seconds(True), "S",
        "seconds a public client has to send a complete request head", group="limits"),
    _gw("response-timeout", _seconds(True), "S",
        "seconds the local app has to start its response before 504", group="limits"),
    _gw("max-header-bytes", _count, "N", "request heads larger than N bytes get 431",
        group="limits"),
    _gw("max-streams", _count, "N", "concurrent streams per tunnel connection", group="limits"),
    _gw("max-tunnels-per-token", _count, "N", "tunnels one token may hold at once",
        group="limits"),
    _gw("auth-fail-rate", _count, "N",
        "failed authentications per minute allowed from one address", group="limits"),
    _gw("max-connections", _count, "N",
        "public connections held at once; past it new ones are closed at once",
        group="limits",
        unset=f"the open-file limit less a reserve of a tenth, at least "
              f"{limits.FD_RESERVE_MIN}"),
    _gw("max-connections-per-address", _count, "N",
        "public connections one address (IPv6: one /64) may hold at once", group="limits"),
)  # fmt: skip

# Options that parse and validate but that this version cannot serve yet. The server
# refuses to start when one is set; each entry goes away with the feature.
NOT_YET_IMPLEMENTED: Final[tuple[str, ...]] = (
    "https",
    "tls_cert",
    "tls_key",
    "tcp_ports",
    "jwt_secret",
    "jwt_public_key",
    "controller",
    "admin",
    "redis",
)


def unsupported_options(cfg: GatewayConfig) -> list[str]:
    """The options set in `cfg` that this version does not implement, as '--flag' names."""
    return [
        "--" + name.replace("_", "-")
        for name in NOT_YET_IMPLEMENTED
        if getattr(cfg, name) is not None
    ]


def describe_default(option: Option, default: object) -> str:
    """A default as --help shows it: '127.0.0.1:8080', 'tunnel,www,api', '10', 'off'."""
    if default is None:
        return option.unset
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, tuple) and len(default) == 2 and isinstance(default[1], int):
        sep = ":" if option.parse is _listen else "-"
        return f"{default[0]}{sep}{default[1]}"
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default) or option.unset
    return str(default)


GATEWAY_DEFAULTS: Final[Mapping[str, object]] = {f.name: f.default for f in fields(GatewayConfig)}


def load_gateway_config(
    argv_values: Mapping[str, object], env: Mapping[str, str], config_path: str | None
) -> GatewayConfig:
    """Build the gateway's config; `argv_values` maps field names to what the CLI was given."""
    file_values = _read_toml(config_path) if config_path else {}
    raw = _resolve(GATEWAY_OPTIONS, argv_values, env, file_values, config_path)
    if raw.get("tokens_file"):
        file_tokens = _read_tokens_file(str(raw["tokens_file"]))
        raw["tokens"] = tuple(dict.fromkeys((*raw.get("tokens", ()), *file_tokens)))
    cfg = GatewayConfig(**raw)
    _check_gateway(cfg)
    return cfg


def _read_tokens_file(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tokens-file: cannot read {path!r}: {exc}") from None
    tokens: list[str] = []
    for number, line in enumerate(lines, 1):
        parts = line.split(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) == 2 and not parts[1].startswith("#"):
            raise ConfigError(f"--tokens-file: {path!r} line {number}: one token a line")
        try:
            tokens.append(_secret(parts[0]))
        except _Invalid as exc:
            raise ConfigError(f"--tokens-file: {path!r} line {number}: token {exc}") from None
    return tuple(tokens)


def _format_addr(addr: Address) -> str:
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"{host}:{addr[1]}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere: assume it is public


def _check_gateway(cfg: GatewayConfig) -> None:
    if cfg.heartbeat_timeout <= cfg.heartbeat_interval:
        raise ConfigError(
            f"--heartbeat-timeout: must be greater than --heartbeat-interval "
            f"({cfg.heartbeat_interval:g}), got {cfg.heartbeat_timeout:g}"
        )
    if cfg.http is None and cfg.https is None:
        raise ConfigError("--http: is off and --https is not set: no public listener")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        given, missing = ("--tls-cert", "--tls-key")
        if cfg.tls_cert is None:
            given, missing = missing, given
        raise ConfigError(f"{missing}: required with {given}")
    listeners = {"--http": cfg.http, "--https": cfg.https, "--admin": cfg.admin}
    bound = {flag: addr for flag, addr in listeners.items() if addr is not None}
    if len(set(bound.values())) < len(bound):
        raise ConfigError(f"{', '.join(bound)}: two listeners on the same address")
    if cfg.tcp_ports is not None:
        bound["--tcp-bind"] = (cfg.tcp_bind, cfg.tcp_ports[0])
    if cfg.has_auth or cfg.allow_anonymous:
        return
    for flag, addr in bound.items():
        if not _is_loopback(addr[0]):
            shown = addr[0] if flag == "--tcp-bind" else _format_addr(addr)
            raise ConfigError(
                f"{flag}: {shown} is not a loopback address and no authentication is "
                "configured (--token, --tokens-file, --jwt-secret, --jwt-public-key, "
                "--controller); configure one, or pass --allow-anonymous to accept "
                "anonymous tunnels from anywhere"
            )


# --- shared loading machinery ------------------------------------------------------------


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path!r} is not valid TOML: {exc}") from None


def _file_label(key: str) -> str:
    return f"config file key {key!r}"


def _normalize_keys(table: Mapping[str, Any], known: set[str], prefix: str) -> dict[str, Any]:
    """TOML keys with '-' read as '_'; an unknown or doubled key is a ConfigError."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            hint = difflib.get_close_matches(name, sorted(known), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{_file_label(prefix + key)}: unknown key{suffix}")
        if name in out:
            raise ConfigError(f"{_file_label(prefix + key)}: given twice ('-' and '_' spelling)")
        out[name] = value
    return out


def _resolve(
    options: tuple[Option, ...],
    argv_values: Mapping[str, object],
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    config_path: str | None,
) -> dict[str, Any]:
    """Parse each option from the first source that sets it; the result maps field names."""
    by_field = {opt.field: opt for opt in options}
    unknown = set(argv_values) - set(by_field)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    from_file = _normalize_keys(file_values, {opt.key.replace("-", "_") for opt in options}, "")
    base_dir = os.path.dirname(os.path.abspath(config_path)) if config_path else ""
    out: dict[str, Any] = {}
    for opt in options:
        file_key = opt.key.replace("-", "_")
        if opt.field in argv_values:
            label, value = opt.flag, argv_values[opt.field]
        elif env.get(opt.env_var):
            label, value = opt.env_var, env[opt.env_var]
        elif file_key in from_file:
            label, value = _file_label(file_key), from_file[file_key]
            if opt.path and isinstance(value, str) and value:
                value = os.path.join(base_dir, value)
        else:
            continue
        try:
            out[opt.field] = opt.parse(value)
        except _Invalid as exc:
            raise ConfigError(f"{label}: {exc}") from None
    return out


# --- the client --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """One tunnel the client asks for, and the local service it forwards to."""

    name: str
    protocol: Literal["http", "tcp"]
    local_host: str
    local_port: int
    local_scheme: Literal["http", "https"] = "http"
    subdomain: str | None = None  # http only; None = the gateway picks one
    host_header_rewrite: bool = False  # http only: send the local address as Host
    remote_port: int | None = None  # tcp only; None = the gateway picks one

    @property
    def local_address(self) -> str:
        """'HOST:PORT' of the local service ('[::1]:3000' for IPv6)."""
        return _format_addr((self.local_host, self.local_port))

    @property
    def local_url(self) -> str:
        """'http://127.0.0.1:3000' for http, '127.0.0.1:5432' for tcp, as output shows it."""
        if self.protocol == "tcp":
            return self.local_address
        return f"{self.local_scheme}://{self.local_address}"

    @property
    def local_host_header(self) -> str:
        """The Host header `--host-header rewrite` sends: the port only when not the default."""
        default_port = 443 if self.local_scheme == "https" else 80
        if self.local_port == default_port:
            return f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return self.local_address


@dataclass(frozen=True, slots=True)
class ClientConfig:
    server: str = "ws://127.0.0.1:8080/connect"
    token: str | None = field(default=None, repr=False)
    ca: str | None = None
    insecure: bool = False
    log_format: LogFormat = "text"
    max_retries: int | None = None  # None = forever
    tunnels: tuple[TunnelSpec, ...] = ()


def _server_url(value: object) -> str:
    text = _url("ws", "wss")(value)
    parts = urlsplit(text)
    if parts.username is not None or parts.fragment:
        raise _Invalid(f"must be a ws:// or wss:// URL without user or fragment, got {text!r}")
    path = parts.path if parts.path not in ("", "/") else "/connect"
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, ""))


def _ca_file(value: object) -> str:
    path = _text(value)
    if not os.path.isfile(path):
        raise _Invalid(f"no such file: {path!r}")
    return path


CLIENT_OPTIONS: Final[tuple[Option, ...]] = (
    Option("server", "server", _server_url, "URL",
           "gateway tunnel endpoint, ws:// or wss://", "client"),
    Option("token", "token", _secret, "T", "auth token, sent as Authorization: Bearer T", "client"),
    Option("ca", "ca", _ca_file, "FILE", "trust this CA (PEM) for wss://", "client", path=True),
    Option("insecure", "insecure", _bool, None,
           "do not verify the gateway's TLS certificate", "client"),
    Option("log-format", "log_format", _log_format, "text|json",
           "text for people, or one JSON object a line on stdout", "client"),
    Option("max-retries", "max_retries", lambda v: _int(v, 0, "an integer >= 0"), "N",
           "give up after N failed reconnects in a row", "client", unset="forever"),
)  # fmt: skip

CLIENT_DEFAULTS: Final[Mapping[str, object]] = {f.name: f.default for f in fields(ClientConfig)}

_TUNNEL_KEYS: Final = {"proto", "addr", "subdomain", "host_header", "remote_port"}
_TUNNEL_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,63}\Z")


def _local_addr(value: object, protocol: str) -> tuple[Literal["http", "https"], str, int]:
    """'PORT', 'HOST:PORT' or, for http, 'http(s)://HOST[:PORT][/]' -> (scheme, host, port)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "http", "127.0.0.1", _port(value)
    text = _text(value)
    if "://" not in text:
        host, port = _split_host_port(text)
        return "http", _host(host) if host else "127.0.0.1", _port(port)
    if protocol != "http":
        raise _Invalid(f"must be PORT or HOST:PORT, got {text!r}")
    try:
        parts = urlsplit(text)
        url_port = parts.port
    except ValueError:
        raise _Invalid(f"must be PORT, HOST:PORT or an http(s) URL, got {text!r}") from None
    scheme = parts.scheme.lower()
    bad = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
    if scheme not in ("http", "https") or not parts.hostname or bad:
        raise _Invalid(f"must be an http(s)://HOST[:PORT] URL without a path, got {text!r}")
    local_scheme: Literal["http", "https"] = "https" if scheme == "https" else "http"
    default_port = 443 if local_scheme == "https" else 80
    return local_scheme, _host(parts.hostname), url_port or default_port


def _subdomain(value: object) -> str:
    name = normalize_name(value) if isinstance(value, str) else None
    if name is None:
        raise _Invalid(
            f"{value!r} is not a valid name: 1-63 of a-z 0-9 -, not starting or ending with -"
        )
    return name


def _host_header(value: object) -> bool:
    if value != "rewrite":
        raise _Invalid(f"the only value is 'rewrite', got {value!r}")
    return True


def _tunnel(name: str, values: Mapping[str, Any], label: Callable[[str], str]) -> TunnelSpec:
    """One TunnelSpec from already-picked raw values; `label` names a key in messages."""

    def parse(key: str, parser: Callable[[object], Any]) -> Any:
        if values.get(key) is None:
            return None
        try:
            return parser(values[key])
        except _Invalid as exc:
            raise ConfigError(f"{label(key)}: {exc}") from None

    protocol = values.get("proto")
    if protocol not in ("http", "tcp"):
        raise ConfigError(f"{label('proto')}: must be http or tcp, got {protocol!r}")
    if "addr" not in values:
        raise ConfigError(f"{label('addr')}: missing")
    scheme, host, port = parse("addr", lambda v: _local_addr(v, protocol))
    for key in ("subdomain", "host_header") if protocol == "tcp" else ("remote_port",):
        if values.get(key) is not None:
            raise ConfigError(f"{label(key)}: not allowed for {protocol} tunnels")
    return TunnelSpec(
        name=name,
        protocol=protocol,
        local_host=host,
        local_port=port,
        local_scheme=scheme,
        subdomain=parse("subdomain", _subdomain),
        host_header_rewrite=bool(parse("host_header", _host_header)),
        remote_port=parse("remote_port", _port),
    )


def _prefixed_label(prefix: str) -> Callable[[str], str]:
    return lambda key: _file_label(prefix + key)


def _cli_label(key: str) -> str:
    return "--" + key.replace("_", "-")


def _file_tunnels(tables: object) -> tuple[TunnelSpec, ...]:
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{_file_label('tunnels')}: must hold at least one [tunnels.NAME] table")
    specs: list[TunnelSpec] = []
    for name, table in tables.items():
        prefix = f"tunnels.{name}."
        if not isinstance(table, dict):
            raise ConfigError(f"{_file_label('tunnels.' + name)}: must be a table")
        if not _TUNNEL_NAME.match(name):
            raise ConfigError(f"{_file_label('tunnels.' + name)}: names are 1-63 of A-Za-z0-9_.-")
        values = _normalize_keys(table, _TUNNEL_KEYS, prefix)
        specs.append(_tunnel(name, values, _prefixed_label(prefix)))
    return tuple(specs)


def _check_tunnels(tunnels: tuple[TunnelSpec, ...]) -> None:
    if len(tunnels) > limits.MAX_TUNNELS_PER_CONNECTION:
        raise ConfigError(
            f"{_file_label('tunnels')}: at most {limits.MAX_TUNNELS_PER_CONNECTION} tunnels "
            f"a connection, got {len(tunnels)}"
        )
    for key in ("subdomain", "remote_port"):
        seen: dict[object, str] = {}
        for spec in tunnels:
            value = getattr(spec, key)
            if value is not None and value in seen:
                raise ConfigError(
                    f"{_file_label(f'tunnels.{spec.name}.{key}')}: {value!r} is also "
                    f"asked for by tunnels.{seen[value]}"
                )
            seen[value] = spec.name


def load_client_config(
    command: Literal["http", "tcp", "start"],
    argv_values: Mapping[str, object],
    env: Mapping[str, str],
    config_path: str | None = None,
) -> ClientConfig:
    """Build the client's config.

    `argv_values` maps what the command line gave: the common options by field name
    (server, token, ca, insecure, log_format, max_retries) and, for `http`/`tcp`, the
    tunnel's addr, subdomain, host_header and remote_port. `start` reads its tunnels,
    and optionally the common options, from the TOML file at `config_path`.
    """
    tunnel_keys = {"addr", "subdomain", "host_header", "remote_port"}
    common = {k: v for k, v in argv_values.items() if k not in tunnel_keys}
    file_values: dict[str, Any] = {}
    if command == "start":
        if config_path is None:
            raise ConfigError("--config: required by start")
        file_values = _read_toml(config_path)
        file_values = _normalize_keys(
            file_values, {o.field for o in CLIENT_OPTIONS} | {"tunnels"}, ""
        )
        tunnels = _file_tunnels(file_values.pop("tunnels", None))
        _check_tunnels(tunnels)
    else:
        values = {k: v for k, v in argv_values.items() if k in tunnel_keys}
        tunnels = (_tunnel(command, {"proto": command, **values}, _cli_label),)
    raw = _resolve(CLIENT_OPTIONS, common, env, file_values, config_path)
    return ClientConfig(**raw, tunnels=tunnels)
