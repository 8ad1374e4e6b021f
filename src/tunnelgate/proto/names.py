"""Tunnel names are DNS labels: 1-63 of a-z 0-9 '-', not starting or ending with '-'."""

from __future__ import annotations

import re
import secrets
import string
from typing import Final

_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_ALPHABET: Final = string.ascii_lowercase + string.digits


def normalize_name(name: str) -> str | None:
    """The case-folded name, or None if it is not a valid DNS label."""
    # Check ASCII before folding: str.lower() maps U+212A KELVIN SIGN to an ASCII 'k'.
    if not name.isascii():
        return None
    folded = name.lower()
    if _LABEL.match(folded) is None:
        return None
    return folded


def random_name(length: int) -> str:
    # Start with a letter so names never look like numbers or IP fragments.
    first = secrets.choice(string.ascii_lowercase)
    return first + "".join(secrets.choice(_ALPHABET) for _ in range(length - 1))
