"""The one list of compiled modules: its entries exist, the Makefile reads it, and the check
behind the test suite's stale-build guard finds each way an install can differ from it."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunnelgate import compiled

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
LISTED = ("tunnelgate.proto.mux", "tunnelgate.event")


def test_every_listed_module_has_its_source_in_the_repository() -> None:
    missing = [m for m in compiled.MODULES if not (ROOT / compiled.source(m)).is_file()]
    assert not missing, f"listed in src/tunnelgate/compiled.py but not in src/: {missing}"
    assert len(set(compiled.MODULES)) == len(compiled.MODULES)


def test_the_makefile_reads_the_source_paths() -> None:
    # -I, as the Makefile runs it: the package directory is not put on sys.path.
    argv = [sys.executable, "-I", str(ROOT / "src/tunnelgate/compiled.py")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.splitlines() == [compiled.source(m) for m in compiled.MODULES]
    assert compiled.source("tunnelgate.proto.mux") == "src/tunnelgate/proto/mux.py"


def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A package tree as a compiled install leaves it: sources, then extensions built after."""
    root = tmp_path / "tunnelgate"
    _touch(root / "limits.py", 100)
    for module in LISTED:
        stem = root.joinpath(*module.split(".")[1:])
        _touch(stem.with_suffix(".py"), 100)
        _touch(stem.with_name(stem.name + SUFFIX), 200)
    return root


def _problems(package: Path, *, interpreted: bool = False) -> list[str]:
    return compiled.problems(interpreted=interpreted, package=package, modules=LISTED)


def test_a_fresh_compiled_install_matches(package: Path) -> None:
    assert _problems(package) == []


def test_a_listed_module_left_interpreted(package: Path) -> None:
    (package / "proto" / f"mux{SUFFIX}").unlink()
    [problem] = _problems(package)
    assert "tunnelgate.proto.mux is interpreted, not compiled" in problem


@pytest.mark.parametrize("edited", ["proto/mux.py", "limits.py"])
def test_an_extension_older_than_its_source_or_limits(package: Path, edited: str) -> None:
    _touch(package / edited, 300)
    found = _problems(package)
    assert found
    assert all("is older than" in p for p in found), found
    assert any(p.endswith(f"{edited.rsplit('/', 1)[-1]}: {compiled.REBUILD}") for p in found)


def test_an_extension_not_on_the_list(package: Path) -> None:
    # A module taken off the list (or moved) leaves its extension behind, which would be
    # imported in place of its source.
    _touch(package / "gateway" / "edge.py", 100)
    stale = _touch(package / "gateway" / f"edge{SUFFIX}", 200)
    [problem] = _problems(package)
    assert problem.startswith(f"{stale} is not on the list")


def test_a_listed_module_without_a_source(package: Path) -> None:
    (package / "event.py").unlink()
    [problem] = _problems(package)
    assert "tunnelgate.event: listed" in problem
    assert "does not exist" in problem


def test_the_interpreted_install_has_no_extension(package: Path) -> None:
    found = _problems(package, interpreted=True)
    assert len(found) == len(LISTED)
    assert all("in a run that tests the interpreted install" in p for p in found)
    for module in LISTED:
        stem = package.joinpath(*module.split(".")[1:])
        stem.with_name(stem.name + SUFFIX).unlink()
    assert _problems(package, interpreted=True) == []
