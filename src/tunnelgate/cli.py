"""The `tunnelgate` command: parse arguments into a frozen config, then hand it over.

    tunnelgate server [options]                       the gateway
    tunnelgate http PORT|HOST:PORT|URL [...]          one HTTP tunnel
    tunnelgate tcp PORT|HOST:PORT [...]               one TCP tunnel
    tunnelgate tls PORT|HOST:PORT --subdomain NAME    one TLS-passthrough tunnel
    tunnelgate start --config tunnels.toml            several tunnels, one connection

The CLI only builds the config (the config package holds every option, its parser and help);
the gateway and the client are imported only once the config is known to be good.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from tunnelgate import __version__
from tunnelgate.config import (
    CLIENT_DEFAULTS,
    CLIENT_OPTIONS,
    GATEWAY_DEFAULTS,
    GATEWAY_OPTIONS,
    ClientConfig,
    GatewayConfig,
    Option,
    describe_default,
    load_client_config,
    load_gateway_config,
)
from tunnelgate.errors import ConfigError

USAGE_ERROR = 2

_SERVER_EPILOG = """\
Every option is also an environment variable TUNNELGATE_<OPTION> (upper case, '-' as '_')
and a key in the TOML file given by --config ('_' or '-' spelling). The command line wins
over the environment, which wins over the file."""

_CLIENT_EPILOG = """\
TUNNELGATE_SERVER and TUNNELGATE_TOKEN (and TUNNELGATE_CA, TUNNELGATE_INSECURE,
TUNNELGATE_LOG_FORMAT, TUNNELGATE_MAX_RETRIES) set the defaults of the connection options."""


class _Parser(argparse.ArgumentParser):
    """Usage errors become ConfigError, so callers (and tests) see one kind of failure."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _add_option(group: argparse._ActionsContainer, option: Option, default: object) -> None:
    help_text = f"{option.help} (default {describe_default(option, default)})"
    if option.metavar is None:
        group.add_argument(option.flag, dest=option.field, action="store_true", help=help_text)
    elif option.repeatable:
        group.add_argument(
            option.flag, dest=option.field, action="append", metavar=option.metavar, help=help_text
        )
    else:
        group.add_argument(option.flag, dest=option.field, metavar=option.metavar, help=help_text)


def _add_server(commands: argparse._SubParsersAction[_Parser]) -> None:
    server = commands.add_parser(
        "server",
        help="run the gateway",
        description="Run the tunnel gateway.",
        epilog=_SERVER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    server.add_argument("--config", metavar="PATH", help="TOML file of options (default none)")
    groups = {
        "gateway": server.add_argument_group("gateway"),
        "limits": server.add_argument_group("timeouts and limits (durations in seconds)"),
    }
    todo: argparse._ArgumentGroup | None = None
    for option in GATEWAY_OPTIONS:
        if option.implemented:
            _add_option(groups[option.group], option, GATEWAY_DEFAULTS[option.field])
            continue
        # Listed so that users find them, apart so that nobody mistakes them for working ones.
        todo = todo or server.add_argument_group(
            "not implemented in this version (start-up refuses any value but the default)"
        )
        _add_option(todo, option, option.default)


def _add_clients(commands: argparse._SubParsersAction[_Parser]) -> None:
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("connection")
    for option in CLIENT_OPTIONS:
        _add_option(group, option, CLIENT_DEFAULTS[option.field])

    http = commands.add_parser(
        "http",
        parents=[common],
        help="expose a local HTTP service",
        description="Expose a local HTTP service at http://<name>.<domain>.",
        argument_default=argparse.SUPPRESS,
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    http.add_argument("addr", metavar="PORT|HOST:PORT|URL", help="the local service")
    http.add_argument("--subdomain", metavar="NAME", help="ask for this name (default random)")
    http.add_argument(
        "--host-header",
        metavar="rewrite",
        help="send the local address as Host (default: the public host)",
    )

    tcp = commands.add_parser(
        "tcp",
        parents=[common],
        help="expose a local TCP service",
        description="Expose a local TCP service on a public port of the gateway.",
        argument_default=argparse.SUPPRESS,
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tcp.add_argument("addr", metavar="PORT|HOST:PORT", help="the local service")
    tcp.add_argument("--remote-port", metavar="N", help="ask for this public port (default any)")
    _add_proxy_protocol(tcp)

    tls = commands.add_parser(
        "tls",
        parents=[common],
        help="expose a local TLS service, passed through unopened",
        description=(
            "Expose a local TLS service at NAME.<domain> on the gateway's HTTPS listener. "
            "The gateway routes by the TLS server name (SNI) and passes the bytes through "
            "unopened: the local service terminates TLS with its own certificate and key."
        ),
        argument_default=argparse.SUPPRESS,
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tls.add_argument("addr", metavar="PORT|HOST:PORT", help="the local TLS service")
    tls.add_argument(
        "--subdomain", metavar="NAME", help="the name to route by (required): NAME.<domain>"
    )
    _add_proxy_protocol(tls)

    start = commands.add_parser(
        "start",
        parents=[common],
        help="start the tunnels of a tunnels.toml",
        description="Start every tunnel of a tunnels.toml over one connection.",
        argument_default=argparse.SUPPRESS,
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    start.add_argument("--config", metavar="PATH", required=True, help="the tunnels.toml")


def _add_proxy_protocol(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proxy-protocol",
        metavar="v1|v2",
        help="send the local service a PROXY protocol header (HAProxy's, version 1 text or "
        "2 binary) with the public client's address before the first byte (default none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tunnelgate",
        description="A tunnel gateway (tunnelgate server) and its client (http, tcp, tls, start).",
    )
    parser.add_argument("--version", action="version", version=f"tunnelgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_server(commands)
    _add_clients(commands)
    return parser


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> GatewayConfig | ClientConfig:
    """The config `argv` (without the program name) asks for.

    Raises ConfigError for any bad option or value; --help and --version print and
    raise SystemExit(0), as argparse does.
    """
    values = vars(build_parser().parse_args(list(argv)))
    command = values.pop("command")
    config_path = values.pop("config", None)
    if command == "server":
        return load_gateway_config(values, env, config_path)
    return load_client_config(command, values, env, config_path)


def _run(cfg: GatewayConfig | ClientConfig) -> int:
    # Imported here, once the config is good: the gateway and the client pull in
    # uvloop and picows, which --help and a config error should not pay for. Each
    # runner configures logging itself.
    if isinstance(cfg, GatewayConfig) and cfg.workers > 1:
        from tunnelgate.gateway.workers import run_workers

        return run_workers(cfg)
    if isinstance(cfg, GatewayConfig):
        from tunnelgate.gateway.app import run_gateway

        return run_gateway(cfg)
    from tunnelgate.client.agent import run_client

    return run_client(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"tunnelgate: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as exc:  # --help and --version print, then exit 0
        return exc.code if isinstance(exc.code, int) else 0
    return _run(cfg)
