"""The allocator settings apply on this (glibc) machine, and say so."""

from __future__ import annotations

import subprocess
import sys


def test_tune_allocator_applies_on_glibc() -> None:
    # In a child process: the settings stay for the life of the process that sets them.
    code = "from tunnelgate.allocator import tune_allocator; print(tune_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


_TRIM_CHILD = """
from tunnelgate.allocator import trim, tune_allocator

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) // 1024

tune_allocator()
blocks = [b"x" * (512 * 1024) for _ in range(128)]  # 64 MiB from the heap
sentinel = b"y" * (512 * 1024)  # on top: the free space below cannot be cut off the top
del blocks
before = rss()
trimmed = trim()
print(trimmed, before, rss())
"""


def test_trim_gives_free_heap_back_from_the_middle_of_the_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _TRIM_CHILD], capture_output=True, text=True, check=True
    )
    trimmed, before, after = out.stdout.split()
    assert trimmed == "True"
    assert int(before) - int(after) > 48, out.stdout  # MiB given back
