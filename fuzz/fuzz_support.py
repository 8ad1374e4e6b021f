"""What every fuzz target shares: the interpreted-code guard and libFuzzer's entry point.

atheris instruments Python bytecode only. The modules in src/tunnelgate/compiled.py are
mypyc extensions in the development install, where atheris would see none of their
branches, so the targets run on the interpreted install (`make fuzz` builds .venv-fuzz
with TUNNELGATE_PURE_PYTHON=1) and refuse to start on a compiled one. httptools' llhttp
is C either way: the HTTP targets are guided by our own checks around it, not by it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports(include=["tunnelgate"]):
    from tunnelgate import compiled


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer on `test_one_input` with the command line's options."""
    found = compiled.problems(interpreted=True)
    if found:
        sys.exit("fuzz: the targets need the interpreted install:\n" + "\n".join(found))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def instrumented() -> Any:
    """The context in which a target imports what it fuzzes (tunnelgate only)."""
    return atheris.instrument_imports(include=["tunnelgate"])
