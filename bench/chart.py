"""The chart: small-GET req/s and p99 latency against concurrency, one line per system.

Both axes are logarithmic: direct nginx and PageKite are two orders of magnitude apart, and a
linear axis would flatten one of them into the floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from .report import NAMES, Result

matplotlib.use("Agg")  # no display: render to a file only (Figure, not pyplot: no global state)

STYLE: Final = {
    "direct": {"color": "#7f7f7f", "marker": "s", "linestyle": "--"},
    "tunnelgate": {"color": "#1f6fd1", "marker": "o", "linestyle": "-"},
    "pagekite": {"color": "#e07b00", "marker": "^", "linestyle": "-"},
}


def _human(value: float, _pos: object = None) -> str:
    """3 significant digits: 8.57k, 14.9k, 25.4, 0.41."""
    if value >= 1000:
        return f"{value / 1000:.3g}k"
    return f"{value:.3g}"


def _series(system: Result, key: str) -> tuple[list[int], list[float], list[str]]:
    """x, y, and the label of each point (its value; "crashed" if the system restarted)."""
    xs, ys, labels = [], [], []
    for entry in sorted(system.get("sweep") or (), key=lambda e: e["connections"]):
        if entry.get(key) is not None and entry.get("requests"):
            xs.append(int(entry["connections"]))
            ys.append(float(entry[key]))
            crashed = " (crashed)" if entry.get("restarts_during") else ""
            labels.append(_human(float(entry[key])) + crashed)
    return xs, ys, labels


CLOSE: Final = 2.5  # points nearer than this factor at one x get their labels on either side


def _label_below(x: int, y: float, others: dict[int, list[float]]) -> bool:
    """Put the label under the point when a higher point sits close above it."""
    return any(y < other <= y * CLOSE for other in others.get(x, []))


def _panel(ax: Axes, result: Result, key: str, title: str, ylabel: str) -> None:
    series = {name: _series(system, key) for name, system in result.get("systems", {}).items()}
    series = {name: s for name, s in series.items() if s[0]}
    at: dict[int, list[float]] = {}
    for xs, ys, _ in series.values():
        for x, y in zip(xs, ys, strict=True):
            at.setdefault(x, []).append(y)
    for name, (xs, ys, labels) in series.items():
        style: dict[str, Any] = STYLE.get(name, {})
        ax.plot(xs, ys, label=NAMES.get(name, name), linewidth=2, markersize=6, **style)
        for x, y, label in zip(xs, ys, labels, strict=True):
            below = _label_below(x, y, at)
            ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(0, -12 if below else 7),
                ha="center", fontsize=7, color=style.get("color", "black"),
            )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted(at)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    values = [y for ys in at.values() for y in ys]
    wide = bool(values) and min(values) > 0 and max(values) / min(values) > 1000
    # Over three decades, 1-2-5 ticks crowd the axis.
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_human))
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.12, y=0.12)  # room for the value labels


def render(result: Result, path: Path) -> None:
    fig = Figure(figsize=(11, 4.6), dpi=110)
    left, right = fig.subplots(1, 2)
    _panel(left, result, "rps", "Throughput: small GET (higher is better)", "requests / s")
    _panel(right, result, "p99_ms", "p99 latency (lower is better)", "milliseconds")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=10, frameon=False)
    m = result.get("machine", {})
    shown = " vs ".join(NAMES.get(name, name) for name in result.get("systems", {}))
    origin = result.get("config", {}).get("origin", "?")
    fig.suptitle(
        f"{shown} (origin: {origin}, 127.0.0.1) — {result.get('date')} — "
        f"{m.get('nproc')} CPUs, {m.get('cpu_model')}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # the legend sits under both panels
    fig.savefig(path)
