"""Where values come from; the first place that sets a key wins:

    command line  >  environment (TUNNELGATE_<OPTION>)  >  TOML file (--config)  >  defaults

Every message names the key as the user spelled it: '--max-streams',
'TUNNELGATE_MAX_STREAMS' or "config file key 'max-streams'". Empty environment variables
count as unset, as in most container tooling.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from typing import Any, NamedTuple

from tunnelgate.errors import ConfigError

from .options import Option
from .parsers import Invalid


class Given(NamedTuple):
    """A parsed value and where it came from, as the user spelled the key."""

    value: Any
    label: str


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path!r} is not valid TOML: {exc}") from None


def file_label(key: str) -> str:
    return f"config file key {key!r}"


def normalize_keys(table: Mapping[str, Any], known: set[str], prefix: str) -> dict[str, Any]:
    """TOML keys with '-' read as '_'; an unknown or doubled key is a ConfigError."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            hint = difflib.get_close_matches(name, sorted(known), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{file_label(prefix + key)}: unknown key{suffix}")
        if name in out:
            raise ConfigError(f"{file_label(prefix + key)}: given twice ('-' and '_' spelling)")
        out[name] = value
    return out


def resolve(
    options: tuple[Option, ...],
    argv_values: Mapping[str, object],
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    config_path: str | None,
) -> dict[str, Given]:
    """Parse each option from the first source that sets it, keyed by field name.

    `argv_values` maps field names to what the command line gave; options set nowhere are
    left out (the config's defaults fill them).
    """
    unknown = set(argv_values) - {opt.field for opt in options}
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    from_file = normalize_keys(file_values, {opt.file_key for opt in options}, "")
    base_dir = os.path.dirname(os.path.abspath(config_path)) if config_path else ""
    out: dict[str, Given] = {}
    for opt in options:
        if opt.field in argv_values:
            label, value = opt.flag, argv_values[opt.field]
        elif env.get(opt.env_var):
            label, value = opt.env_var, env[opt.env_var]
        elif opt.file_key in from_file:
            label, value = file_label(opt.file_key), from_file[opt.file_key]
            if opt.path and isinstance(value, str) and value:
                value = os.path.join(base_dir, value)
        else:
            continue
        try:
            out[opt.field] = Given(opt.parse(value), label)
        except Invalid as exc:
            raise ConfigError(f"{label}: {exc}") from None
    return out
