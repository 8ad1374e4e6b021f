"""Tunnel names are DNS labels."""

from __future__ import annotations

import string

import pytest

from tunnelgate.proto.names import normalize_name, random_name

VALID = [
    ("a", "a"),
    ("demo", "demo"),
    ("my-app-2", "my-app-2"),
    ("a-b", "a-b"),
    ("a--b", "a--b"),  # inner runs of '-' are fine (IDNA's xn-- is one)
    ("0", "0"),
    ("123", "123"),
    ("MyApp", "myapp"),
    ("ABC-DEF", "abc-def"),
    ("x" * 63, "x" * 63),
    ("a" + "-" * 61 + "b", "a" + "-" * 61 + "b"),
]

INVALID = [
    "",
    "x" * 64,
    "X" * 64,
    "-a",
    "a-",
    "-",
    "a_b",
    "a.b",
    "a b",
    " a",
    "a\n",
    "a\t",
    "a/b",
    "caf\u00e9",
    "\u00e9",
    "ma\u00f1ana",
    "\u0430pple",  # Cyrillic 'a'
    "\uff41",  # fullwidth 'a'
    "\u212aey",  # Kelvin sign: lower() makes it an ASCII 'k' (regression)
    "\u0130",  # dotted capital I
    "a\u200bb",  # zero-width space
    "a\x00",
]


@pytest.mark.parametrize(("name", "normal"), VALID)
def test_valid_names(name: str, normal: str) -> None:
    assert normalize_name(name) == normal


@pytest.mark.parametrize("name", INVALID, ids=ascii)
def test_invalid_names(name: str) -> None:
    assert normalize_name(name) is None


@pytest.mark.parametrize("length", [1, 2, 10, 63])
def test_random_name_has_the_length_asked_and_is_valid(length: int) -> None:
    for _ in range(50):
        name = random_name(length)
        assert len(name) == length
        assert normalize_name(name) == name
        assert name[0] in string.ascii_lowercase  # never looks like a number or IP


def test_random_names_differ() -> None:
    names = {random_name(10) for _ in range(1000)}
    assert len(names) == 1000
    used = set("".join(names))
    assert used == set(string.ascii_lowercase + string.digits)
