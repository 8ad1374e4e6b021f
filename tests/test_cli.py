"""cli.py (argument parsing into configs, exit codes) and logs.py (the line formats)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelgate import __version__
from tunnelgate.cli import main, parse_args
from tunnelgate.config import GATEWAY_OPTIONS, ClientConfig, GatewayConfig
from tunnelgate.errors import ConfigError
from tunnelgate.logs import EventLog, configure_logging

# --- server -------------------------------------------------------------------------------


def test_server_defaults() -> None:
    assert parse_args(["server"], {}) == GatewayConfig()


def test_server_options_reach_the_config(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('domain = "file.example"\nmax_streams = 9\nidle_timeout = 4\n')
    argv = [
        "server",
        "--config",
        str(config),
        "--http",
        "0.0.0.0:9080",
        "--token",
        "a",
        "--token",
        "b",
        "--reserved",
        "x,y",
        "--max-streams",
        "5",
        "--heartbeat-interval",
        "0.5",
        "--heartbeat-timeout",
        "2",
        "--log-format",
        "json",
    ]
    cfg = parse_args(argv, {"TUNNELGATE_IDLE_TIMEOUT": "7"})
    assert isinstance(cfg, GatewayConfig)
    assert cfg.domain == "file.example"
    assert cfg.http == ("0.0.0.0", 9080)
    assert cfg.tokens == ("a", "b")
    assert cfg.reserved == ("x", "y")
    assert cfg.max_streams == 5
    assert cfg.idle_timeout == 7.0
    assert (cfg.heartbeat_interval, cfg.heartbeat_timeout) == (0.5, 2.0)
    assert cfg.log_format == "json"


def test_allow_anonymous_flag() -> None:
    with pytest.raises(ConfigError, match="--allow-anonymous"):
        parse_args(["server", "--http", ":8080"], {})
    cfg = parse_args(["server", "--http", ":8080", "--allow-anonymous"], {})
    assert isinstance(cfg, GatewayConfig)
    assert cfg.allow_anonymous


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["server", "--max-streams", "x"], "tunnelgate: --max-streams: must be an integer >= 1"),
        (["server", "--bogus"], "tunnelgate: unrecognized arguments: --bogus"),
        (["server", "--http", "off"], "tunnelgate: --http: is off"),
        (
            ["server", "--redis", "redis://r", "--advertise", "10.0.0.5:80"],
            "tunnelgate: --cluster-secret: cluster mode needs --redis, --cluster-secret and "
            "--advertise together (given: --redis, --advertise)",
        ),
        (["server", "--workers", "two"], "tunnelgate: --workers: must be an integer >= 1 or auto"),
        (["http"], "tunnelgate: the following arguments are required: PORT|HOST:PORT|URL"),
        (["http", "3000", "--subdomain", "a_b"], "tunnelgate: --subdomain: 'a_b' is not"),
        (["start"], "tunnelgate: the following arguments are required: --config"),
        (["frobnicate"], "tunnelgate: argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "tunnelgate: the following arguments are required: COMMAND"),
    ],
)
def test_main_reports_config_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_server_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for option in GATEWAY_OPTIONS:
        assert option.flag in text
    assert "--heartbeat-interval S ping period in seconds (default 10)" in text
    assert "--http ADDR public HTTP listener" in text
    assert "(default 127.0.0.1:8080)" in text
    assert "(default tunnel,www,api,admin)" in text
    assert "--max-streams N concurrent streams per tunnel connection (default 512)" in text
    assert "(default the open-file limit less a reserve of a tenth, at least 64)" in text
    assert "may hold at once (default 1000)" in text
    assert "TUNNELGATE_<OPTION>" in text
    # Every option works: no group of unimplemented ones is listed.
    assert "not implemented in this version" not in text
    assert "--workers N|auto processes sharing the listeners (SO_REUSEPORT)" in text
    assert "(auto = the usable cores; N > 1 needs --redis)" in text


def test_one_worker_is_the_default() -> None:
    cfg = parse_args(["server", "--workers", "1"], {})
    assert cfg == GatewayConfig()


def test_grace_hold_is_read() -> None:
    assert GatewayConfig().grace_hold == 0.0  # off: a held name answers 502 at once
    cfg = parse_args(["server", "--grace-hold", "2.5"], {})
    assert isinstance(cfg, GatewayConfig)
    assert cfg.grace_hold == 2.5


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tunnelgate {__version__}"


def test_python_dash_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tunnelgate", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: tunnelgate ")
    for command in ("server", "http", "tcp", "tls", "start"):
        assert command in result.stdout


# --- clients ------------------------------------------------------------------------------


def test_http_command() -> None:
    argv = ["http", "http://localhost:3000", "--subdomain", "Foo", "--host-header", "rewrite"]
    cfg = parse_args([*argv, "--token", "t", "--max-retries", "3"], {})
    assert isinstance(cfg, ClientConfig)
    (spec,) = cfg.tunnels
    assert (spec.name, spec.protocol, spec.local_host, spec.local_port) == (
        "http",
        "http",
        "localhost",
        3000,
    )
    assert (spec.subdomain, spec.host_header_rewrite) == ("foo", True)
    assert (cfg.token, cfg.max_retries) == ("t", 3)


def test_tcp_command_and_env() -> None:
    env = {"TUNNELGATE_SERVER": "wss://gw.example/connect", "TUNNELGATE_TOKEN": "envtok"}
    cfg = parse_args(["tcp", "5432", "--remote-port", "20001", "--log-format", "json"], env)
    assert isinstance(cfg, ClientConfig)
    assert (cfg.server, cfg.token, cfg.log_format) == ("wss://gw.example/connect", "envtok", "json")
    (spec,) = cfg.tunnels
    assert (spec.protocol, spec.local_port, spec.remote_port) == ("tcp", 5432, 20001)


def test_tcp_has_no_subdomain() -> None:
    with pytest.raises(ConfigError, match="unrecognized arguments: --subdomain"):
        parse_args(["tcp", "5432", "--subdomain", "x"], {})


def test_tcp_proxy_protocol() -> None:
    cfg = parse_args(["tcp", "5432", "--proxy-protocol", "v1"], {})
    assert isinstance(cfg, ClientConfig)
    assert cfg.tunnels[0].proxy_protocol == "v1"


def test_tls_command() -> None:
    argv = ["tls", "localhost:8443", "--subdomain", "secure", "--proxy-protocol", "v2"]
    cfg = parse_args(argv, {})
    assert isinstance(cfg, ClientConfig)
    (spec,) = cfg.tunnels
    assert (spec.name, spec.protocol, spec.local_host, spec.local_port) == (
        "tls",
        "tls",
        "localhost",
        8443,
    )
    assert (spec.subdomain, spec.proxy_protocol) == ("secure", "v2")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tls", "8443"], "--subdomain: required for tls tunnels"),
        (["tls", "8443", "--subdomain", "x", "--remote-port", "1"], "unrecognized arguments"),
        (["tls", "8443", "--subdomain", "x", "--proxy-protocol", "v9"], "must be v1 or v2"),
        (["http", "3000", "--proxy-protocol", "v1"], "unrecognized arguments"),
    ],
)
def test_tls_and_proxy_protocol_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_tls_and_tcp_help_document_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tls", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--subdomain NAME" in text
    assert "(required)" in text
    assert "--proxy-protocol v1|v2" in text
    assert "PROXY protocol header" in text
    assert "unopened" in text
    assert main(["tcp", "--help"]) == 0
    assert "--proxy-protocol v1|v2" in capsys.readouterr().out


def test_start_command(tmp_path: Path) -> None:
    config = tmp_path / "tunnels.toml"
    config.write_text(
        'token = "filetok"\n'
        '[tunnels.web]\nproto = "http"\naddr = "3000"\n'
        '[tunnels.db]\nproto = "tcp"\naddr = "5432"\n'
    )
    cfg = parse_args(["start", "--config", str(config), "--insecure"], {})
    assert isinstance(cfg, ClientConfig)
    assert [spec.name for spec in cfg.tunnels] == ["web", "db"]
    assert (cfg.token, cfg.insecure) == ("filetok", True)


# --- logs ---------------------------------------------------------------------------------

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<rest>.*)")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_text_log_line(log_stream: io.StringIO) -> None:
    configure_logging("text", log_stream)
    EventLog("tunnelgate.test").info(
        "request", host="foo.localhost", method="GET", status=200, ok=True, note="two words"
    )
    (line,) = lines(log_stream)
    match = TEXT_LINE.fullmatch(line)
    assert match is not None, line
    assert match["rest"] == (
        'INFO request host=foo.localhost method=GET status=200 ok=true note="two words"'
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("line\nbreak", '"line\\nbreak"'),
        (None, "null"),
        (1.5, "1.5"),
        (b"secret payload", '"<14 bytes>"'),
    ],
)
def test_text_log_values_are_quoted_when_needed(
    log_stream: io.StringIO, value: object, shown: str
) -> None:
    configure_logging("text", log_stream)
    EventLog("t").warning("ev", v=value)
    assert lines(log_stream)[0].endswith(f" WARNING ev v={shown}")


def test_json_log_line(log_stream: io.StringIO) -> None:
    configure_logging("json", log_stream)
    log = EventLog("tunnelgate.gateway").bind(tunnel="foo")
    log.info("registered", url="http://foo.localhost:8080", level="x", payload=b"abc")
    (line,) = lines(log_stream)
    record = json.loads(line)
    assert list(record)[:4] == ["ts", "level", "logger", "event"]
    assert TEXT_LINE.fullmatch(record["ts"] + " x")
    assert record == {
        "ts": record["ts"],
        "level": "info",
        "logger": "tunnelgate.gateway",
        "event": "registered",
        "tunnel": "foo",
        "url": "http://foo.localhost:8080",
        "field_level": "x",
        "payload": "<3 bytes>",
    }


def test_library_logs_share_the_format(log_stream: io.StringIO) -> None:
    configure_logging("json", log_stream)
    logging.getLogger("picows").warning("connection %s lost", 7)
    record = json.loads(lines(log_stream)[0])
    assert (record["level"], record["logger"], record["event"]) == ("warning", "picows", "log")
    assert record["message"] == "connection 7 lost"


def test_exception_carries_the_traceback(log_stream: io.StringIO) -> None:
    configure_logging("json", log_stream)
    try:
        raise ValueError("boom")
    except ValueError:
        EventLog("t").exception("task_failed", task="pump")
    record = json.loads(lines(log_stream)[0])
    assert record["level"] == "error"
    assert record["task"] == "pump"
    assert "ValueError: boom" in record["traceback"]
    assert "Traceback" in record["traceback"]


def test_disabled_levels_and_reconfiguring(log_stream: io.StringIO) -> None:
    configure_logging("text", io.StringIO())
    configure_logging("text", log_stream, level=logging.WARNING)  # replaces, not adds
    log = EventLog("t")
    log.info("hidden")
    log.debug("hidden")
    log.error("shown", code=3)
    (line,) = lines(log_stream)
    assert line.endswith(" ERROR shown code=3")
