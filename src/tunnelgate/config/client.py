"""The client's frozen config (`tunnelgate http|tcp|tls|start`) and its loader.

The connection options come from the command line, the environment and, for `start`,
the top of the tunnels.toml; the tunnels themselves from the command line (`http`,
`tcp`, `tls`: one tunnel) or from the file's [tunnels.NAME] tables (`start`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from tunnelgate import limits
from tunnelgate.errors import ConfigError

from . import parsers
from .options import Option
from .parsers import Invalid, LogFormat
from .sources import normalize_keys, read_toml, resolve
from .tunnels import TUNNEL_KEYS, TunnelSpec, file_tunnels, tunnel


@dataclass(frozen=True, slots=True)
class ClientConfig:
    server: str = "ws://127.0.0.1:8080/connect"
    token: str | None = field(default=None, repr=False)
    ca: str | None = None
    insecure: bool = False
    # None: not chosen, so the live view when stdout is a terminal (client/live_view.py),
    # else text lines; "text" chosen explicitly keeps the lines at a terminal too.
    log_format: LogFormat | None = None
    max_retries: int | None = None  # None = forever
    # Our side of the heartbeat (SPEC names the same pair for the gateway): a gateway that
    # stops answering is found dead within interval + timeout.
    heartbeat_interval: float = limits.HEARTBEAT_INTERVAL
    heartbeat_timeout: float = limits.HEARTBEAT_TIMEOUT
    # On SIGINT/SIGTERM: how long the streams in flight get to finish (0 = cut at once).
    drain_timeout: float = limits.CLIENT_DRAIN_TIMEOUT
    tunnels: tuple[TunnelSpec, ...] = ()


def _server_url(value: object) -> str:
    text = parsers.url("ws", "wss")(value)
    parts = urlsplit(text)
    if parts.username is not None or parts.fragment:
        raise Invalid(f"must be a ws:// or wss:// URL without user or fragment, got {text!r}")
    path = parts.path if parts.path not in ("", "/") else "/connect"
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, ""))


def _ca_file(value: object) -> str:
    path = parsers.string(value)
    if not os.path.isfile(path):
        raise Invalid(f"no such file: {path!r}")
    return path


def _max_retries(value: object) -> int:
    return parsers.integer(value, 0, "an integer >= 0")


CLIENT_OPTIONS: Final[tuple[Option, ...]] = (
    Option("server", "server", _server_url, "URL",
           "gateway tunnel endpoint, ws:// or wss://", "client"),
    Option("token", "token", parsers.secret, "T",
           "auth token, sent as Authorization: Bearer T", "client"),
    Option("ca", "ca", _ca_file, "FILE", "trust this CA (PEM) for wss://", "client", path=True),
    Option("insecure", "insecure", parsers.boolean, None,
           "do not verify the gateway's TLS certificate", "client"),
    Option("log-format", "log_format", parsers.log_format, "text|json",
           "text lines for people, or one JSON object a line on stdout", "client",
           unset="the live view at a terminal, else text"),
    Option("max-retries", "max_retries", _max_retries, "N",
           "give up after N failed reconnects in a row", "client", unset="forever"),
    Option("heartbeat-interval", "heartbeat_interval", parsers.seconds(True), "S",
           "ping period in seconds", "client"),
    Option("heartbeat-timeout", "heartbeat_timeout", parsers.seconds(True), "S",
           "a gateway silent this many seconds is dead: reconnect", "client"),
    Option("drain-timeout", "drain_timeout", parsers.seconds(False), "S",
           "on SIGINT/SIGTERM, how long requests and connections in flight get to finish "
           "(the gateway sends no new ones); a second signal stops at once", "client"),
)  # fmt: skip

CLIENT_DEFAULTS: Final[Mapping[str, object]] = {f.name: f.default for f in fields(ClientConfig)}


def _cli_label(key: str) -> str:
    return "--" + key.replace("_", "-")


def load_client_config(
    command: Literal["http", "tcp", "tls", "start"],
    argv_values: Mapping[str, object],
    env: Mapping[str, str],
    config_path: str | None = None,
) -> ClientConfig:
    """Build the client's config.

    `argv_values` maps what the command line gave: the common options by field name
    (server, token, ca, insecure, log_format, max_retries) and, for `http`/`tcp`/`tls`,
    the tunnel's addr, subdomain, host_header, remote_port and proxy_protocol (which of
    them each protocol takes: tunnels.py). `start` reads its tunnels,
    and optionally the common options, from the TOML file at `config_path`.
    """
    common = {k: v for k, v in argv_values.items() if k not in TUNNEL_KEYS}
    file_values: dict[str, Any] = {}
    if command == "start":
        if config_path is None:
            raise ConfigError("--config: required by start")
        known = {opt.file_key for opt in CLIENT_OPTIONS} | {"tunnels"}
        file_values = normalize_keys(read_toml(config_path), known, "")
        tunnels = file_tunnels(file_values.pop("tunnels", None))
    else:
        values = {k: v for k, v in argv_values.items() if k in TUNNEL_KEYS}
        tunnels = (tunnel(command, {"proto": command, **values}, _cli_label),)
    given = resolve(CLIENT_OPTIONS, common, env, file_values, config_path)
    config = ClientConfig(**{name: item.value for name, item in given.items()}, tunnels=tunnels)
    if config.heartbeat_timeout <= config.heartbeat_interval:
        raise ConfigError(
            f"--heartbeat-timeout: must be greater than --heartbeat-interval "
            f"({config.heartbeat_interval:g}), got {config.heartbeat_timeout:g}"
        )
    return config
