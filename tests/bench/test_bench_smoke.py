"""The benchmark's smoke run: `make bench`'s whole pipeline, tiny, to keep it from rotting.

``python -m bench.run --smoke`` goes through the same orchestration as the benchmark (start
the origin and the systems, check routes, sweep concurrency, bulk downloads, CPU and memory
from /proc, integrity, idle tunnels, report) with the pure-Python origin
(``tunnelgate.testing.local_app``) and load generator in place of nginx and wrk, so it needs
nothing from apt but the redis-server the tests use anyway. The nginx two-hop chain is two
Python TCP relays here (``bench.relay``), and the result and report say so. The TCP rows
(direct, socat if installed, a tunnelgate TCP tunnel), the metrics on/off row, the
cross-node row (two gateways and a redis-server) and the workers row (``--workers 2`` over
1) run too, one short round each. Of the HTTPS rows only tunnelgate's listener is measured
(with the run's test certificate, and the Python clients over verified TLS); the nginx ones
are named as not measured. It times nothing: only the
shape of the result is checked.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 150.0  # seconds; the run takes ~10 s and cuts itself off after 120 s
SWEEP = [1, 10, 50, 200]
POINT_FIELDS = {"tool", "connections", "duration_s", "requests", "rps", "p50_ms", "p99_ms",
                "errors", "cpu_us_per_request", "restarts_during"}  # fmt: skip
BULK_FIELDS = {"parallel", "bytes", "seconds", "mb_per_s", "truncated", "errors", "runs_mb_per_s"}
CPU_ROLES = {
    "direct": {"origin"},
    "twohop": {"gateway", "client", "origin"},  # the front hop, the back hop, the origin
    "tunnelgate": {"gateway", "client", "origin"},
}


def _run_smoke(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "bench.run", "--smoke", "--results", str(results),
            "--workdir", str(tmp_path / "work")]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"bench.run --smoke failed:\n{done.stderr[-4000:]}"
    return json.loads((results / "latest.json").read_text()), results


def _check_system(name: str, system: dict[str, Any]) -> None:
    assert [point["connections"] for point in system["sweep"]] == SWEEP
    for point in system["sweep"]:
        assert set(point) == POINT_FIELDS
        assert point["requests"] > 0
        assert isinstance(point["p50_ms"], float)
        assert isinstance(point["p99_ms"], float)
        assert set(point["cpu_us_per_request"]) == CPU_ROLES[name]
    for key in ("bulk_single", "bulk_parallel"):
        assert set(system[key]) >= BULK_FIELDS
        assert system[key]["bytes"] > 0
        assert system[key]["errors"] == 0
    assert system["integrity"]["ok"] is True
    assert system["skipped"] == []
    assert system["route_failures"] == 0


def _check_https(result: dict[str, Any]) -> None:
    https = result["https"]
    assert result["config"]["https_systems"] == ["tunnelgate"]
    assert set(https["systems"]) == {"tunnelgate"}
    assert set(https["not_measured"]) == {"direct", "twohop"}
    assert "ECDSA P-256" in https["certificate"]["key"]
    tunnelgate = https["systems"]["tunnelgate"]
    assert [point["connections"] for point in tunnelgate["sweep"]] == [50]
    assert tunnelgate["sweep"][0]["requests"] > 0
    assert tunnelgate["sweep"][0]["errors"] == 0
    assert tunnelgate["bulk_single"]["bytes"] > 0
    assert tunnelgate["bulk_single"]["errors"] == 0
    assert set(tunnelgate["bulk_single"]["cpu_ms_per_mib"]) == CPU_ROLES["tunnelgate"]
    assert tunnelgate["bulk_parallel"] is None  # HTTPS: one download only
    assert tunnelgate["integrity"]["ok"] is True
    assert tunnelgate["tls"]["version"] == "TLSv1.3"
    assert tunnelgate["skipped"] == []
    over_http = https["ratios"]["tunnelgate https/http"]
    assert isinstance(over_http["CPU per request, gateway / front end (µs)"], float)


def _check_tcp(result: dict[str, Any]) -> None:
    tcp = result["tcp"]
    # socat comes from apt (make bench installs it); without it its column is named as not
    # measured, and the run is still complete.
    assert set(tcp["systems"]) | set(tcp["not_measured"]) == {"direct", "socat", "tunnelgate"}
    assert {"direct", "tunnelgate"} <= set(tcp["systems"])
    for system in tcp["systems"].values():
        assert system["transfer"]["bytes"] > 0
        assert system["transfer"]["truncated"] == 0
        assert system["connections"]["made"] > 0
        assert system["connections"]["errors"] == 0
    cpu = tcp["systems"]["tunnelgate"]["transfer"]["cpu_ms_per_mib"]
    assert set(cpu) == {"gateway", "client", "service"}
    assert isinstance(tcp["ratios"]["tunnelgate/direct"]["one 100 MiB transfer (MB/s)"], float)


def _check_metrics(result: dict[str, Any]) -> None:
    metrics = result["metrics"]
    for side in ("off", "on", "control"):
        assert metrics[side]["rps"] > 0
        assert metrics[side]["errors"] == 0
    assert metrics["on"]["scrapes"]["ok"] > 0
    assert metrics["on"]["scrapes"]["failed"] == 0
    assert metrics["on"]["scrape_cpu_us"] is not None
    assert isinstance(metrics["on_over_off"], float)


def _check_cluster(result: dict[str, Any]) -> None:
    cluster = result["cluster"]
    for side in ("same-node", "cross-node"):
        assert cluster[side]["rps"] > 0
        assert cluster[side]["errors"] == 0
        # None: the run's time budget ran out before the downloads (a loaded machine); a
        # download that failed is in "errors" instead.
        bulk = cluster[side]["bulk"]
        assert bulk is None or bulk["errors"] == 0
    assert cluster["errors"] == []
    assert cluster["cross-node"]["cpu_us_per_request"]["gateway2"] is not None
    assert isinstance(cluster["rps_cross_over_same"], float)
    assert isinstance(cluster["bulk_cross_over_same"], float)


def _check_workers(result: dict[str, Any]) -> None:
    workers = result["workers"]
    for side in ("one", "two"):
        assert workers[side]["rps"] > 0
        assert workers[side]["errors"] == 0
    split = workers["two"]["requests_by_worker"]
    assert set(split) == {"0", "1"}  # JSON keys
    assert all(count > 0 for count in split.values()), split  # both workers accepted
    assert isinstance(workers["two_over_one"], float)


def test_smoke_run_writes_a_complete_result(tmp_path: Path) -> None:
    result, results = _run_smoke(tmp_path)

    assert result["problems"] == []
    assert result["errors"] == []
    assert {"nproc", "cpu_model", "kernel"} <= set(result["machine"])
    assert set(result["systems"]) == {"direct", "twohop", "tunnelgate"}
    assert result["config"]["twohop"] == "python"  # no nginx in the smoke run: Python relays
    for name, system in result["systems"].items():
        _check_system(name, system)
    for name in ("twohop", "tunnelgate"):
        assert set(result["systems"][name]["rss_kib"]["idle"]) == {"gateway", "client"}
    ratios = result["ratios"]
    assert set(ratios) == {"tunnelgate/direct", "tunnelgate/twohop", "twohop/direct"}
    assert isinstance(ratios["tunnelgate/twohop"]["small GET req/s, 50 connections"], float)
    tunnels = result["idle_tunnels"]
    assert tunnels["count"] == 20
    assert isinstance(tunnels["per_tunnel_kib"], float)
    assert tunnels["sample_routed"] == tunnels["sample_size"] == 20

    _check_https(result)
    _check_tcp(result)
    _check_metrics(result)
    _check_cluster(result)
    _check_workers(result)

    markdown = (results / "latest.md").read_text()
    assert "| small GET req/s, 50 connections |" in markdown
    assert "| two-hop (Python relays) |" in markdown
    assert "| tunnelgate / direct | tunnelgate / two-hop |" in markdown
    assert "## Targets (issue 3)" in markdown
    assert "## HTTPS (issue 8)" in markdown
    assert "| metric | tunnelgate --https | tunnelgate HTTPS / HTTP (CPU rows) |" in markdown
    assert "not measured in the smoke run" in markdown
    assert "## TCP tunnels (issue 9)" in markdown
    assert "## Metrics on/off (issue 10)" in markdown
    assert "| small GET req/s, metrics on / off | >= 0.97 |" in markdown
    assert "## Cross-node (issue 12)" in markdown
    assert "## Workers (issue 12)" in markdown
    assert "| `--workers 2` |" in markdown
    if importlib.util.find_spec("matplotlib") is not None:
        assert (results / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    else:  # `make test` installs only the dev extra: the report says why there is no chart
        assert "matplotlib is missing" in result["chart"]
