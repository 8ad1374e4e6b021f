"""config/reload.py and the reload marks of the option table: which changes a reload may
apply, and which only a restart can."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from config_support import gateway

from tunnelgate.config import GATEWAY_OPTIONS, GatewayConfig, changed_options, restart_needed

# What start-up builds once: the listening sockets, the hosts they answer for, the state dir,
# the admin listener's metrics.
RESTART_ONLY = {
    "domain", "http", "https", "state-dir", "tcp-ports", "tcp-bind", "acme-email",
    "acme-directory", "admin", "metrics-per-tunnel", "redis", "cluster-secret", "advertise",
    "workers",
}  # fmt: skip


def test_reload_marks_of_implemented_options() -> None:
    implemented = [option for option in GATEWAY_OPTIONS if option.implemented]
    assert {option.key for option in implemented if not option.reload} == RESTART_ONLY
    reloadable = {option.key for option in implemented if option.reload}
    # Credentials, policy, log format, and the timeouts and limits of new connections.
    assert {"token", "tokens-file", "reserved", "log-format", "allow-anonymous"} <= reloadable
    assert {o.key for o in implemented if o.group == "limits"} <= reloadable


def test_every_option_is_implemented() -> None:
    # An option declared before its feature (config/gateway_options.py's _todo) arrives
    # with its reload rule decided; none is left now.
    assert all(option.implemented for option in GATEWAY_OPTIONS)


def test_same_config_changes_nothing() -> None:
    assert changed_options(GatewayConfig(), GatewayConfig()) == ()
    assert restart_needed(GatewayConfig(), GatewayConfig()) == ()


def test_reloadable_changes_need_no_restart() -> None:
    old = GatewayConfig()
    new = dataclasses.replace(
        old,
        tokens=("new",),
        reserved=("www",),
        log_format="json",
        max_streams=7,
        head_timeout=3.0,
        max_connections=100,
    )
    changed = [option.flag for option in changed_options(old, new)]
    assert changed == [
        "--token",
        "--reserved",
        "--log-format",
        "--head-timeout",
        "--max-streams",
        "--max-connections",
    ]
    assert restart_needed(old, new) == ()


def test_listener_and_domain_changes_need_a_restart() -> None:
    old = GatewayConfig()
    new = dataclasses.replace(old, domain="example.test", http=("127.0.0.1", 9090), max_streams=3)
    assert restart_needed(old, new) == ("--domain", "--http")
    assert restart_needed(new, old) == ("--domain", "--http")


def test_a_rewritten_tokens_file_is_reloadable(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alpha\n")
    old = gateway({"tokens_file": str(tokens)})
    tokens.write_text("alpha\nbeta\n")
    new = gateway({"tokens_file": str(tokens)})
    # The path is the same; what the file holds is part of the option's value.
    assert [option.flag for option in changed_options(old, new)] == ["--tokens-file"]
    assert restart_needed(old, new) == ()
