"""docs/limits.md names every bound, with the default the code and `--help` have (issue 11).

Its "Every bound" table has a row per bound: the first cell names it (`MAX_STREAMS`, a
constant of limits.py; `--max-streams`, an option; one row may name both), the second
gives its default as a number and a unit (`16 KiB`, `10 s`, `1,000`, `1/3`) or, for an
option whose default is not a number, in words. This test fails when a limits.py constant
or a bounding option is missing from the table, when a documented default differs from
the code or from what `tunnelgate server --help` (or the client's) says, and when a row
names a constant or an option that no longer exists.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import pytest

from tunnelgate import limits
from tunnelgate.cli import main
from tunnelgate.config import CLIENT_DEFAULTS, CLIENT_OPTIONS, GATEWAY_DEFAULTS, Option
from tunnelgate.config.gateway_options import GATEWAY_OPTIONS

DOC = Path(__file__).resolve().parents[1] / "docs" / "limits.md"
SECTION = "## Every bound"
UNITS = {
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "days": 86400.0,
    "B": 1.0,
    "bytes": 1.0,
    "KiB": float(limits.KiB),
    "MiB": float(limits.MiB),
}
NUMBER = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?(?:/[0-9]+)?)(?:\s+([A-Za-z]+))?")
UNIT_CONSTANTS = {"SECONDS", "KiB", "MiB"}  # the units the others are written in
# Options that bound something although their default is not a number.
BOUNDING_KEYS = {"max-connections", "max-retries"}


def constants() -> dict[str, float]:
    return {
        name: float(value)
        for name, value in vars(limits).items()
        if name.isupper()
        and name not in UNIT_CONSTANTS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


def option_default(option: Option, defaults: dict[str, object]) -> object:
    return defaults[option.field] if option.implemented else option.default


def numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def bounding(options: tuple[Option, ...], defaults: dict[str, object]) -> dict[str, object]:
    """The options that bound something: a numeric default, or named above."""
    return {
        option.flag: option_default(option, defaults)
        for option in options
        if numeric(option_default(option, defaults)) or option.key in BOUNDING_KEYS
    }


def gateway_bounds() -> dict[str, object]:
    return bounding(GATEWAY_OPTIONS, dict(GATEWAY_DEFAULTS))


def client_bounds() -> dict[str, object]:
    return bounding(CLIENT_OPTIONS, dict(CLIENT_DEFAULTS))


CLIENT_SECTION = "### Client"  # its options are the client's (both have --drain-timeout)


def rows() -> list[tuple[bool, list[str], str]]:
    """(in the client's section, names, default cell) of each row of the "Every bound"
    table."""
    text = DOC.read_text()
    assert SECTION in text, f"{DOC} has no {SECTION!r} section"
    found = []
    client = False
    for line in text[text.index(SECTION) :].splitlines():
        if line.startswith("### "):
            client = line.strip() == CLIENT_SECTION
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2 or not cells[0].startswith("`"):
            continue
        found.append((client, re.findall(r"`([^`]+)`", cells[0]), cells[1]))
    return found


def documented(command: str = "server") -> dict[str, str]:
    """Name -> default cell. An option named in the client's section is the client's
    (`command` "http"), else the gateway's; the client's other options are the gateway's
    namesakes (the heartbeat pair)."""
    table: dict[str, str] = {}
    client_options: dict[str, str] = {}
    for client, names, default in rows():
        for name in names:
            mine = client_options if client and name.startswith("--") else table
            assert name not in mine, f"{name} has two rows in {DOC.name}"
            mine[name] = default
    return {**table, **client_options} if command == "http" else table


def parse_default(cell: str) -> float | None:
    """The number a default cell states, in seconds or bytes; None if it states none."""
    match = NUMBER.match(cell)
    if match is None:
        return None
    number, unit = match.groups()
    value = float(Fraction(number.replace(",", "")))
    return value * UNITS.get(unit or "", 1.0)


def help_defaults(command: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """`--flag`: the text of its "(default ...)" in `tunnelgate COMMAND --help`."""
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    found = {}
    for block in re.split(r"\n(?=  --)", out):
        text = " ".join(block.split())  # undo argparse's line wrapping
        flag = re.match(r"(--[a-z-]+)", text)
        default = re.search(r"\(default ([^()]*(?:\([^()]*\)[^()]*)*)\)", text)
        if flag and default:
            found[flag[1]] = default[1]
    return found


def test_every_limits_constant_is_documented_with_its_value() -> None:
    table = documented()
    missing = sorted(set(constants()) - set(table))
    assert not missing, f"limits.py constants missing from {DOC.name}: {missing}"
    for name, value in constants().items():
        stated = parse_default(table[name])
        assert stated is not None, f"{name}: no number in {table[name]!r}"
        assert math.isclose(stated, value), f"{name} is {value}, {DOC.name} says {table[name]!r}"


BOUNDS = {"server": gateway_bounds, "http": client_bounds}


@pytest.mark.parametrize("command", sorted(BOUNDS))
def test_every_bounding_option_is_documented_as_help_says(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = BOUNDS[command]()
    table = documented(command)
    missing = sorted(set(options) - set(table))
    assert not missing, f"options missing from {DOC.name}: {missing}"
    shown = help_defaults(command, capsys)
    for flag, default in options.items():
        stated = parse_default(table[flag])
        if not numeric(default):
            assert stated is None, f"{flag} has no numeric default, {DOC.name}: {table[flag]!r}"
            continue
        assert isinstance(default, (int, float))
        assert stated is not None, f"{flag}: no number in {table[flag]!r}"
        assert math.isclose(stated, default), f"{flag} is {default}, {DOC.name}: {table[flag]!r}"
        in_help = parse_default(shown[flag])  # --help gives seconds and bytes unadorned
        disagree = f"{flag}: --help says {shown[flag]!r}, {DOC.name} says {table[flag]!r}"
        assert in_help is not None, disagree
        assert math.isclose(in_help, stated), disagree


def test_the_table_names_nothing_that_is_gone() -> None:
    known = set(constants()) | {o.flag for o in (*GATEWAY_OPTIONS, *CLIENT_OPTIONS)}
    stale = sorted(
        name
        for name in {**documented("server"), **documented("http")}
        if (name.startswith("--") or name.isupper()) and name not in known
    )
    assert not stale, f"{DOC.name} names bounds the code no longer has: {stale}"


def test_the_parser_of_defaults() -> None:
    assert parse_default("16 KiB") == 16384
    assert parse_default("0.5 s") == 0.5
    assert parse_default("1,000") == 1000
    assert parse_default("14 days") == 14 * 86400
    assert parse_default("1/3 of the lifetime") == pytest.approx(1 / 3)
    assert parse_default("20 per minute") == 20
    assert parse_default("forever (no limit)") is None
