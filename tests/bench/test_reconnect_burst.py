"""`make bench-reconnect`, tiny (20 clients, the gateway restarted at once), to keep it from
rotting: the whole pipeline runs and the report has its shape. It times nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 90.0  # seconds; the run takes ~3 s and cuts itself off after 60 s
CLIENTS = 20


def test_reconnect_burst_smoke(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.reconnect_burst", "--clients", str(CLIENTS),
            "--down", "0", "--budget", "60", "--results", str(tmp_path),
            "--workdir", str(tmp_path / "work")]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "reconnect-burst.json").read_text())
    assert result["errors"] == []
    (run,) = result["runs"]
    assert run["came_back"] == CLIENTS
    assert run["all_names_reclaimed"] is True
    assert sum(run["per_second"].values()) == CLIENTS
    assert set(run["after_restart_s"]) == {"p50", "p90", "max"}
    assert "| gateway down |" in (tmp_path / "reconnect-burst.md").read_text()
