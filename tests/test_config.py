"""config.py: precedence, parsing, validation and the messages that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from tunnelgate import limits
from tunnelgate.config import (
    GATEWAY_OPTIONS,
    NOT_YET_IMPLEMENTED,
    ClientConfig,
    GatewayConfig,
    TunnelSpec,
    load_client_config,
    load_gateway_config,
    unsupported_options,
)
from tunnelgate.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "gw.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def gateway(
    argv: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    config_path: str | None = None,
) -> GatewayConfig:
    return load_gateway_config(argv or {}, env or {}, config_path)


# --- gateway: defaults and precedence ----------------------------------------------------


def test_defaults_match_spec_and_limits() -> None:
    cfg = gateway()
    assert cfg == GatewayConfig()
    assert cfg.domain == "localhost"
    assert cfg.http == ("127.0.0.1", 8080)
    assert cfg.https is None
    assert cfg.tcp_bind == "127.0.0.1"
    assert cfg.reserved == ("tunnel", "www", "api", "admin")
    assert cfg.log_format == "text"
    assert cfg.heartbeat_interval == limits.HEARTBEAT_INTERVAL
    assert cfg.max_streams == limits.MAX_STREAMS
    assert cfg.max_header_bytes == limits.MAX_HEADER_BYTES
    assert cfg.max_connections is None  # derived from the open-file limit at start-up
    assert cfg.max_connections_per_address == limits.MAX_CONNECTIONS_PER_ADDRESS == 1000
    assert unsupported_options(cfg) == []


# (field, CLI value, env value, file text, expected from each of cli/env/file/default)
PRECEDENCE: list[tuple[str, str, str, str, tuple[object, object, object, object]]] = [
    (
        "max_streams",
        "7",
        "8",
        "max_streams = 9",
        (7, 8, 9, limits.MAX_STREAMS),
    ),
    (
        "domain",
        "Cli.Example",
        "env.example",
        'domain = "file.example"',
        ("cli.example", "env.example", "file.example", "localhost"),
    ),
    (
        "http",
        "0.0.0.0:81",
        "127.0.0.1:82",
        'http = "127.0.0.1:83"',
        (("0.0.0.0", 81), ("127.0.0.1", 82), ("127.0.0.1", 83), ("127.0.0.1", 8080)),
    ),
    (
        "heartbeat_interval",
        "1.5",
        "2",
        "heartbeat-interval = 2.5",
        (1.5, 2.0, 2.5, limits.HEARTBEAT_INTERVAL),
    ),
    (
        "reserved",
        "a,B",
        "c",
        'reserved = ["d", "e"]',
        (("a", "b"), ("c",), ("d", "e"), ("tunnel", "www", "api", "admin")),
    ),
    (
        "max_connections",
        "500",
        "600",
        "max-connections = 700",
        (500, 600, 700, None),
    ),
    (
        "max_connections_per_address",
        "5",
        "6",
        "max_connections_per_address = 7",
        (5, 6, 7, limits.MAX_CONNECTIONS_PER_ADDRESS),
    ),
    (
        "log_format",
        "json",
        "text",
        'log_format = "json"',
        ("json", "text", "json", "text"),
    ),
]


@pytest.mark.parametrize(("name", "cli", "env", "file", "expected"), PRECEDENCE)
def test_precedence_cli_env_file_default(
    tmp_path: Path,
    name: str,
    cli: str,
    env: str,
    file: str,
    expected: tuple[object, object, object, object],
) -> None:
    env_var = "TUNNELGATE_" + name.upper()
    path = write(tmp_path, file + '\ntoken = "t"\n')  # a token: 0.0.0.0 needs auth
    argv: dict[str, object] = {name: cli}
    assert getattr(gateway(argv, {env_var: env}, path), name) == expected[0]
    assert getattr(gateway({}, {env_var: env}, path), name) == expected[1]
    assert getattr(gateway({}, {}, path), name) == expected[2]
    assert getattr(gateway({}, {}, None), name) == expected[3]


def test_empty_env_value_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "max_streams = 9")
    assert gateway({}, {"TUNNELGATE_MAX_STREAMS": ""}, path).max_streams == 9


def test_unknown_env_vars_are_ignored() -> None:
    env = {"TUNNELGATE_SERVER": "ws://x/connect", "TUNNELGATE_WHATEVER": "1"}
    assert gateway({}, env) == GatewayConfig()


# --- gateway: errors name the key --------------------------------------------------------

BAD_VALUES: list[tuple[dict[str, object], dict[str, str], str]] = [
    ({"max_streams": "abc"}, {}, "--max-streams: must be an integer >= 1, got 'abc'"),
    ({"max_streams": "0"}, {}, "--max-streams: must be an integer >= 1"),
    ({"max_connections": "0"}, {}, "--max-connections: must be an integer >= 1, got '0'"),
    ({"max_connections": "1e4"}, {}, "--max-connections: must be an integer >= 1"),
    (
        {},
        {"TUNNELGATE_MAX_CONNECTIONS_PER_ADDRESS": "-3"},
        "TUNNELGATE_MAX_CONNECTIONS_PER_ADDRESS: must be an integer >= 1",
    ),
    ({}, {"TUNNELGATE_MAX_STREAMS": "-1"}, "TUNNELGATE_MAX_STREAMS: must be an integer >= 1"),
    ({"heartbeat_interval": "0"}, {}, "--heartbeat-interval: must be a number of seconds > 0"),
    ({"idle_timeout": "-1"}, {}, "--idle-timeout: must be a number of seconds >= 0"),
    ({"idle_timeout": "nan"}, {}, "--idle-timeout: must be a number of seconds >= 0"),
    ({"reconnect_grace": "inf"}, {}, "--reconnect-grace: must be a number of seconds"),
    ({"http": "127.0.0.1:0"}, {}, "--http: must be a port number 1-65535"),
    ({"http": "127.0.0.1:70000"}, {}, "--http: must be a port number 1-65535"),
    ({"http": "::1:80"}, {}, "--http: IPv6 addresses need brackets"),
    ({"http": "bad host:80"}, {}, "--http: must be a valid host name"),
    ({"domain": "-bad.example"}, {}, "--domain: must be a valid host name"),
    ({"domain": "127.0.0.1"}, {}, "--domain: must be a host name"),
    ({"tcp_ports": "200-100"}, {}, "--tcp-ports: must be LO-HI with LO <= HI"),
    ({"tcp_ports": "1-99999"}, {}, "--tcp-ports: must be a port number 1-65535"),
    ({"log_format": "xml"}, {}, "--log-format: must be text or json, got 'xml'"),
    ({"reserved": "ok,no_way"}, {}, "--reserved: 'no_way' is not a valid name"),
    ({}, {"TUNNELGATE_ALLOW_ANONYMOUS": "maybe"}, "TUNNELGATE_ALLOW_ANONYMOUS: must be true"),
    ({"controller": "ftp://x"}, {}, "--controller: must be a http:// or https:// URL"),
    ({"redis": "http://x"}, {}, "--redis: must be a redis:// or rediss:// or unix:// URL"),
    ({"heartbeat_timeout": "5"}, {}, "--heartbeat-timeout: must be greater than"),
    ({"http": "off"}, {}, "--http: is off and --https is not set"),
    ({"tls_cert": "c.pem"}, {}, "--tls-key: required with --tls-cert"),
    ({"tls_key": "k.pem"}, {}, "--tls-cert: required with --tls-key"),
    ({"admin": "127.0.0.1:8080"}, {}, "--http, --admin: two listeners on the same address"),
    ({"nonsense": "1"}, {}, "unknown option(s): nonsense"),
]


@pytest.mark.parametrize(("argv", "env", "message"), BAD_VALUES)
def test_bad_values_name_the_key(
    argv: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        gateway(argv, env)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "max_stream = 3",
            "config file key 'max_stream': unknown key (did you mean 'max_streams'?)",
        ),
        ("frobnicate = 3", "config file key 'frobnicate': unknown key"),
        ('max_streams = "x"', "config file key 'max_streams': must be an integer >= 1, got 'x'"),
        ("max_streams = true", "config file key 'max_streams': must be an integer >= 1"),
        ("heartbeat-interval = -2", "config file key 'heartbeat_interval': must be a number"),
        ("max_streams = 3\nmax-streams = 4", "config file key 'max-streams': given twice"),
        ("reserved = [1]", "config file key 'reserved': 1 is not a valid name"),
        ("max_streams = ", "--config: "),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        gateway(config_path=write(tmp_path, text))
    assert str(info.value).startswith(message)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match=r"^--config: cannot read '/nonexistent/gw.toml'"):
        gateway(config_path="/nonexistent/gw.toml")


def test_secrets_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        gateway({"tokens": ["has space"]})
    assert "has space" not in str(info.value)
    assert str(info.value).startswith("--token: ")
    cfg = gateway({"tokens": ["s3cret"], "jwt_secret": "also-s3cret"})
    assert "s3cret" not in repr(cfg)


# --- gateway: listeners, tokens, reserved ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", None),
        ("OFF", None),
        ("9000", ("127.0.0.1", 9000)),
        (":9000", ("0.0.0.0", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:8080", ("::", 8080)),
    ],
)
def test_listen_addresses(value: str, expected: tuple[str, int] | None) -> None:
    argv: dict[str, object] = {"admin": value, "allow_anonymous": True}
    assert gateway(argv).admin == expected


def test_http_off_with_https_is_allowed() -> None:
    cfg = gateway({"http": "off", "https": "127.0.0.1:8443"})
    assert cfg.http is None
    assert cfg.https == ("127.0.0.1", 8443)


def test_tokens_from_cli_env_file_and_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# accepted tokens\n\n  alpha  \nbeta # the old one\nalpha\n")
    cfg = gateway({"tokens": ["one", "two"], "tokens_file": str(tokens)})
    assert cfg.tokens == ("one", "two", "alpha", "beta")
    assert cfg.tokens_file == str(tokens)
    assert gateway({}, {"TUNNELGATE_TOKEN": "envtok"}).tokens == ("envtok",)
    path = write(tmp_path, 'token = ["f1", "f2"]\ntokens_file = "tokens"')
    # A relative path in the file is relative to the file.
    assert gateway(config_path=path).tokens == ("f1", "f2", "alpha", "beta")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("good\ntwo tokens\n", "line 2: one token a line"),
        ("\x01bad\n", "line 1: token must be non-empty printable ASCII"),
    ],
)
def test_tokens_file_errors(tmp_path: Path, text: str, message: str) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(text)
    with pytest.raises(ConfigError, match=r"^--tokens-file: ") as info:
        gateway({"tokens_file": str(tokens)})
    assert message in str(info.value)


def test_tokens_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--tokens-file: cannot read"):
        gateway({"tokens_file": str(tmp_path / "absent")})


def test_reserved_is_folded_and_may_be_emptied() -> None:
    assert gateway({"reserved": " WWW, Api ,www"}).reserved == ("www", "api")
    assert gateway({"reserved": ""}).reserved == ()


# --- gateway: the anonymous rule ---------------------------------------------------------

ANONYMOUS: list[tuple[dict[str, object], str | None]] = [
    ({}, None),
    ({"http": "localhost:8080"}, None),
    ({"http": "[::1]:8080"}, None),
    ({"http": "0.0.0.0:8080"}, "--http: 0.0.0.0:8080 is not a loopback address"),
    ({"http": ":8080"}, "--http: 0.0.0.0:8080 is not a loopback address"),
    ({"http": "example.com:8080"}, "--http: example.com:8080 is not a loopback"),
    ({"https": "[::]:8443"}, "--https: [::]:8443 is not a loopback address"),
    ({"admin": "0.0.0.0:9000"}, "--admin: 0.0.0.0:9000 is not a loopback address"),
    ({"tcp_bind": "0.0.0.0"}, None),  # no TCP ports: nothing listens there
    ({"tcp_bind": "0.0.0.0", "tcp_ports": "20000-20010"}, "--tcp-bind: 0.0.0.0 is not"),
    ({"http": "0.0.0.0:8080", "allow_anonymous": True}, None),
    ({"http": "0.0.0.0:8080", "tokens": ["t"]}, None),
    ({"http": "0.0.0.0:8080", "jwt_secret": "s"}, None),
    ({"http": "0.0.0.0:8080", "jwt_public_key": "k.pem"}, None),
    ({"http": "0.0.0.0:8080", "controller": "http://ctl"}, None),
]


@pytest.mark.parametrize(("argv", "error"), ANONYMOUS)
def test_anonymous_rule(argv: dict[str, object], error: str | None) -> None:
    if error is None:
        gateway(argv)
        return
    with pytest.raises(ConfigError) as info:
        gateway(argv)
    assert str(info.value).startswith(error)
    assert "--allow-anonymous" in str(info.value)


def test_anonymous_rule_from_env_and_empty_tokens_file(tmp_path: Path) -> None:
    assert gateway({}, {"TUNNELGATE_HTTP": ":80", "TUNNELGATE_ALLOW_ANONYMOUS": "yes"}).http
    empty = tmp_path / "tokens"
    empty.write_text("# nobody yet\n")
    with pytest.raises(ConfigError, match="not a loopback address"):
        gateway({"http": ":80", "tokens_file": str(empty)})


# --- gateway: options this version does not serve yet ------------------------------------


def test_unsupported_options_are_parsed_then_listed() -> None:
    cfg = gateway(
        {
            "https": "127.0.0.1:8443",
            "tcp_ports": "20000-20100",
            "redis": "redis://localhost:6379/0",
        }
    )
    assert cfg.tcp_ports == (20000, 20100)
    assert unsupported_options(cfg) == ["--https", "--tcp-ports", "--redis"]


def test_not_yet_implemented_names_are_fields() -> None:
    fields = {option.field for option in GATEWAY_OPTIONS}
    assert set(NOT_YET_IMPLEMENTED) <= fields
    assert fields == set(GatewayConfig.__dataclass_fields__)


# --- client: addr parsing ----------------------------------------------------------------

Command = Literal["http", "tcp"]

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
]


@pytest.mark.parametrize(("command", "addr", "expected"), ADDRS)
def test_addr_parsing(command: Command, addr: str, expected: tuple[str, str, int]) -> None:
    cfg = load_client_config(command, {"addr": addr}, {})
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
    ],
)
def test_bad_addrs(command: Command, addr: str) -> None:
    with pytest.raises(ConfigError, match=r"^--addr: "):
        load_client_config(command, {"addr": addr}, {})


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
        "text",
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
            TunnelSpec("db", "tcp", "127.0.0.1", 5432, remote_port=20001),
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
        ('[tunnels.a]\naddr = "1"', "config file key 'tunnels.a.proto': must be http or tcp"),
        (
            '[tunnels.a]\nproto = "udp"\naddr = "1"',
            "config file key 'tunnels.a.proto': must be http or",
        ),
        ('[tunnels.a]\nproto = "http"', "config file key 'tunnels.a.addr': missing"),
        ('[tunnels.a]\nproto = "http"\naddr = "x"', "config file key 'tunnels.a.addr': must be"),
        (
            '[tunnels.a]\nproto = "tcp"\naddr = "1"\nsubdomain = "x"',
            "config file key 'tunnels.a.subdomain': not allowed for tcp tunnels",
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


def test_configs_are_frozen() -> None:
    cfg: Any = GatewayConfig()
    with pytest.raises(AttributeError):
        cfg.domain = "x"
