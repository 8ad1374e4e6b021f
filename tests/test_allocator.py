"""The allocator settings apply on this (glibc) machine, and say so."""

from __future__ import annotations

import subprocess
import sys


def test_tune_allocator_applies_on_glibc() -> None:
    # In a child process: the settings stay for the life of the process that sets them.
    code = "from tunnelgate.allocator import tune_allocator; print(tune_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
