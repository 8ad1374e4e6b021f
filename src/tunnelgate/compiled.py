"""The modules compiled with mypyc: the one list, and a check that an install matches it.

Three readers, one list:

- ``setup.py`` compiles ``MODULES`` (unless ``TUNNELGATE_PURE_PYTHON=1``). It loads this file
  by path, since the build runs in an isolated environment without the package's dependencies:
  so this module imports nothing but the standard library.
- the Makefile rebuilds ``.venv`` when one of their sources changes (``python3 -I
  src/tunnelgate/compiled.py`` prints the source paths, one a line).
- ``tests/conftest.py`` refuses to test an install that does not match the list
  (:func:`problems`): a listed module left interpreted, a compiled one older than its source,
  or an extension module not on the list. The last would be imported in place of its source
  (the import system tries extension modules first), hiding every edit to that source.

What belongs here: the modules every request or connection passes through (why, and what it
saved: docs/performance.md). What cannot be compiled correctly stays off: classes that subclass
picows' Cython ``WSListener`` (``transport/listener.py`` forwards to the compiled
``TunnelConnection`` instead), dataclasses whose annotations only the type checker knows, and
``logs.py`` (compiled, its exit-time flush crashed the interpreter at shutdown).
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

MODULES: Final = (
    "tunnelgate.event",
    "tunnelgate.proto.codes",
    "tunnelgate.proto.events",
    "tunnelgate.proto.flood",
    "tunnelgate.proto.flow",
    "tunnelgate.proto.frames",
    "tunnelgate.proto.messages",
    "tunnelgate.proto.mux",
    "tunnelgate.http1._framing",
    "tunnelgate.http1.events",
    "tunnelgate.http1.request",
    "tunnelgate.http1.response",
    "tunnelgate.http1.serialize",
    "tunnelgate.transport.deadlines",
    "tunnelgate.transport.pipe",
    "tunnelgate.transport.splice",
    "tunnelgate.transport.tunnel",
    "tunnelgate.gateway.edge",
    "tunnelgate.gateway.caps",
    "tunnelgate.gateway.counters",
    "tunnelgate.gateway.routes",
    "tunnelgate.gateway.shares",
    "tunnelgate.gateway.exchange",
    "tunnelgate.client.upstream",
    "tunnelgate.client.raw",
    "tunnelgate.client.output",
)
PACKAGE: Final = Path(__file__).resolve().parent  # the tunnelgate package this file is in
# mypyc builds the Final constants of limits.py into the compiled modules: a newer limits.py
# makes every extension stale too.
INLINED: Final = ("limits.py",)
REBUILD: Final = "run `make test`: it rebuilds the compiled modules"


def source(module: str) -> str:
    """The module's source file, relative to the repository: ``src/tunnelgate/proto/mux.py``."""
    return "src/" + module.replace(".", "/") + ".py"


def _extensions(directory: Path, stem: str) -> list[Path]:
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return [directory / (stem + s) for s in suffixes if (directory / (stem + s)).exists()]


def _check_module(package: Path, module: str, interpreted: bool) -> tuple[list[str], list[Path]]:
    """What is wrong with one listed module, and the extension files found for it."""
    *parents, stem = module.split(".")[1:]  # the path below the package
    directory = package.joinpath(*parents)
    code = directory / f"{stem}.py"
    built = _extensions(directory, stem)
    if not code.exists():
        return [f"{module}: listed in {__name__}, but {code} does not exist"], built
    if interpreted:
        found = [f"{module} is compiled ({path}) in a run that tests the interpreted install"
                 for path in built]  # fmt: skip
        return found, built
    if not built:
        return [f"{module} is interpreted, not compiled: {REBUILD}"], built
    found = []
    for dependency in (code, *(package / name for name in INLINED)):
        if dependency.stat().st_mtime > built[0].stat().st_mtime:
            found.append(f"{built[0]} is older than {dependency}: {REBUILD}")
    return found, built


def problems(
    *, interpreted: bool, package: Path = PACKAGE, modules: Sequence[str] = MODULES
) -> list[str]:
    """How the installed `package` differs from the list; empty when it matches.

    `interpreted`: the install is meant to be interpreted (``TUNNELGATE_PURE_PYTHON=1``), so
    no module may be compiled; otherwise every listed module must be, and no older than its
    source."""
    found: list[str] = []
    listed: set[Path] = set()
    for module in modules:
        wrong, built = _check_module(package, module, interpreted)
        found += wrong
        listed.update(built)
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for path in sorted(package.rglob("*")):
        if path.name.endswith(suffixes) and path not in listed:
            found.append(
                f"{path} is not on the list in {__name__}, and would be imported in place of "
                f"its source: delete it, or {REBUILD}"
            )
    return found


if __name__ == "__main__":  # for the Makefile
    sys.stdout.write("".join(source(module) + "\n" for module in MODULES))
