"""Frozen configuration for both sides, and the loaders that build it.

Values come from four places; the first that sets a key wins:

    command line  >  environment (TUNNELGATE_<OPTION>)  >  TOML file (--config)  >  defaults

Every option is declared once, in an option table: its parser, help text, spellings
(`--max-streams`, `TUNNELGATE_MAX_STREAMS`, `max_streams` or `max-streams` in TOML) and, for
the gateway, whether a reload may change it. The CLI builds its parser from the tables.
A bad value stops start-up with a `ConfigError` whose message names the key as the user
spelled it. Secrets (tokens, the JWT secret) are never echoed in messages or `repr`.

    parsers.py          value parsers: raw value -> typed value, or Invalid
    options.py          Option, the one declaration of an option; its --help default
    sources.py          CLI > environment > TOML > defaults, and the key named as spelled
    gateway_options.py  the gateway's option table, with reload marks and unbuilt options
    gateway.py          GatewayConfig and its loader: refusals and cross-option checks
    reload.py           which changes between two gateway configs need a restart
    tokens_file.py      --tokens-file: tokens or their sha256:, kept as digests
    tunnels.py          TunnelSpec, from the command line or a tunnels.toml
    client.py           ClientConfig, its options and its loader
"""

from __future__ import annotations

from .client import CLIENT_DEFAULTS, CLIENT_OPTIONS, ClientConfig, load_client_config
from .gateway import (
    GATEWAY_DEFAULTS,
    GatewayConfig,
    auth_methods,
    for_worker,
    load_gateway_config,
)
from .gateway_options import GATEWAY_OPTIONS
from .options import ENV_PREFIX, Option, describe_default
from .parsers import Address, LogFormat
from .reload import changed_options, restart_needed
from .tokens_file import read_tokens_file, token_digest
from .tunnels import TunnelSpec

__all__ = [
    "CLIENT_DEFAULTS",
    "CLIENT_OPTIONS",
    "ENV_PREFIX",
    "GATEWAY_DEFAULTS",
    "GATEWAY_OPTIONS",
    "Address",
    "ClientConfig",
    "GatewayConfig",
    "LogFormat",
    "Option",
    "TunnelSpec",
    "auth_methods",
    "changed_options",
    "describe_default",
    "for_worker",
    "load_client_config",
    "load_gateway_config",
    "read_tokens_file",
    "restart_needed",
    "token_digest",
]
