"""The gateway's frozen config, and the loader that builds and checks it.

Loading goes: parse every option from its first source (sources.py), refuse the options
this version does not implement, read the tokens file, then check what no single value
can tell (the heartbeat pair, a public listener, the anonymous rule).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from tunnelgate import limits
from tunnelgate.errors import ConfigError

from .gateway_options import GATEWAY_OPTIONS
from .parsers import Address, LogFormat, format_address
from .sources import Given, read_toml, resolve
from .tokens_file import read_tokens_file


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway needs, validated. Durations are float seconds.

    One field per implemented option of GATEWAY_OPTIONS, with the same name (`--token`
    sets `tokens`), and `file_token_digests`: what `--tokens-file` held when the config was
    loaded (SIGHUP reads the file again: gateway/app.py).
    """

    domain: str = "localhost"
    http: Address | None = ("127.0.0.1", 8080)
    https: Address | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    state_dir: str | None = None  # None: the user's data directory (gateway/selfsigned.py)
    redirect_http: bool = False
    admin: Address | None = None
    admin_token: str | None = field(default=None, repr=False)
    metrics_per_tunnel: bool = False
    acme_email: str | None = None
    acme_directory: str | None = None  # None: Let's Encrypt (gateway/acme.py)
    tcp_ports: tuple[int, int] | None = None  # None: no TCP tunnels
    tcp_bind: str = "127.0.0.1"
    tokens: tuple[str, ...] = field(default=(), repr=False)
    tokens_file: str | None = None
    # SHA-256 hex digests of the file's tokens (config/tokens_file.py), never the tokens.
    file_token_digests: tuple[str, ...] = field(default=(), repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = None  # a file: PEM key or certificate, or JWKS
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    controller: str | None = None
    controller_timeout: float = limits.CONTROLLER_TIMEOUT
    controller_cache_ttl: float = limits.CONTROLLER_CACHE_TTL
    allow_anonymous: bool = False
    reserved: tuple[str, ...] = ("tunnel", "www", "api", "admin")
    log_format: LogFormat = "text"
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
    handshake_timeout: float = limits.TLS_HANDSHAKE_TIMEOUT
    drain_timeout: float = limits.DRAIN_TIMEOUT
    grace_hold: float = limits.GRACE_HOLD
    # Cluster mode (issue 12): all three or none.
    redis: str | None = field(default=None, repr=False)  # the URL may carry a password
    cluster_secret: str | None = field(default=None, repr=False)
    advertise: Address | None = None
    # --workers: `auto` is resolved at load (usable_cores); worker i's config: for_worker.
    workers: int = 1


GATEWAY_DEFAULTS: Final[Mapping[str, object]] = {f.name: f.default for f in fields(GatewayConfig)}


def load_gateway_config(
    argv_values: Mapping[str, object], env: Mapping[str, str], config_path: str | None
) -> GatewayConfig:
    """Build the gateway's config; `argv_values` maps field names to what the CLI was given."""
    file_values = read_toml(config_path) if config_path else {}
    given = resolve(GATEWAY_OPTIONS, argv_values, env, file_values, config_path)
    raw = _implemented_values(given)
    if raw.get("workers") == "auto":
        raw["workers"] = usable_cores()
    if raw.get("tokens_file"):
        raw["file_token_digests"] = read_tokens_file(str(raw["tokens_file"]))
    cfg = GatewayConfig(**raw)
    _check_gateway(cfg)
    return cfg


def _implemented_values(given: Mapping[str, Given]) -> dict[str, Any]:
    """The values of the implemented options, by field. An option this version cannot serve
    stops start-up, named as the user spelled it, unless it is at its default (off, none):
    a shared config file may say `https = "off"`.
    """
    values: dict[str, Any] = {}
    refused: list[str] = []
    for opt in GATEWAY_OPTIONS:
        if opt.field not in given:
            continue
        if opt.implemented:
            values[opt.field] = given[opt.field].value
        elif given[opt.field].value != opt.default:
            refused.append(given[opt.field].label)
    if refused:
        raise ConfigError(f"not implemented in this version: {', '.join(refused)}")
    return values


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
    listeners = [
        (key, addr) for key, addr in (("--http", cfg.http), ("--https", cfg.https)) if addr
    ]
    if not listeners:
        raise ConfigError("--http: is off and --https is not set: no public listener")
    if cfg.http is not None and cfg.http == cfg.https:
        raise ConfigError(f"--https: {format_address(cfg.https)} is --http's address too")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        given, missing = (
            ("--tls-cert", "--tls-key") if cfg.tls_key is None else ("--tls-key", "--tls-cert")
        )
        raise ConfigError(f"{missing}: needed with {given}")
    if cfg.tls_cert is not None and cfg.https is None:
        raise ConfigError("--tls-cert: serves nothing without --https")
    if cfg.acme_email is not None and (cfg.https is None or cfg.http is None):
        raise ConfigError("--acme-email: needs --https, and --http for the HTTP-01 challenges")
    if cfg.acme_email is not None and cfg.tls_cert is not None:
        raise ConfigError("--acme-email: per-host certificates replace --tls-cert; give one")
    if cfg.acme_directory is not None and cfg.acme_email is None:
        raise ConfigError("--acme-directory: needs --acme-email")
    if cfg.admin is not None and cfg.admin_token is None and not _is_loopback(cfg.admin[0]):
        raise ConfigError(
            f"--admin: {format_address(cfg.admin)} is not a loopback address: give "
            "--admin-token, which its requests must then carry"
        )
    if cfg.metrics_per_tunnel and cfg.admin is None:
        raise ConfigError("--metrics-per-tunnel: /metrics is served by --admin, which is off")
    if cfg.admin is not None and cfg.admin in (cfg.http, cfg.https):
        raise ConfigError(f"--admin: {format_address(cfg.admin)} is a public listener's address")
    if cfg.redirect_http and (cfg.https is None or cfg.http is None):
        raise ConfigError("--redirect-http: needs both --http and --https")
    _check_jwt(cfg)
    _check_cluster(cfg)
    _check_workers(cfg)
    # The anonymous rule (SPEC): with no auth, every listener must be on loopback.
    if cfg.tcp_ports is not None:
        listeners.append(("--tcp-bind", (cfg.tcp_bind, cfg.tcp_ports[0])))
    if cfg.allow_anonymous or any(auth_methods(cfg)):
        return
    for key, addr in listeners:
        if not _is_loopback(addr[0]):
            raise ConfigError(
                f"{key}: {format_address(addr)} is not a loopback address and no "
                "authentication is configured (--token, --tokens-file, --jwt-secret, "
                "--jwt-public-key, --controller); configure one, or "
                "pass --allow-anonymous to accept anonymous tunnels from anywhere"
            )


def _check_cluster(cfg: GatewayConfig) -> None:
    given = [
        key
        for key, value in (
            ("--redis", cfg.redis),
            ("--cluster-secret", cfg.cluster_secret),
            ("--advertise", cfg.advertise),
        )
        if value is not None
    ]
    if given and len(given) < 3:
        missing = [k for k in ("--redis", "--cluster-secret", "--advertise") if k not in given]
        raise ConfigError(
            f"{missing[0]}: cluster mode needs --redis, --cluster-secret and "
            f"--advertise together (given: {', '.join(given)})"
        )
    if cfg.cluster_secret is not None and len(cfg.cluster_secret.encode()) < 32:
        raise ConfigError("--cluster-secret: must be at least 32 bytes")
    if cfg.advertise is not None and cfg.advertise in (cfg.http, cfg.https, cfg.admin):
        raise ConfigError(
            f"--advertise: {format_address(cfg.advertise)} is another listener's address"
        )


def usable_cores() -> int:
    """What `--workers auto` means: the CPUs this process may run on (its affinity set,
    which a container's cpuset narrows), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _shifted(addr: Address | None, index: int) -> Address | None:
    return None if addr is None else (addr[0], addr[1] + index)


def for_worker(cfg: GatewayConfig, index: int) -> GatewayConfig:
    """Worker `index`'s config: the same, but its node identity and internal link
    (--advertise) and its admin API (--admin) on the given port + index, since those
    belong to one process; the public listeners are shared (SO_REUSEPORT)."""
    return replace(cfg, advertise=_shifted(cfg.advertise, index), admin=_shifted(cfg.admin, index))


def _check_workers(cfg: GatewayConfig) -> None:
    if cfg.workers == 1:
        return
    if cfg.redis is None:
        raise ConfigError(
            f"--workers: {cfg.workers} processes share one namespace through --redis (with "
            "--cluster-secret and --advertise); give those, or --workers 1"
        )
    if cfg.acme_email is not None:
        # HTTP-01 answers live in the memory of the worker that ordered, and the CA's
        # request may reach another worker (docs/cluster.md, "Workers").
        raise ConfigError("--acme-email: not supported with --workers above 1 yet")
    taken = {addr for addr in (cfg.http, cfg.https) if addr is not None}
    for key, addr in (("--advertise", cfg.advertise), ("--admin", cfg.admin)):
        if addr is None:
            continue
        if addr[1] + cfg.workers - 1 > 65535:
            raise ConfigError(
                f"--workers: worker {cfg.workers - 1}'s {key} port would be "
                f"{addr[1] + cfg.workers - 1}, past 65535"
            )
        for index in range(cfg.workers):
            shifted = (addr[0], addr[1] + index)
            if shifted in taken:
                raise ConfigError(
                    f"--workers: worker {index}'s {key} address {format_address(shifted)} "
                    "is another listener's address (worker i's is the given port + i)"
                )
            taken.add(shifted)


def _check_jwt(cfg: GatewayConfig) -> None:
    least = limits.MIN_JWT_SECRET_BYTES
    if cfg.jwt_secret is not None and len(cfg.jwt_secret.encode()) < least:
        raise ConfigError(
            f"--jwt-secret: must be at least {least} bytes (RFC 7518: an HS256 key as long "
            "as the hash)"
        )
    jwt = cfg.jwt_secret is not None or cfg.jwt_public_key is not None
    for key, value in (("--jwt-audience", cfg.jwt_audience), ("--jwt-issuer", cfg.jwt_issuer)):
        if value is not None and not jwt:
            message = "checks JWTs, and neither --jwt-secret nor --jwt-public-key is set"
            raise ConfigError(f"{key}: {message}")


def auth_methods(cfg: GatewayConfig) -> tuple[str, ...]:
    """The ways tokens are checked, in the order they are tried (gateway/app.py). A tokens
    file makes static tokens a method even while it is empty: nobody gets in until a
    token is added (SIGHUP), rather than everybody."""
    methods = (
        ("token", bool(cfg.tokens) or cfg.tokens_file is not None),
        ("jwt", cfg.jwt_secret is not None or cfg.jwt_public_key is not None),
        ("controller", cfg.controller is not None),
    )
    return tuple(name for name, on in methods if on)
