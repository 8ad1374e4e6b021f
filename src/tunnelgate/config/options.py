"""`Option`: one declaration per option, from which the CLI, the environment variable, the
TOML key, the help text and the reload rule are all derived, so they never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from . import parsers
from .parsers import Parser

ENV_PREFIX: Final = "TUNNELGATE_"
Group = Literal["gateway", "limits", "client"]


@dataclass(frozen=True, slots=True)
class Option:
    """One option: its key ('max-streams'), the config field it sets, parser and help.

    `reload`: a reload may change it; the new value applies to connections accepted from
    then on. False: it shapes what start-up built (sockets, identity), so a change needs a
    restart (reload.py). Client options are never reloaded.

    `implemented=False`: the SPEC option parses and validates, but this version cannot serve
    it, so start-up refuses any value but `default` (the value that asks for nothing missing).
    It has no field in the config: nothing could read one. An implemented option's default
    is its config field's default.
    """

    key: str
    field: str
    parse: Parser
    metavar: str | None  # None: a flag that takes no value
    help: str
    group: Group = "gateway"
    reload: bool = False
    implemented: bool = True
    default: object = None  # unimplemented options only, see above
    repeatable: bool = False
    path: bool = False  # relative paths in a config file are relative to the file
    unset: str = "none"  # how a None default reads in --help

    @property
    def flag(self) -> str:
        return "--" + self.key

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper().replace("-", "_")

    @property
    def file_key(self) -> str:
        """The TOML key in its '_' spelling ('-' is accepted too)."""
        return self.key.replace("-", "_")


def describe_default(option: Option, default: object) -> str:
    """A default as --help shows it: '127.0.0.1:8080', 'tunnel,www,api', '10', 'off'."""
    if default is None:
        return option.unset
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, tuple) and len(default) == 2 and isinstance(default[1], int):
        sep = ":" if option.parse is parsers.listen else "-"
        return f"{default[0]}{sep}{default[1]}"
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default) or option.unset
    return str(default)
