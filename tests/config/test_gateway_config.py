"""config/gateway.py: precedence, parsing, validation, the messages that name the key, and
the refusal of the options this version does not implement."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from config_support import gateway, write

from tunnelgate import limits
from tunnelgate.config import GATEWAY_OPTIONS, GatewayConfig, auth_methods, parsers
from tunnelgate.errors import ConfigError

# --- gateway: defaults and precedence ----------------------------------------------------


def test_defaults_match_spec_and_limits() -> None:
    cfg = gateway()
    assert cfg == GatewayConfig()
    assert cfg.domain == "localhost"
    assert cfg.http == ("127.0.0.1", 8080)
    assert cfg.reserved == ("tunnel", "www", "api", "admin")
    assert cfg.log_format == "text"
    assert cfg.heartbeat_interval == limits.HEARTBEAT_INTERVAL
    assert cfg.max_streams == limits.MAX_STREAMS
    assert cfg.max_header_bytes == limits.MAX_HEADER_BYTES
    assert cfg.max_connections is None  # derived from the open-file limit at start-up
    assert cfg.max_connections_per_address == limits.MAX_CONNECTIONS_PER_ADDRESS == 1000


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


def test_gateway_config_is_frozen() -> None:
    cfg: Any = GatewayConfig()
    with pytest.raises(AttributeError):
        cfg.domain = "x"


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
    ({"workers": "0"}, {}, "--workers: must be an integer >= 1 or auto, got '0'"),
    ({}, {"TUNNELGATE_ADVERTISE": ":9000"}, "TUNNELGATE_ADVERTISE: must be HOST:PORT"),
    ({"acme_email": "nobody"}, {}, "--acme-email: must be an e-mail address, got 'nobody'"),
    ({"grace_hold": "-1"}, {}, "--grace-hold: must be a number of seconds >= 0"),
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
    cfg = gateway({"tokens": ["s3cret"]})
    assert "s3cret" not in repr(cfg)
    with pytest.raises(ConfigError) as info:
        gateway({"jwt_secret": "also-s3cret" * 4, "admin_token": "bad token"})
    assert "s3cret" not in str(info.value)
    assert str(info.value).startswith("--admin-token: ")


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
    assert parsers.listen(value) == expected
    if expected is not None:
        assert gateway({"http": value, "allow_anonymous": True}).http == expected


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_tokens_from_cli_env_file_and_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# accepted tokens\n\n  alpha  \nbeta # the old one\nalpha\n")
    cfg = gateway({"tokens": ["one", "two"], "tokens_file": str(tokens)})
    assert cfg.tokens == ("one", "two")
    assert cfg.file_token_digests == (sha("alpha"), sha("beta"))  # never the tokens
    assert "alpha" not in repr(cfg)
    assert cfg.tokens_file == str(tokens)
    assert gateway({}, {"TUNNELGATE_TOKEN": "envtok"}).tokens == ("envtok",)
    path = write(tmp_path, 'token = ["f1", "f2"]\ntokens_file = "tokens"')
    # A relative path in the file is relative to the file.
    from_file = gateway(config_path=path)
    assert from_file.tokens == ("f1", "f2")
    assert from_file.file_token_digests == (sha("alpha"), sha("beta"))


def test_hashed_lines_in_the_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    upper = sha("gamma").upper()  # sha256sum prints lower case; either is taken
    tokens.write_text(f"sha256:{sha('alpha')}\nbeta\nsha256:{upper}  # ci\nalpha\n")
    cfg = gateway({"tokens_file": str(tokens)})
    # The plain "alpha" is the same token as its hash: one entry.
    assert cfg.file_token_digests == (sha("alpha"), sha("beta"), sha("gamma"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("good\ntwo tokens\n", "line 2: one token a line"),
        ("\x01bad\n", "line 1: token must be non-empty printable ASCII"),
        ("sha256:" + "a" * 63 + "\n", "line 1: sha256: must be followed by the token's SHA-256"),
        ("ok\nsha256:" + "g" * 64 + "\n", "line 2: sha256: must be followed"),
        ("sha256:\n", "(got 0 characters)"),
        ("sha256:" + "a" * 65 + "\n", "(got 65 characters): printf %s TOKEN | sha256sum"),
    ],
)
def test_tokens_file_errors(tmp_path: Path, text: str, message: str) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(text)
    with pytest.raises(ConfigError, match=r"^--tokens-file: ") as info:
        gateway({"tokens_file": str(tokens)})
    assert message in str(info.value)
    assert str(tokens) in str(info.value)
    assert "\n" not in str(info.value)  # one line


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
    ({"http": "[::]:8080"}, "--http: [::]:8080 is not a loopback address"),
    ({"http": "0.0.0.0:8080", "allow_anonymous": True}, None),
    ({"http": "0.0.0.0:8080", "tokens": ["t"]}, None),
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


def test_metrics_per_tunnel_needs_the_admin_listener() -> None:
    assert not gateway({}).metrics_per_tunnel
    cfg = gateway({"admin": "127.0.0.1:9100", "metrics_per_tunnel": True})
    assert cfg.metrics_per_tunnel
    with pytest.raises(ConfigError, match=r"^--metrics-per-tunnel: /metrics is served by --admin"):
        gateway({"metrics_per_tunnel": True})


def test_anonymous_rule_from_env_and_empty_tokens_file(tmp_path: Path) -> None:
    assert gateway({}, {"TUNNELGATE_HTTP": ":80", "TUNNELGATE_ALLOW_ANONYMOUS": "yes"}).http
    empty = tmp_path / "tokens"
    empty.write_text("# nobody yet\n")
    # A tokens file is token auth even while empty: nobody gets in until SIGHUP adds one,
    # so the anonymous rule has nothing to refuse.
    cfg = gateway({"http": ":80", "tokens_file": str(empty)})
    assert cfg.file_token_digests == ()
    assert auth_methods(cfg) == ("token",)


# --- gateway: options this version does not implement yet --------------------------------

# Every option SPEC lists for `tunnelgate server`: none may be "unknown".
SPEC_OPTIONS = {
    "domain", "http", "https", "tls-cert", "tls-key", "tcp-ports", "tcp-bind", "token",
    "tokens-file", "jwt-secret", "jwt-public-key", "controller", "allow-anonymous", "reserved",
    "admin", "log-format", "redis", "cluster-secret", "advertise", "workers", "state-dir",
    "acme-email", "acme-directory", "redirect-http", "controller-timeout",
    "controller-cache-ttl", "admin-token", "heartbeat-interval", "heartbeat-timeout",
    "idle-timeout", "reconnect-grace", "head-timeout", "response-timeout", "max-header-bytes",
    "max-streams", "max-tunnels-per-token", "auth-fail-rate", "max-connections",
    "max-connections-per-address", "handshake-timeout", "drain-timeout", "grace-hold",
}  # fmt: skip
# Options beyond SPEC's table, each for something SPEC or an issue asks of a listed one: the
# JWT section checks aud/iss "when configured", and these configure them; issue 10's
# per-tunnel metrics are opt-in.
EXTRA_OPTIONS = {"jwt-audience", "jwt-issuer", "metrics-per-tunnel"}

# A valid value, other than the default, for each option start-up refuses: none now.
UNIMPLEMENTED: dict[str, object] = {}


def test_the_table_is_the_spec() -> None:
    keys = [option.key for option in GATEWAY_OPTIONS]
    assert len(keys) == len(set(keys))
    assert set(keys) == SPEC_OPTIONS | EXTRA_OPTIONS
    assert {o.key for o in GATEWAY_OPTIONS if not o.implemented} == set(UNIMPLEMENTED)


def test_implemented_options_are_the_fields() -> None:
    implemented = {o.field for o in GATEWAY_OPTIONS if o.implemented}
    unimplemented = {o.field for o in GATEWAY_OPTIONS if not o.implemented}
    # file_token_digests: what --tokens-file held, read by the loader.
    assert implemented | {"file_token_digests"} == set(GatewayConfig.__dataclass_fields__)
    assert not unimplemented & set(GatewayConfig.__dataclass_fields__)


SECRET = "s" * 32


def test_cluster_options_come_together(tmp_path: Path) -> None:
    path = write(tmp_path, 'redis = "redis://r"\n')
    with pytest.raises(ConfigError) as info:
        gateway({"cluster_secret": SECRET}, {}, path)
    assert str(info.value) == (
        "--advertise: cluster mode needs --redis, --cluster-secret and --advertise together "
        "(given: --redis, --cluster-secret)"
    )
    cfg = gateway({"cluster_secret": SECRET}, {"TUNNELGATE_ADVERTISE": "10.0.0.5:7000"}, path)
    assert (cfg.redis, cfg.cluster_secret, cfg.advertise) == (
        "redis://r",
        SECRET,
        ("10.0.0.5", 7000),
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ({"cluster_secret": "short"}, "--cluster-secret: must be at least 32 bytes"),
        (
            {"cluster_secret": SECRET, "advertise": "127.0.0.1:8080"},
            "--advertise: 127.0.0.1:8080 is another listener's address",
        ),
    ],
)
def test_cluster_options_are_checked(argv: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        gateway({"redis": "redis://r", "advertise": "127.0.0.1:7000", **argv})
    assert str(info.value) == message


def test_unimplemented_options_at_their_default_are_accepted(tmp_path: Path) -> None:
    # A shared config file may spell out what this version does anyway.
    text = (
        'tcp-ports = "off"\nadmin = "off"\ntcp_bind = "127.0.0.1"\n'
        "workers = 1\ncontroller_timeout = 3\n"
        "controller-cache-ttl = 60\ngrace_hold = 0\n"
    )
    assert gateway({}, {}, write(tmp_path, text)) == GatewayConfig()


def test_bad_values_are_named_before_the_cross_checks() -> None:
    with pytest.raises(ConfigError, match=r"^--tcp-ports: must be LO-HI with LO <= HI"):
        gateway({"workers": "2", "tcp_ports": "200-100"})


def test_acme_options_are_checked_together() -> None:
    https = {"https": "127.0.0.1:8443"}
    cfg = gateway({**https, "acme_email": "ops@example.com", "acme_directory": "https://ca/dir"})
    assert (cfg.acme_email, cfg.acme_directory) == ("ops@example.com", "https://ca/dir")
    with pytest.raises(ConfigError, match="--acme-email: needs --https"):
        gateway({"acme_email": "ops@example.com"})
    with pytest.raises(ConfigError, match="per-host certificates replace --tls-cert"):
        gateway({**https, "acme_email": "o@e.com", "tls_cert": "c", "tls_key": "k"})
    with pytest.raises(ConfigError, match="--acme-directory: needs --acme-email"):
        gateway({**https, "acme_directory": "https://ca/dir"})


def test_admin_listener_and_token() -> None:
    cfg = gateway({"admin": "127.0.0.1:9000", "admin_token": "adm1n"})
    assert (cfg.admin, cfg.admin_token) == (("127.0.0.1", 9000), "adm1n")
    assert "adm1n" not in repr(cfg)
    with pytest.raises(ConfigError, match="give --admin-token"):
        gateway({"admin": "0.0.0.0:9000", "tokens": "t"})
    with pytest.raises(ConfigError, match="is a public listener's address"):
        gateway({"admin": "127.0.0.1:8080"})


def test_tcp_ports_and_bind() -> None:
    cfg = gateway({"tcp_ports": "20000-20100"})
    assert (cfg.tcp_ports, cfg.tcp_bind) == ((20000, 20100), "127.0.0.1")
    with pytest.raises(ConfigError, match=r"--tcp-bind: 0\.0\.0\.0:20000 is not a loopback"):
        gateway({"tcp_ports": "20000-20100", "tcp_bind": "0.0.0.0"})
    assert gateway({"tcp_ports": "20000", "tcp_bind": "0.0.0.0", "tokens": "t"}).tcp_ports


# --- HTTPS ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ({"https": "127.0.0.1:8080"}, "--https: 127.0.0.1:8080 is --http's address too"),
        ({"https": ":8443", "tls_cert": "c.pem"}, "--tls-key: needed with --tls-cert"),
        ({"https": ":8443", "tls_key": "k.pem"}, "--tls-cert: needed with --tls-key"),
        ({"tls_cert": "c.pem", "tls_key": "k.pem"}, "--tls-cert: serves nothing without --https"),
        ({"redirect_http": "yes"}, "--redirect-http: needs both --http and --https"),
        ({"https": "0.0.0.0:8443"}, "--https: 0.0.0.0:8443 is not a loopback address"),
    ],
)
def test_https_options_are_checked_together(argv: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        gateway(argv)
    assert str(info.value).startswith(message)


def test_https_with_its_certificate_and_options() -> None:
    cfg = gateway(
        {
            "https": "127.0.0.1:8443",
            "tls_cert": "c.pem",
            "tls_key": "k.pem",
            "redirect_http": "yes",
            "handshake_timeout": "2.5",
            "state_dir": "/var/lib/tg",
        }
    )
    assert cfg.https == ("127.0.0.1", 8443)
    assert (cfg.tls_cert, cfg.tls_key, cfg.state_dir) == ("c.pem", "k.pem", "/var/lib/tg")
    assert cfg.redirect_http
    assert cfg.handshake_timeout == 2.5
    assert gateway({"http": "off", "https": "127.0.0.1:8443"}).http is None


def test_drain_timeout() -> None:
    assert gateway({}).drain_timeout == limits.DRAIN_TIMEOUT == 30
    assert gateway({"drain_timeout": "2.5"}).drain_timeout == 2.5
    assert gateway({}, {"TUNNELGATE_DRAIN_TIMEOUT": "0"}).drain_timeout == 0.0  # cut at once
    with pytest.raises(ConfigError) as info:
        gateway({"drain_timeout": "-1"})
    assert str(info.value).startswith("--drain-timeout: must be a number of seconds >= 0")


# --- JWT and the controller -----------------------------------------------------------------
SECRET = "0123456789abcdef0123456789abcdef"  # 32 bytes: the shortest HS256 secret accepted


def test_jwt_and_controller_options() -> None:
    cfg = gateway(
        {
            "jwt_secret": SECRET,
            "jwt_public_key": "keys/jwks.json",
            "jwt_audience": "tunnels",
            "jwt_issuer": "https://auth.example",
            "controller": "https://ctl.example/base/",
            "controller_timeout": "0.5",
            "controller_cache_ttl": "0",
        }
    )
    assert (cfg.jwt_secret, cfg.jwt_public_key) == (SECRET, "keys/jwks.json")
    assert (cfg.jwt_audience, cfg.jwt_issuer) == ("tunnels", "https://auth.example")
    assert (cfg.controller, cfg.controller_timeout, cfg.controller_cache_ttl) == (
        "https://ctl.example/base/",
        0.5,
        0.0,
    )
    assert SECRET not in repr(cfg)
    assert auth_methods(cfg) == ("jwt", "controller")


def test_controller_defaults_are_specs() -> None:
    cfg = GatewayConfig()
    assert (cfg.controller_timeout, cfg.controller_cache_ttl) == (3.0, 60.0)
    assert auth_methods(cfg) == ()
    assert auth_methods(gateway({"tokens": "t", "controller": "http://c"})) == (
        "token",
        "controller",
    )


def test_a_short_jwt_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        gateway({"jwt_secret": "short-s3cret"})
    assert str(info.value).startswith("--jwt-secret: must be at least 32 bytes")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("key", ["jwt_audience", "jwt_issuer"])
def test_audience_and_issuer_need_a_jwt_key(key: str) -> None:
    flag = "--" + key.replace("_", "-")
    with pytest.raises(ConfigError, match=f"^{flag}: checks JWTs, and neither --jwt-secret"):
        gateway({key: "x"})
    assert gateway({key: "x", "jwt_secret": SECRET})


@pytest.mark.parametrize(
    "auth",
    [
        {"jwt_secret": SECRET},
        {"jwt_public_key": "key.pem"},
        {"controller": "http://127.0.0.1:9"},
    ],
    ids=["jwt-secret", "jwt-public-key", "controller"],
)
def test_each_auth_method_lifts_the_anonymous_rule(auth: dict[str, object]) -> None:
    assert gateway({"http": ":80", **auth}).http == ("0.0.0.0", 80)


def test_the_anonymous_rule_names_every_auth_method() -> None:
    with pytest.raises(ConfigError) as info:
        gateway({"http": ":80"})
    for flag in ("--token", "--jwt-secret", "--jwt-public-key", "--controller"):
        assert flag in str(info.value)
