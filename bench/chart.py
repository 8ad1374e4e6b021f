"""The chart: small-GET req/s and p99 latency against concurrency, one line per system, and
tunnelgate's req/s as a fraction of direct nginx's and of the nginx two-hop chain's.

The first two panels are logarithmic on both axes: direct nginx and PageKite are two orders
of magnitude apart, and a linear axis would flatten one of them into the floor. The third is
linear: a ratio is read against 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from .report import Result, display_name, point

matplotlib.use("Agg")  # no display: render to a file only (Figure, not pyplot: no global state)

STYLE: Final = {
    "direct": {"color": "#7f7f7f", "marker": "s", "linestyle": "--"},
    "twohop": {"color": "#2ca02c", "marker": "D", "linestyle": ":"},
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
        ax.plot(xs, ys, label=display_name(result, name), linewidth=2, markersize=6, **style)
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


def _ratios(result: Result, base: str) -> tuple[list[int], list[float]]:
    """tunnelgate's req/s over `base`'s, at each concurrency both measured."""
    systems = result.get("systems", {})
    xs: list[int] = []
    ys: list[float] = []
    if "tunnelgate" not in systems or base not in systems:
        return xs, ys
    for entry in sorted(systems["tunnelgate"].get("sweep") or (), key=lambda e: e["connections"]):
        theirs = point(systems[base], entry["connections"])
        if entry.get("rps") and theirs is not None and theirs.get("rps"):
            xs.append(int(entry["connections"]))
            ys.append(float(entry["rps"]) / float(theirs["rps"]))
    return xs, ys


def _ratio_panel(ax: Axes, result: Result) -> None:
    series = {base: _ratios(result, base) for base in ("direct", "twohop")}
    series = {base: s for base, s in series.items() if s[0]}
    at: dict[int, list[float]] = {}
    for xs, ys in series.values():
        for x, y in zip(xs, ys, strict=True):
            at.setdefault(x, []).append(y)
    top = max((y for ys in at.values() for y in ys), default=1.0)
    ceiling = max(1.4, top * 1.4)  # room for the legend above the line at 1
    for base, (xs, ys) in series.items():
        style: dict[str, Any] = STYLE[base]
        label = f"÷ {display_name(result, base)}"
        ax.plot(xs, ys, label=label, linewidth=2, markersize=6, **style)
        for x, y in zip(xs, ys, strict=True):
            # The lower of two values gets its label under it, if that stays inside the axes.
            below = any(y < other for other in at[x]) and y > 0.1 * ceiling
            ax.annotate(
                f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, -12 if below else 7),
                ha="center", fontsize=7, color=style["color"],
            )  # fmt: skip
    ticks = sorted(at)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(0, ceiling)
    ax.axhline(1.0, color="black", linewidth=0.8, alpha=0.4)
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel("fraction of the yardstick's req/s")
    ax.set_title("tunnelgate req/s ÷ yardstick, same run", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    ax.margins(x=0.12)


def render(result: Result, path: Path) -> None:
    fig = Figure(figsize=(15, 4.6), dpi=110)
    left, middle, right = fig.subplots(1, 3, width_ratios=(1, 1, 0.8))
    _panel(left, result, "rps", "Throughput: small GET (higher is better)", "requests / s")
    _panel(middle, result, "p99_ms", "p99 latency (lower is better)", "milliseconds")
    _ratio_panel(right, result)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=10, frameon=False)
    m = result.get("machine", {})
    shown = " vs ".join(display_name(result, name) for name in result.get("systems", {}))
    origin = result.get("config", {}).get("origin", "?")
    fig.suptitle(
        f"{shown} (origin: {origin}, 127.0.0.1) — {result.get('date')} — "
        f"{m.get('nproc')} CPUs, {m.get('cpu_model')}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # the legend sits under the panels
    fig.savefig(path)
