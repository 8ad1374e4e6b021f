"""Helpers shared by the config tests."""

from __future__ import annotations

from pathlib import Path

from tunnelgate.config import GatewayConfig, load_gateway_config


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
