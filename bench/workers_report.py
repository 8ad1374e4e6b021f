"""The workers row's part of the report (bench.workers_ab): a Markdown section and a check
of form, on the JSON the run wrote."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Result = Mapping[str, Any]


def section(result: Result) -> list[str]:
    found = result.get("workers")
    if not isinstance(found, Mapping):
        return []
    config = found.get("config") or {}
    one, two = found.get("one") or {}, found.get("two") or {}
    ratio, paired = found.get("two_over_one"), found.get("two_over_one_paired")
    rounds = found.get("round_ratios") or []
    spread = f", from {min(rounds):.3f} to {max(rounds):.3f}" if rounds else ""
    split = two.get("requests_by_worker") or {}
    total = sum(split.values()) or 1
    shares = ", ".join(f"worker {i}: {n / total:.0%}" for i, n in sorted(split.items()))

    def cells(side: Mapping[str, Any]) -> str:
        rps, p99 = side.get("rps"), side.get("p99_ms")
        cpu = side.get("gateway_cpu_us_per_request")
        runs = ", ".join(f"{x:,.0f}" for x in side.get("runs_rps") or ())
        return (f"{'n/a' if rps is None else f'{rps:,.0f}'} | {runs} | "
                f"{'n/a' if p99 is None else f'{p99:,.2f}'} | "
                f"{'n/a' if cpu is None else f'{cpu:,.1f}'} | {side.get('errors')}")  # fmt: skip

    value = "n/a" if ratio is None else f"{ratio:.3f} (each round's ratio: median {paired}{spread})"
    return [
        "## Workers (issue 12)",
        "",
        f"- tunnelgate, small GETs at {config.get('connections')} connections "
        f"({config.get('load_generator')}, {config.get('duration_s')} s each) through one "
        "tunnel: the default single process, and `--workers "
        f"{config.get('workers')}` (with a redis-server) side by side; {config.get('rounds')} "
        "rounds, the order swapped every round, the median of each side shown",
        "- with workers, the tunnel is connected to one of them: a public connection the "
        "kernel hands to another is forwarded to it over the internal link",
        f"- the `--workers {config.get('workers')}` side's requests, by the worker that "
        f"accepted them: {shares or 'n/a'}",
        "- gateway CPU: the supervisor and its workers summed",
        "",
        "| gateway | req/s (median) | req/s, each round | p99 (ms, median) | "
        "gateway CPU per request (µs, median) | errors |",
        "|---|---|---|---|---|---|",
        f"| `--workers 1` | {cells(one)} |",
        f"| `--workers {config.get('workers')}` | {cells(two)} |",
        "",
        f"- small GET req/s, `--workers {config.get('workers')}` / `--workers 1`: {value}",
        "",
    ]


def validate(result: Result) -> list[str]:
    found = result.get("workers")
    if not isinstance(found, Mapping) or found.get("two_over_one") is None:
        return ["no workers result"]
    problems = []
    for side in ("one", "two"):
        if (found.get(side) or {}).get("errors"):
            problems.append(f"workers {side}: requests failed")
    split = (found.get("two") or {}).get("requests_by_worker") or {}
    if sum(1 for n in split.values() if n) < 2:
        problems.append(f"workers two: not every worker accepted requests ({split})")
    return problems
