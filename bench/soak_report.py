"""The soak's results: ``soak.json`` (everything), ``soak.md`` (the tables) and ``soak.svg``
(the gateway's RSS and open descriptors over time, drawn by hand: no plotting dependency)."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any, Final

WIDTH: Final = 860
HEIGHT: Final = 320
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 36, 44  # plot margins, px
RSS_COLOUR: Final = "#1f77b4"
FDS_COLOUR: Final = "#d62728"


def write_results(result: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    (directory / "soak.md").write_text(markdown(result))
    (directory / "soak.svg").write_text(svg(result))


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def verdict_table(v: dict[str, Any]) -> list[str]:
    refused = ", ".join(f"{reason} {count:,}" for reason, count in v["refused"].items()) or "-"
    unexplained = ", ".join(f"{k} {n}" for k, n in v["unexplained_by_kind"].items())
    lost = ", ".join(f"{k} {n}" for k, n in v["lost_by_kind"].items())
    return [
        "| requests | answered correctly | refused, with a reason | corrupted | lost "
        "| unexplained failures |",
        "|---:|---:|---|---:|---:|---:|",
        f"| {v['requests']:,} | {v['ok']:,} | {v['refused_total']:,}: {refused} "
        f"| {v['corrupted']} | {v['lost']}{f' ({lost})' if lost else ''} "
        f"| {v['unexplained']}{f' ({unexplained})' if unexplained else ''} |",
    ]


def flatness_table(lives: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| gateway process | span | | start | after warm-up (first window's median) "
        "| end (last window's median) | max | slope after warm-up | growth bound | flat |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for life in lives:
        rss, fds = life["rss_kib"], life["fds"]
        flat = ("yes" if life["flat"] else "**NO**") if life["judged"] else "not judged (short)"
        span = f"{life['from_s']:.0f}-{life['to_s']:.0f} s"
        lines.append(
            f"| {life['life'] + 1} | {span} | RSS MiB | {_mib(rss['start'])} "
            f"| {_mib(rss['first_window'])} | {_mib(rss['last_window'])} | {_mib(rss['max'])} "
            f"| {rss['slope_per_min'] / 1024:+.2f} MiB/min | {_mib(rss['growth_bound'])} "
            f"| {flat} |"
        )
        lines.append(
            f"| | | open fds | {fds['start']:,} | {fds['first_window']:,} "
            f"| {fds['last_window']:,} | {fds['max']:,} | {fds['slope_per_min']:+.2f} /min "
            f"| {fds['growth_bound']} | |"
        )
    return lines


def fault_lines(faults: list[dict[str, Any]]) -> list[str]:
    kills = [f for f in faults if "s" in f["what"] and "gateway" not in f["what"]]
    lines = []
    for name in ("SIGKILL", "SIGTERM"):
        some = [f for f in kills if f["what"].startswith(name)]
        if some:
            back = sorted(f["back_s"] for f in some)
            lines.append(
                f"- {len(some)} tunnel clients killed with {name} and restarted (down "
                f"{min(f['down_s'] for f in some):.1f}-{max(f['down_s'] for f in some):.1f} s; "
                f"tunnel back {back[0]:.1f}-{back[-1]:.1f} s after the signal; exit statuses "
                f"{sorted({f['exit'] for f in some})})"
            )
    for f in faults:
        if "gateway" in f["what"]:
            lines.append(
                f"- at {f['t']:.0f} s the gateway got SIGTERM: drained and exited with status "
                f"{f['exit']} after {f['drained_s']:.1f} s, the new one listened at "
                f"{f['listening_s']:.1f} s, all tunnels were back at "
                f"{f['all_tunnels_back_s']:.1f} s"
            )
    return lines


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    load = result.get("loadavg_1m", {})
    lines = [
        f"# Soak: {cfg['connections']:,} keep-alive connections over {cfg['clients']} tunnels, "
        f"{cfg['duration']:g} s, with faults",
        "",
        f"`{result['command']}`, {result['date']}; {result['machine']['nproc']} cores; "
        f"{cfg['rate']:g} requests/s asked for, from {cfg['sources']} source addresses. "
        f"Load average (1 min): {load.get('start')} at the start, mean {load.get('mean')}, "
        f"max {load.get('max')}, {load.get('end')} at the end. CPU: gateway "
        f"{result.get('gateway_cpu_s')} s, app {result.get('app_cpu_s')} s, harness "
        f"{result.get('harness_cpu_s')} s over "
        f"{result.get('ran_s')} s.",
        "",
        f"**Verdict: {'PASSED' if result.get('passed') else 'FAILED'}**",
        "",
    ]
    verdict = result.get("verdict")
    if verdict is not None:
        lines += verdict_table(verdict)
        lines += [
            "",
            f"Gateway refusals outside any fault window: "
            f"{verdict['gateway_refusals_outside_fault_windows']:,}. Bytes checked: "
            f"{verdict['bytes_up'] / 2**20:,.0f} MiB up, {verdict['bytes_down'] / 2**20:,.0f} "
            f"MiB down.",
        ]
        lines += [f"- corrupted: {what}" for what in verdict["corrupt_samples"]]
        lines += [f"- lost or unexplained: {what}" for what in verdict["failure_samples"]]
    if result.get("flatness"):
        lines += [
            "",
            f"Gateway RSS and descriptors (warm-up {result['warmup_s']:g} s, windows "
            f"{result['window_s']:g} s):",
            "",
        ]
        lines += flatness_table(result["flatness"])
    if result.get("faults"):
        lines += ["", "Faults:", "", *fault_lines(result["faults"])]
    lines += [f"\nerror: {error}" for error in result["errors"]]
    return "\n".join(lines) + "\n"


def _polyline(points: list[tuple[float, float]], colour: str) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>'


def svg(result: dict[str, Any]) -> str:
    """RSS (MiB, left axis) and open fds (right axis) against seconds, faults marked."""
    samples = result.get("samples", [])
    span = max([float(result["config"]["duration"])] + [float(s["t"]) for s in samples])
    # Axis tops with round quarters: 20 MiB and 100 descriptors steps.
    rss_top = 80 * math.ceil(max([s["rss_kib"] / 1024 for s in samples] + [1.0]) * 1.1 / 80)
    fds_top = 400 * math.ceil(max([s["fds"] for s in samples] + [1]) * 1.1 / 400)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + w * t / span

    def y(value: float, top: float) -> float:
        return TOP + h * (1 - value / top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="13">{escape(_title(result))}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#888"/>',
    ]
    for fault in result.get("faults", []):
        restart = "gateway" in fault["what"]
        colour, dash = ("#444", "6,3") if restart else ("#bbb", "2,3")
        out.append(
            f'<line x1="{x(fault["t"]):.1f}" y1="{TOP}" x2="{x(fault["t"]):.1f}" '
            f'y2="{TOP + h}" stroke="{colour}" stroke-dasharray="{dash}"/>'
        )
    for k in range(5):
        frac = k / 4
        ty = TOP + h * (1 - frac)
        out.append(
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" '
            f'fill="{RSS_COLOUR}">{rss_top * frac:.0f}</text>'
        )
        out.append(
            f'<text x="{LEFT + w + 6}" y="{ty + 4:.1f}" '
            f'fill="{FDS_COLOUR}">{fds_top * frac:.0f}</text>'
        )
        tx = LEFT + w * frac
        out.append(
            f'<text x="{tx:.1f}" y="{TOP + h + 16}" text-anchor="middle">{span * frac:.0f} s</text>'
        )
    out.append(
        f'<text x="14" y="{TOP + h / 2}" fill="{RSS_COLOUR}" '
        f'transform="rotate(-90 14 {TOP + h / 2})" text-anchor="middle">RSS, MiB</text>'
    )
    out.append(
        f'<text x="{WIDTH - 10}" y="{TOP + h / 2}" fill="{FDS_COLOUR}" '
        f'transform="rotate(90 {WIDTH - 10} {TOP + h / 2})" text-anchor="middle">'
        f"open descriptors</text>"
    )
    for life in sorted({s["life"] for s in samples if s["life"] >= 0}):
        mine = [s for s in samples if s["life"] == life]
        out.append(
            _polyline([(x(s["t"]), y(s["rss_kib"] / 1024, rss_top)) for s in mine], RSS_COLOUR)
        )
        out.append(_polyline([(x(s["t"]), y(s["fds"], fds_top)) for s in mine], FDS_COLOUR))
    for s in samples:  # the old gateway draining, then the new one starting
        if s["life"] < 0:
            cx = x(s["t"])
            for cy, colour in ((y(s["rss_kib"] / 1024, rss_top), RSS_COLOUR),
                               (y(s["fds"], fds_top), FDS_COLOUR)):  # fmt: skip
                out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="1.5" fill="{colour}"/>')
    out.append(
        f'<text x="{LEFT}" y="{HEIGHT - 8}" fill="#444">dashed: the gateway drain-restart '
        f"(dots: draining, then starting); dotted: a tunnel client killed and restarted</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _title(result: dict[str, Any]) -> str:
    cfg = result["config"]
    return (
        f"Gateway RSS and open descriptors: {cfg['connections']:,} connections, "
        f"{cfg['clients']} tunnels, {result['date']}"
    )
