"""config/client.py and config/tunnels.py: the client's options, its tunnels from the
command line and from a tunnels.toml, and the messages that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from config_support import write

from tunnelgate import limits
from tunnelgate.config import ClientConfig, TunnelSpec, load_client_config
from tunnelgate.errors import ConfigError

# --- client: addr parsing ----------------------------------------------------------------

Command = Literal["http", "tcp", "tls"]

ADDRS: list[tuple[Command, str, tuple[str, str, int]]] = [
    ("http", "3000", ("http", "127.0.0.1", 3000)),
    ("http", ":3000", ("http", "127.0.0.1", 3000)),
    ("http", "localhost:3000", ("http", "localhost", 3000)),
    ("http", "LocalHost:3000", ("http", "localhost", 3000)),
    ("http", "10.0.0.2:8000", ("http", "10.0.0.2", 8000)),
    ("http", "[::1]:3000", ("http", "::1", 3000)),
    ("http", "http://localhost:3000", ("http", "localhost", 3000)),
    ("http", "http://localhost:3000/", ("http", "localhost", 3000)),
    ("http", "http://example.com", ("http", "example.com", 80)),
    ("http", "https://example.com", ("https", "example.com", 443)),
    ("http", "HTTPS://[::1]:8443", ("https", "::1", 8443)),
    ("tcp", "5432", ("http", "127.0.0.1", 5432)),
    ("tcp", "db.internal:5432", ("http", "db.internal", 5432)),
    ("tls", "8443", ("http", "127.0.0.1", 8443)),
    ("tls", "[::1]:8443", ("http", "::1", 8443)),
]


@pytest.mark.parametrize(("command", "addr", "expected"), ADDRS)
def test_addr_parsing(command: Command, addr: str, expected: tuple[str, str, int]) -> None:
    name = {"subdomain": "app"} if command == "tls" else {}
    cfg = load_client_config(command, {"addr": addr, **name}, {})
    (spec,) = cfg.tunnels
    assert (spec.local_scheme, spec.local_host, spec.local_port) == expected
    assert spec.name == command
    assert spec.protocol == command


@pytest.mark.parametrize(
    ("command", "addr"),
    [
        ("http", "0"),
        ("http", "70000"),
        ("http", "localhost"),
        ("http", "localhost:"),
        ("http", "::1:3000"),
        ("http", "ftp://x:21"),
        ("http", "http://x:3000/app"),
        ("http", "http://x:3000/?q=1"),
        ("http", "http://user@x:3000"),
        ("http", "http://x:port"),
        ("tcp", "http://localhost:5432"),
        ("tls", "https://localhost:8443"),
    ],
)
def test_bad_addrs(command: Command, addr: str) -> None:
    with pytest.raises(ConfigError, match=r"^--addr: "):
        load_client_config(command, {"addr": addr, "subdomain": "x"}, {})


def test_http_options() -> None:
    argv: dict[str, object] = {"addr": "3000", "subdomain": "Web", "host_header": "rewrite"}
    (spec,) = load_client_config("http", argv, {}).tunnels
    assert spec == TunnelSpec(
        name="http",
        protocol="http",
        local_host="127.0.0.1",
        local_port=3000,
        subdomain="web",
        host_header_rewrite=True,
    )
    assert spec.local_url == "http://127.0.0.1:3000"
    assert spec.local_host_header == "127.0.0.1:3000"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ({"addr": "3000", "subdomain": "no_way"}, "--subdomain: 'no_way' is not a valid name"),
        ({"addr": "3000", "subdomain": "-x"}, "--subdomain: '-x' is not a valid name"),
        ({"addr": "3000", "host_header": "keep"}, "--host-header: the only value is 'rewrite'"),
        ({"addr": "3000", "remote_port": "20001"}, "--remote-port: not allowed for http"),
        ({"addr": "3000", "max_retries": "-1"}, "--max-retries: must be an integer >= 0"),
        ({"addr": "3000", "heartbeat_interval": "0"}, "--heartbeat-interval: must be a number"),
        (
            {"addr": "3000", "heartbeat_interval": "2", "heartbeat_timeout": "2"},
            "--heartbeat-timeout: must be greater than --heartbeat-interval (2), got 2",
        ),
        ({"addr": "3000", "log_format": "yaml"}, "--log-format: must be text or json"),
        ({"addr": "3000", "server": "http://gw/connect"}, "--server: must be a ws:// or wss://"),
        ({"addr": "3000", "server": "ws://"}, "--server: must be a ws:// or wss://"),
        ({"addr": "3000", "ca": "/nonexistent.pem"}, "--ca: no such file"),
    ],
)
def test_http_client_errors(argv: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_client_config("http", argv, {})
    assert str(info.value).startswith(message)


def test_tcp_options() -> None:
    (spec,) = load_client_config("tcp", {"addr": "5432", "remote_port": "20001"}, {}).tunnels
    assert (spec.protocol, spec.remote_port, spec.subdomain) == ("tcp", 20001, None)
    assert spec.local_url == "127.0.0.1:5432"
    with pytest.raises(ConfigError, match=r"^--subdomain: not allowed for tcp"):
        load_client_config("tcp", {"addr": "5432", "subdomain": "x"}, {})


def test_tcp_proxy_protocol() -> None:
    argv = {"addr": "5432", "proxy_protocol": "v2"}
    (spec,) = load_client_config("tcp", argv, {}).tunnels
    assert spec == TunnelSpec("tcp", "tcp", "127.0.0.1", 5432, proxy_protocol="v2")


def test_tls_options() -> None:
    argv = {"addr": "8443", "subdomain": "Secure", "proxy_protocol": "v1"}
    (spec,) = load_client_config("tls", argv, {}).tunnels
    assert spec == TunnelSpec(
        "tls", "tls", "127.0.0.1", 8443, subdomain="secure", proxy_protocol="v1"
    )
    assert spec.local_url == "127.0.0.1:8443"


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("tls", {"addr": "8443"}, "--subdomain: required for tls tunnels"),
        ("tls", {"addr": "8443", "subdomain": "x", "remote_port": "1"}, "--remote-port: not "),
        ("tls", {"addr": "8443", "subdomain": "x", "host_header": "rewrite"}, "--host-header: "),
        ("tls", {"addr": "8443", "subdomain": "x", "proxy_protocol": "v3"}, "--proxy-protocol: "),
        ("tcp", {"addr": "5432", "proxy_protocol": "V1"}, "--proxy-protocol: must be v1 or v2"),
        ("http", {"addr": "3000", "proxy_protocol": "v1"}, "--proxy-protocol: not allowed for"),
    ],
)
def test_tcp_and_tls_errors(command: Command, argv: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_client_config(command, argv, {})
    assert str(info.value).startswith(message)


def test_local_host_header_omits_default_port() -> None:
    (spec,) = load_client_config("http", {"addr": "https://app.test"}, {}).tunnels
    assert spec.local_host_header == "app.test"
    assert spec.local_url == "https://app.test:443"
    (spec,) = load_client_config("http", {"addr": "[::1]:80"}, {}).tunnels
    assert spec.local_host_header == "[::1]"


# --- client: common options and environment ----------------------------------------------


def test_client_defaults() -> None:
    cfg = load_client_config("http", {"addr": "3000"}, {})
    assert cfg.server == "ws://127.0.0.1:8080/connect"
    assert (cfg.token, cfg.ca, cfg.insecure, cfg.log_format, cfg.max_retries) == (
        None,
        None,
        False,
        None,  # unset: the live view at a terminal, text lines elsewhere
        None,
    )


CLIENT_ENV: list[tuple[dict[str, object], dict[str, str], dict[str, object]]] = [
    (
        {},
        {"TUNNELGATE_SERVER": "wss://gw.example/connect", "TUNNELGATE_TOKEN": "envtok"},
        {"server": "wss://gw.example/connect", "token": "envtok"},
    ),
    (
        {"server": "ws://cli:1/connect", "token": "clitok"},
        {"TUNNELGATE_SERVER": "wss://gw.example/connect", "TUNNELGATE_TOKEN": "envtok"},
        {"server": "ws://cli:1/connect", "token": "clitok"},
    ),
    ({}, {"TUNNELGATE_SERVER": "wss://gw.example"}, {"server": "wss://gw.example/connect"}),
    ({"server": "WS://h:1/"}, {}, {"server": "ws://h:1/connect"}),
    ({"server": "ws://h:1/edge/connect"}, {}, {"server": "ws://h:1/edge/connect"}),
    (
        {"insecure": True, "max_retries": "3", "log_format": "json"},
        {"TUNNELGATE_INSECURE": "false", "TUNNELGATE_MAX_RETRIES": "9"},
        {"insecure": True, "max_retries": 3, "log_format": "json"},
    ),
    (
        {},
        {"TUNNELGATE_INSECURE": "1", "TUNNELGATE_MAX_RETRIES": "0", "TUNNELGATE_HTTP": "off"},
        {"insecure": True, "max_retries": 0},
    ),
]


@pytest.mark.parametrize(("argv", "env", "expected"), CLIENT_ENV)
def test_client_flags_and_env(
    argv: dict[str, object], env: dict[str, str], expected: dict[str, object]
) -> None:
    cfg = load_client_config("http", {"addr": "3000", **argv}, env)
    assert {key: getattr(cfg, key) for key in expected} == expected


def test_client_token_not_in_repr() -> None:
    cfg = load_client_config("http", {"addr": "3000", "token": "s3cret"}, {})
    assert "s3cret" not in repr(cfg)


# --- client: tunnels.toml ----------------------------------------------------------------

TUNNELS_TOML = """
server = "wss://tunnel.example.com/connect"
token = "filetok"
[tunnels.web]
proto = "http"
addr = "3000"
subdomain = "Web"
host_header = "rewrite"
[tunnels.api]
proto = "http"
addr = "https://localhost:8443"
[tunnels.db]
proto = "tcp"
addr = "5432"
remote-port = 20001
proxy_protocol = "v2"
[tunnels.secure]
proto = "tls"
addr = "[::1]:8443"
subdomain = "secure"
proxy-protocol = "v1"
"""


def test_tunnels_toml(tmp_path: Path) -> None:
    path = write(tmp_path, TUNNELS_TOML, "tunnels.toml")
    cfg = load_client_config("start", {}, {}, path)
    assert cfg == ClientConfig(
        server="wss://tunnel.example.com/connect",
        token="filetok",
        tunnels=(
            TunnelSpec("web", "http", "127.0.0.1", 3000, subdomain="web", host_header_rewrite=True),
            TunnelSpec("api", "http", "localhost", 8443, local_scheme="https"),
            TunnelSpec("db", "tcp", "127.0.0.1", 5432, remote_port=20001, proxy_protocol="v2"),
            TunnelSpec("secure", "tls", "::1", 8443, subdomain="secure", proxy_protocol="v1"),
        ),
    )


def test_tunnels_toml_flags_and_env_win(tmp_path: Path) -> None:
    path = write(tmp_path, TUNNELS_TOML, "tunnels.toml")
    env = {"TUNNELGATE_SERVER": "ws://env:1/connect", "TUNNELGATE_TOKEN": "envtok"}
    cfg = load_client_config("start", {"token": "clitok"}, env, path)
    assert (cfg.server, cfg.token) == ("ws://env:1/connect", "clitok")


def test_tunnels_toml_ca_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = write(tmp_path, 'ca = "ca.pem"\n[tunnels.a]\nproto = "http"\naddr = "1"\n', "t.toml")
    assert load_client_config("start", {}, {}, path).ca == str(tmp_path / "ca.pem")


def _tunnels(count: int) -> str:
    return "".join(f'[tunnels.t{i}]\nproto = "tcp"\naddr = "{i + 1}"\n' for i in range(count))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('server = "ws://x/connect"', "config file key 'tunnels': must hold at least one"),
        ("[tunnels]", "config file key 'tunnels': must hold at least one"),
        ("tunnels = 3", "config file key 'tunnels': must hold at least one"),
        ('servr = "x"\n' + _tunnels(1), "config file key 'servr': unknown key"),
        (
            '[tunnels.a]\nproto = "http"\naddr = "1"\nport = 2',
            "config file key 'tunnels.a.port': unknown",
        ),
        ('[tunnels.a]\naddr = "1"', "config file key 'tunnels.a.proto': must be http, tcp or tls"),
        (
            '[tunnels.a]\nproto = "udp"\naddr = "1"',
            "config file key 'tunnels.a.proto': must be http, tcp or tls",
        ),
        ('[tunnels.a]\nproto = "http"', "config file key 'tunnels.a.addr': missing"),
        ('[tunnels.a]\nproto = "http"\naddr = "x"', "config file key 'tunnels.a.addr': must be"),
        (
            '[tunnels.a]\nproto = "tcp"\naddr = "1"\nsubdomain = "x"',
            "config file key 'tunnels.a.subdomain': not allowed for tcp tunnels",
        ),
        (
            '[tunnels.a]\nproto = "tls"\naddr = "1"',
            "config file key 'tunnels.a.subdomain': required for tls tunnels",
        ),
        (
            '[tunnels.a]\nproto = "tcp"\naddr = "1"\nproxy_protocol = 2',
            "config file key 'tunnels.a.proxy_protocol': must be v1 or v2",
        ),
        (
            '[tunnels.a]\nproto = "http"\naddr = "1"\nsubdomain = "x"\n'
            '[tunnels.b]\nproto = "tls"\naddr = "2"\nsubdomain = "x"',
            "config file key 'tunnels.b.subdomain': 'x' is also asked for by tunnels.a",
        ),
        (
            '[tunnels.a]\nproto = "http"\naddr = "1"\nremote_port = 5',
            "config file key 'tunnels.a.remote_port': not allowed for http tunnels",
        ),
        (
            '[tunnels.a]\nproto = "http"\naddr = "1"\nsubdomain = "a_b"',
            "config file key 'tunnels.a.subdomain': 'a_b' is not a valid name",
        ),
        (
            '[tunnels.a]\nproto = "http"\naddr = "1"\nsubdomain = "x"\n'
            '[tunnels.b]\nproto = "http"\naddr = "2"\nsubdomain = "X"',
            "config file key 'tunnels.b.subdomain': 'x' is also asked for by tunnels.a",
        ),
        (
            '[tunnels."a b"]\nproto = "http"\naddr = "1"',
            "config file key 'tunnels.a b': names are",
        ),
        ('token = "a b"\n' + _tunnels(1), "config file key 'token': must be non-empty"),
        (_tunnels(limits.MAX_TUNNELS_PER_CONNECTION + 1), "config file key 'tunnels': at most"),
    ],
)
def test_tunnels_toml_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "tunnels.toml")
    with pytest.raises(ConfigError) as info:
        load_client_config("start", {}, {}, path)
    assert str(info.value).startswith(message)


def test_tunnels_toml_at_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, _tunnels(limits.MAX_TUNNELS_PER_CONNECTION), "tunnels.toml")
    cfg = load_client_config("start", {}, {}, path)
    assert len(cfg.tunnels) == limits.MAX_TUNNELS_PER_CONNECTION


def test_client_config_is_frozen() -> None:
    cfg: Any = ClientConfig()
    with pytest.raises(AttributeError):
        cfg.server = "ws://x/connect"


def test_heartbeat_options() -> None:
    cfg = load_client_config("http", {"addr": "3000"}, {})
    assert (cfg.heartbeat_interval, cfg.heartbeat_timeout) == (10.0, 30.0)
    argv = {"addr": "3000", "heartbeat_interval": "0.5", "heartbeat_timeout": "1.5"}
    cfg = load_client_config("http", argv, {})
    assert (cfg.heartbeat_interval, cfg.heartbeat_timeout) == (0.5, 1.5)
