"""`make soak`, small: the verdict logic on made-up fates, then the harness end to end (a
short run with one client kill and a gateway drain-restart passes; the same with an app that
damages answers fails). It times nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# The harness is `python -m bench.soak` from the repository, not part of the package: its
# verdict module is imported from there (it imports nothing but the standard library).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.soak_verdict import (  # noqa: E402
    FDS_GROWTH_MAX,
    RSS_GROWTH_MAX_KIB,
    Sample,
    Tally,
    Window,
    flatness,
    judge,
)

RUN_TIMEOUT = 150.0  # seconds; each run is well under a minute and has its own deadline
GATEWAY = Window(10.0, 20.0, None, "gateway drain-restart")
CLIENT_3 = Window(30.0, 40.0, 3, "SIGKILL")


def _tally(*failures: tuple[str, float, int]) -> Tally:
    tally = Tally()
    tally.answered(10, 20)
    for kind, at, tunnel in failures:
        tally.failed(kind, at, at + 0.5, tunnel)
    return tally


def test_connection_failures_pass_only_inside_the_gateway_restart() -> None:
    inside = judge(_tally(("connect_refused", 12.0, 0), ("reset", 19.9, 5)), [GATEWAY, CLIENT_3])
    assert inside["passed"] is True
    assert inside["refused"] == {"connect_refused": 1, "reset": 1}
    # A client's restart does not explain a reset: the gateway should have answered.
    outside = judge(_tally(("reset", 35.0, 3)), [GATEWAY, CLIENT_3])
    assert outside["passed"] is False
    assert outside["unexplained_by_kind"] == {"reset": 1}


def test_a_reset_after_an_answer_the_gateway_logged_is_a_refusal() -> None:
    tally = _tally()
    tally.failed("reset", 50.0, 50.1, 2, ident=1_000_017)
    tally.failed("reset", 51.0, 51.1, 2, ident=1_000_018)
    assert tally.to_look_up() == {1_000_017, 1_000_018}
    verdict = judge(tally, [], {1_000_017: 404, 1_000_018: 200})
    assert verdict["refused"] == {"reset after the gateway's 404 (its log)": 1}
    assert verdict["unexplained"] == 1  # a 200 logged and then a reset is not a refusal
    assert verdict["passed"] is False


def test_a_cut_off_passes_only_inside_its_own_tunnels_fault() -> None:
    assert judge(_tally(("cut_off", 35.0, 3)), [CLIENT_3])["refused"] == {"cut_off": 1}
    other = judge(_tally(("cut_off", 35.0, 4)), [CLIENT_3])
    assert other["passed"] is False
    assert other["unexplained"] == 1


def test_lost_and_corrupted_requests_fail_the_run() -> None:
    lost = judge(_tally(("timeout", 15.0, 0)), [GATEWAY])
    assert lost["passed"] is False
    assert lost["lost"] == 1
    tally = _tally()
    tally.corrupt("request 7: body digest differs")
    corrupted = judge(tally, [])
    assert corrupted["passed"] is False
    assert corrupted["corrupt_samples"] == ["request 7: body digest differs"]


def test_gateway_refusals_count_by_code_and_outside_windows() -> None:
    tally = _tally()
    tally.refused_by_gateway("no_tunnel", 15.0, 15.1, 0)
    tally.refused_by_gateway("tunnel_busy", 50.0, 50.1, 0)
    verdict = judge(tally, [GATEWAY])
    assert verdict["passed"] is True
    assert verdict["refused"] == {
        "X-Tunnelgate-Error: no_tunnel": 1,
        "X-Tunnelgate-Error: tunnel_busy": 1,
    }
    assert verdict["gateway_refusals_outside_fault_windows"] == 1
    assert verdict["requests"] == 3


def _samples(rss_growth: int, fds_growth: int) -> list[Sample]:
    """Five minutes every 2 s, growing linearly after a minute of warm-up."""
    found = []
    for k in range(151):
        t = 2.0 * k
        share = max(0.0, (t - 60) / 240)
        found.append(Sample(t, 0, 100_000 + round(share * rss_growth),
                            2000 + round(share * fds_growth), 1.0))  # fmt: skip
    return found


def test_flatness_fails_past_its_bounds_and_passes_within() -> None:
    flat = flatness(_samples(RSS_GROWTH_MAX_KIB // 2, FDS_GROWTH_MAX // 2), 60.0, 60.0)
    assert flat["judged"] is True
    assert flat["flat"] is True
    assert flat["rss_kib"]["first_window"] < flat["rss_kib"]["last_window"]
    leaking = flatness(_samples(3 * RSS_GROWTH_MAX_KIB, 0), 60.0, 60.0)
    assert leaking["flat"] is False
    assert leaking["rss_kib"]["slope_per_min"] > 0
    assert flatness(_samples(0, 10 * FDS_GROWTH_MAX), 60.0, 60.0)["flat"] is False
    short = flatness(_samples(0, 0)[:40], 60.0, 60.0)  # 78 s: no room for two windows
    assert short["judged"] is False


def _run(tmp_path: Path, *more: str) -> tuple[int, dict[str, Any], str]:
    argv = [sys.executable, "-m", "bench.soak", "--connections", "60", "--clients", "2",
            "--sources", "3", "--results", str(tmp_path),
            "--workdir", str(tmp_path / "work"), *more]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    result = json.loads((tmp_path / "soak.json").read_text())
    return done.returncode, result, done.stdout + done.stderr


def test_a_short_soak_with_a_client_kill_and_a_gateway_restart_passes(tmp_path: Path) -> None:
    rc, result, output = _run(tmp_path, "--duration", "30", "--rate", "30", "--kills", "1")
    assert rc == 0, output + (tmp_path / "soak.md").read_text()
    verdict = result["verdict"]
    assert verdict["ok"] > 100
    assert verdict["corrupted"] + verdict["lost"] + verdict["unexplained"] == 0
    whats = [fault["what"] for fault in result["faults"]]
    assert len(whats) == 2
    assert any(what.startswith("SIGKILL") for what in whats)
    assert any(what.startswith("gateway") for what in whats)
    restart = next(f for f in result["faults"] if f["what"].startswith("gateway"))
    assert restart["exit"] == 0
    assert [life["life"] for life in result["flatness"]] == [0, 1]
    assert "| requests | answered correctly |" in (tmp_path / "soak.md").read_text()
    assert (tmp_path / "soak.svg").read_text().count("<polyline") == 4  # RSS, fds x 2 lives


def test_an_app_that_damages_answers_fails_the_soak(tmp_path: Path) -> None:
    rc, result, output = _run(
        tmp_path, "--duration", "12", "--rate", "20", "--kills", "0", "--restart-at", "0",
        "--corrupt-every", "7",
    )  # fmt: skip
    assert rc == 1, output
    assert result["passed"] is False
    assert result["verdict"]["corrupted"] > 0
    assert "body digest differs" in result["verdict"]["corrupt_samples"][0]
    assert result["verdict"]["lost"] == 0
