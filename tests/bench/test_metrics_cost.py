"""`python -m bench.metrics_cost`, tiny: it runs and prints every row (it times nothing here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_cost_prints_its_rows() -> None:
    argv = [sys.executable, "-m", "bench.metrics_cost", "--tunnels", "3", "--loops", "1000"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("counters.py compiled: ")
    assert [line.split()[0] for line in lines[1:4]] == ["request()", "route", "both"]
    assert lines[4].startswith("scrape,     3 tunnels: ")
    assert "with --metrics-per-tunnel" in lines[4]
