"""Results: the headline numbers, their ratios, the targets of issue 3, a Markdown report, and
a check of form.

tunnelgate is never reported as a bare number: every row also gives it as a ratio to direct
nginx and to the nginx two-hop chain (:mod:`bench.twohop`), both measured in the same run, in
the table, in the JSON (``ratios``) and in the chart. The HTTPS rows (``result["https"]``) are
a table of their own with the same yardsticks over TLS, issue 8's target, and tunnelgate's
HTTPS figures over its plain-HTTP ones of the same run (the cost of TLS).

Works on the JSON the run wrote, so ``python -m bench.report [bench/results/latest.json]``
re-renders latest.md and latest.png from a saved run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import workers_report

SCHEMA: Final = 1
PHASES: Final = ("http", "https", "tcp", "metrics", "cluster", "workers")
NAMES: Final = {
    "direct": "direct",
    "twohop": "nginx two-hop",
    "tunnelgate": "tunnelgate",
    "pagekite": "PageKite",
}
SHORT: Final = {"twohop": "two-hop"}  # in ratio headings: "tunnelgate / two-hop"
# The ratios reported, numerator / denominator, where both systems ran.
RATIOS: Final = (
    ("tunnelgate", "direct"),
    ("tunnelgate", "twohop"),
    ("twohop", "direct"),
    ("pagekite", "direct"),
)
# Always wanted (tunnelgate and the yardstick), besides every system the run was asked for.
REQUIRED_SYSTEMS: Final = ("direct", "tunnelgate")
Result = Mapping[str, Any]


def display_name(result: Result, name: str) -> str:
    """The system's name for people; the smoke run's two-hop chain is two Python relays."""
    if name == "twohop" and _get(result, "config", "twohop") == "python":
        return "two-hop (Python relays)"
    return NAMES.get(name, name)


def _short(name: str) -> str:
    return SHORT.get(name, NAMES.get(name, name))


def load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def point(system: Result, connections: int) -> Result | None:
    for entry in system.get("sweep") or ():
        if entry.get("connections") == connections:
            return entry  # type: ignore[no-any-return]
    return None


def _get(data: Result | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _quotient(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def _mib(kib: Any) -> float | None:
    return kib / 1024 if isinstance(kib, int | float) else None


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    value: Callable[[Result, Result], Any]  # (system, whole result) -> number or None
    higher_is_better: bool
    fmt: str = "{:,.0f}"


ROWS: Final = (
    Row("small GET req/s, 50 connections", lambda s, r: _get(point(s, 50), "rps"), True),
    Row("p50 latency, 50 connections (ms)", lambda s, r: _get(point(s, 50), "p50_ms"), False,
        "{:,.2f}"),
    Row("p99 latency, 50 connections (ms)", lambda s, r: _get(point(s, 50), "p99_ms"), False,
        "{:,.2f}"),
    Row("small GET req/s, 1 connection", lambda s, r: _get(point(s, 1), "rps"), True),
    Row("p50 latency, 1 connection (ms)", lambda s, r: _get(point(s, 1), "p50_ms"), False,
        "{:,.2f}"),
    Row("p99 latency, 1 connection (ms)", lambda s, r: _get(point(s, 1), "p99_ms"), False,
        "{:,.2f}"),
    Row("one 100 MiB download (MB/s)", lambda s, r: _get(s, "bulk_single", "mb_per_s"), True,
        "{:,.1f}"),
    Row("8 downloads in parallel (MB/s, total)",
        lambda s, r: _get(s, "bulk_parallel", "mb_per_s"), True, "{:,.1f}"),
    Row("CPU per request, gateway / front end (µs)",
        lambda s, r: _get(point(s, 50), "cpu_us_per_request", "gateway"), False, "{:,.1f}"),
    Row("CPU per request, client / back end (µs)",
        lambda s, r: _get(point(s, 50), "cpu_us_per_request", "client"), False, "{:,.1f}"),
    Row("CPU per request, origin worker (µs)",
        lambda s, r: _get(point(s, 50), "cpu_us_per_request", "origin"), False, "{:,.1f}"),
    Row("gateway / front end RSS idle (MiB)",
        lambda s, r: _mib(_get(s, "rss_kib", "idle", "gateway")), False, "{:,.1f}"),
    Row("gateway / front end RSS after load (MiB)",
        lambda s, r: _mib(_get(s, "rss_kib", "after_load", "gateway")), False, "{:,.1f}"),
    Row("client / back end RSS after load (MiB)",
        lambda s, r: _mib(_get(s, "rss_kib", "after_load", "client")), False, "{:,.1f}"),
)  # fmt: skip


def _cell(row: Row, value: Any) -> str:
    return "n/a" if value is None else row.fmt.format(value)


def _ratio(value: Any, base: Any) -> str:
    quotient = _quotient(value, base)
    return "" if quotient is None else f"{quotient:.2f}"


def _ratio_pairs(shown: Collection[str]) -> list[tuple[str, str]]:
    return [(top, bottom) for top, bottom in RATIOS if top in shown and bottom in shown]


def ratios(result: Result) -> dict[str, dict[str, float | None]]:
    """Every row as a ratio between two systems of this run, for the JSON:
    ``{"tunnelgate/twohop": {"small GET req/s, 50 connections": 0.45, ...}, ...}``."""
    systems = result.get("systems", {})
    found: dict[str, dict[str, float | None]] = {}
    for top, bottom in _ratio_pairs(systems):
        quotients = {}
        for row in ROWS:
            q = _quotient(row.value(systems[top], result), row.value(systems[bottom], result))
            quotients[row.label] = None if q is None else round(q, 3)
        found[f"{top}/{bottom}"] = quotients
    return found


def ahead(row: Row, ours: Any, theirs: Any) -> bool | None:
    """Is tunnelgate ahead of PageKite on this row? None when either value is missing."""
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float):
        return None
    return ours > theirs if row.higher_is_better else ours < theirs


def table(result: Result) -> str:
    systems = result.get("systems", {})
    shown = [name for name in NAMES if name in systems]
    pairs = _ratio_pairs(shown)
    head = ["metric", *(display_name(result, n) for n in shown)]
    head += [f"{_short(top)} / {_short(bottom)}" for top, bottom in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        values = {n: row.value(systems[n], result) for n in shown}
        cells = [row.label, *(_cell(row, values[n]) for n in shown)]
        cells += [_ratio(values[top], values[bottom]) for top, bottom in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _extra_rows(result, shown, len(head))
    return "\n".join(lines)


def _integrity(system: Result) -> str:
    ok = _get(system, "integrity", "ok")
    return "n/a" if ok is None else ("ok" if ok else "MISMATCH")


def _extra_rows(result: Result, shown: list[str], width: int) -> list[str]:
    systems = result.get("systems", {})
    tunnel = _get(result, "idle_tunnels", "per_tunnel_kib")
    count = _get(result, "idle_tunnels", "count") or _get(result, "config", "tunnels") or 0
    tunnel_cell = "n/a" if tunnel is None else f"{tunnel:,.1f}"
    rows = [
        [f"gateway RSS per idle tunnel ({count:,} tunnels, KiB)",
         *(tunnel_cell if n == "tunnelgate" else "—" for n in shown)],
        ["integrity (SHA-256 of the 1 MiB file)", *(_integrity(systems[n]) for n in shown)],
        ["restarts / failed route checks",
         *(f"{systems[n].get('restarts', 0)} / {systems[n].get('route_failures', 0)}"
           for n in shown)],
    ]  # fmt: skip
    return ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]


# --- targets (issue 3) -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    metric: str
    wanted: str
    value: str
    met: bool | None  # None: not measured


def _c50(result: Result, name: str, key: str) -> Any:
    return _get(point(result.get("systems", {}).get(name, {}), 50), key)


def _check(value: float | None, ok: Callable[[float], bool], fmt: str) -> tuple[str, bool | None]:
    return ("n/a", None) if value is None else (fmt.format(value), ok(value))


# --- HTTPS (issue 8) ---------------------------------------------------------------
HTTPS_NAMES: Final = {
    "direct": "direct (nginx HTTPS)",
    "twohop": "nginx two-hop, TLS front",
    "tunnelgate": "tunnelgate --https",
}
HTTPS_RATIOS: Final = (("tunnelgate", "direct"), ("tunnelgate", "twohop"), ("twohop", "direct"))
HTTPS_LABELS: Final = frozenset((
    "small GET req/s, 50 connections",
    "p50 latency, 50 connections (ms)",
    "p99 latency, 50 connections (ms)",
    "one 100 MiB download (MB/s)",
    "CPU per request, gateway / front end (µs)",
    "CPU per request, client / back end (µs)",
    "CPU per request, origin worker (µs)",
))  # fmt: skip
HTTPS_ROWS: Final = (
    *(row for row in ROWS if row.label in HTTPS_LABELS),
    Row("CPU per MiB of the download, gateway / front end (ms)",
        lambda s, r: _get(s, "bulk_single", "cpu_ms_per_mib", "gateway"), False, "{:,.2f}"),
    Row("CPU per MiB of the download, client / back end (ms)",
        lambda s, r: _get(s, "bulk_single", "cpu_ms_per_mib", "client"), False, "{:,.2f}"),
    Row("CPU per MiB of the download, origin worker (ms)",
        lambda s, r: _get(s, "bulk_single", "cpu_ms_per_mib", "origin"), False, "{:,.2f}"),
)  # fmt: skip
TLS_BULK_TARGET: Final = 0.80  # tunnelgate's one download over TLS / nginx's (issue 8)
# What TLS costs tunnelgate: its HTTPS CPU rows over its plain-HTTP ones. CPU only: the two
# phases are minutes apart, and the machine's load drifts in between (throughput over HTTPS
# came out above plain HTTP in one run), while CPU per unit of work moves much less.
OVER_HTTP: Final = "tunnelgate HTTPS / HTTP (CPU rows)"
OVER_HTTP_ROWS: Final = frozenset(row.label for row in HTTPS_ROWS if row.label.startswith("CPU"))


def https_ratios(result: Result) -> dict[str, dict[str, float | None]]:
    """The HTTPS rows as ratios between the systems of this run, and tunnelgate's HTTPS
    CPU rows over its plain-HTTP ones (``"tunnelgate https/http"``)."""
    systems = _get(result, "https", "systems") or {}
    plain = _get(result, "systems", "tunnelgate")
    pairs = [(systems.get(a), systems.get(b), f"{a}/{b}", HTTPS_ROWS) for a, b in HTTPS_RATIOS]
    over_http = tuple(row for row in HTTPS_ROWS if row.label in OVER_HTTP_ROWS)
    pairs.append((systems.get("tunnelgate"), plain, "tunnelgate https/http", over_http))
    found: dict[str, dict[str, float | None]] = {}
    for top, bottom, key, rows in pairs:
        if top is None or bottom is None:
            continue
        quotients = {}
        for row in rows:
            q = _quotient(row.value(top, result), row.value(bottom, result))
            quotients[row.label] = None if q is None else round(q, 3)
        found[key] = quotients
    return found


def _tls_cell(system: Result) -> str:
    tls = system.get("tls") or {}
    return f"{tls['version']} {tls['cipher']}" if tls.get("version") else "n/a"


def https_table(result: Result) -> str:
    systems = _get(result, "https", "systems") or {}
    plain = _get(result, "systems", "tunnelgate")
    shown = [name for name in HTTPS_NAMES if name in systems]
    pairs = [(a, b) for a, b in HTTPS_RATIOS if a in shown and b in shown]
    over_http = "tunnelgate" in shown and plain is not None
    head = ["metric", *(HTTPS_NAMES[n] for n in shown)]
    head += [f"{_short(a)} / {_short(b)}" for a, b in pairs]
    head += [OVER_HTTP] if over_http else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in HTTPS_ROWS:
        values = {n: row.value(systems[n], result) for n in shown}
        cells = [row.label, *(_cell(row, values[n]) for n in shown)]
        cells += [_ratio(values[a], values[b]) for a, b in pairs]
        if over_http:
            priced = row.label in OVER_HTTP_ROWS
            cells.append(_ratio(values["tunnelgate"], row.value(plain, result)) if priced else "")
        lines.append("| " + " | ".join(cells) + " |")
    extra = [
        ["TLS negotiated with the download client", *(_tls_cell(systems[n]) for n in shown)],
        ["integrity (SHA-256 of the 1 MiB file)", *(_integrity(systems[n]) for n in shown)],
    ]
    lines += ["| " + " | ".join(row + [""] * (len(head) - len(row))) + " |" for row in extra]
    return "\n".join(lines)


def https_targets(result: Result) -> list[Target]:
    systems = _get(result, "https", "systems") or {}

    def bulk(name: str) -> Any:
        return _get(systems.get(name), "bulk_single", "mb_per_s")

    ours = bulk("tunnelgate")
    against_twohop = _quotient(ours, bulk("twohop"))
    against_direct = _quotient(ours, bulk("direct"))
    target = f">= {TLS_BULK_TARGET:.2f}"
    return [
        Target("one 100 MiB download over TLS, tunnelgate / nginx two-hop with TLS front "
               "(the same path in C: nginx terminates TLS and relays twice)", target,
               *_check(against_twohop, lambda v: v >= TLS_BULK_TARGET, "{:.2f}")),
        Target("for reference, tunnelgate / direct nginx HTTPS (nginx terminates TLS and "
               "serves the file itself: no relay)", "—",
               "n/a" if against_direct is None else f"{against_direct:.2f}", None),
    ]  # fmt: skip


HTTPS_SETUP: Final = {
    "direct": "the nginx origin serves the files over HTTPS itself (no relay)",
    "twohop": "the front hop of the nginx two-hop chain terminates TLS and proxies plain "
    "HTTP to the back hop, with nginx set up as the gateway's listener is (TLS 1.2 and 1.3, "
    "Mozilla intermediate, the client's cipher order, session tickets; no kTLS)",
    "tunnelgate": "the gateway's --https listener; the tunnel itself stays ws:// on loopback",
}


def _https_section(result: Result) -> list[str]:
    https = result.get("https")
    if not isinstance(https, Mapping):
        return []
    cert = https.get("certificate") or {}
    measured = [name for name in HTTPS_NAMES if name in (https.get("systems") or {})]
    out = [
        "## HTTPS (issue 8)",
        "",
        f"- one certificate for the run, served by every system: {cert.get('key')}, for "
        f"{', '.join(cert.get('names') or ())}",
        f"- clients: {https.get('clients')}",
        *(f"- {HTTPS_NAMES[name]}: {HTTPS_SETUP[name]}" for name in measured),
        *(f"- {HTTPS_NAMES.get(name, name)}: {why}"
          for name, why in (https.get("not_measured") or {}).items()),
        f"- {OVER_HTTP}: what TLS costs the gateway and the client, their HTTPS CPU over their "
        "plain-HTTP CPU above (CPU only: the two phases are minutes apart, and the load drifts)",
        "- the HTTPS systems run side by side; their small GETs one system at a time, their "
        "downloads in turn (A B C A B C ...), five each, the median shown",
        "- CPU per MiB: over all the row's downloads together (utime+stime from /proc, in "
        "10 ms ticks, about a second of downloading): indicative",
        "",
        https_table(result),
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
    ]  # fmt: skip
    out += [f"| {t.metric} | {t.wanted} | {t.value} | {_mark(t.met)} |"
            for t in https_targets(result)]  # fmt: skip
    return [*out, ""]


# --- TCP (issue 9) -----------------------------------------------------------------
TCP_NAMES: Final = {
    "direct": "direct (the service)",
    "socat": "socat relay",
    "tunnelgate": "tunnelgate tcp",
}
TCP_RATIOS: Final = (("tunnelgate", "direct"), ("tunnelgate", "socat"), ("socat", "direct"))


def _front(s: Result, key: str, unit: str) -> Any:
    """The public side's CPU: tunnelgate's gateway, socat's relay."""
    cpu = _get(s, key, unit) or {}
    return cpu.get("gateway", cpu.get("relay"))


TCP_ROWS: Final = (
    Row("one 100 MiB transfer (MB/s)", lambda s, r: _get(s, "transfer", "mb_per_s"), True,
        "{:,.1f}"),
    Row("new connections per second", lambda s, r: _get(s, "connections", "per_s"), True),
    Row("p50 / connection (ms)", lambda s, r: _get(s, "connections", "p50_ms"), False,
        "{:,.3f}"),
    Row("p99 / connection (ms)", lambda s, r: _get(s, "connections", "p99_ms"), False,
        "{:,.3f}"),
    Row("CPU per MiB, gateway / relay (ms)",
        lambda s, r: _front(s, "transfer", "cpu_ms_per_mib"), False, "{:,.3f}"),
    Row("CPU per MiB, client (ms)",
        lambda s, r: _get(s, "transfer", "cpu_ms_per_mib", "client"), False, "{:,.3f}"),
    Row("CPU per MiB, service (ms)",
        lambda s, r: _get(s, "transfer", "cpu_ms_per_mib", "service"), False, "{:,.3f}"),
    Row("CPU per connection, gateway / relay (µs)",
        lambda s, r: _front(s, "connections", "cpu_us_per_connection"), False, "{:,.1f}"),
    Row("CPU per connection, client (µs)",
        lambda s, r: _get(s, "connections", "cpu_us_per_connection", "client"), False,
        "{:,.1f}"),
    Row("CPU per connection, service (µs)",
        lambda s, r: _get(s, "connections", "cpu_us_per_connection", "service"), False,
        "{:,.1f}"),
)  # fmt: skip


def _pair_quotients(
    systems: Mapping[str, Result],
    pairs: Collection[tuple[str, str]],
    rows: tuple[Row, ...],
    result: Result,
) -> dict[str, dict[str, float | None]]:
    found: dict[str, dict[str, float | None]] = {}
    for top, bottom in pairs:
        if top not in systems or bottom not in systems:
            continue
        quotients = {}
        for row in rows:
            q = _quotient(row.value(systems[top], result), row.value(systems[bottom], result))
            quotients[row.label] = None if q is None else round(q, 3)
        found[f"{top}/{bottom}"] = quotients
    return found


def tcp_ratios(result: Result) -> dict[str, dict[str, float | None]]:
    """The TCP rows as ratios between the systems of this run, for the JSON."""
    return _pair_quotients(_get(result, "tcp", "systems") or {}, TCP_RATIOS, TCP_ROWS, result)


def tcp_table(result: Result) -> str:
    systems = _get(result, "tcp", "systems") or {}
    shown = [name for name in TCP_NAMES if name in systems]
    pairs = [(a, b) for a, b in TCP_RATIOS if a in shown and b in shown]
    head = ["metric", *(TCP_NAMES[n] for n in shown), *(f"{a} / {b}" for a, b in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in TCP_ROWS:
        values = {n: row.value(systems[n], result) for n in shown}
        cells = [row.label, *(_cell(row, values[n]) for n in shown)]
        cells += [_ratio(values[a], values[b]) for a, b in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tcp_section(result: Result) -> list[str]:
    tcp = result.get("tcp")
    if not isinstance(tcp, Mapping):
        return []
    config = tcp.get("config") or {}
    size = (config.get("transfer_bytes") or 0) / 2**20
    out = [
        "## TCP tunnels (issue 9)",
        "",
        "- the local service: a uvloop TCP source in its own process (`bench/tcpsource.py`): "
        "a byte count and a newline in, that many random bytes out, then it closes",
        "- direct: the client connects to the service; socat: `socat TCP-LISTEN:P,fork,"
        "reuseaddr TCP:127.0.0.1:SERVICE` (one process forked per connection); tunnelgate: "
        "`tunnelgate server --tcp-ports P-P` and `tunnelgate tcp SERVICE --remote-port P` "
        "(tunnel ws:// on loopback)",
        f"- transfer: one {size:,.0f} MiB download over one connection; connections: "
        f"{config.get('workers')} threads of this process each connecting, sending a request "
        f"line, reading {config.get('exchange_bytes')} bytes and the service's close, for "
        f"{config.get('duration_s')} s per system per round (latency = one whole exchange)",
        f"- the three systems run side by side and are measured in turn, {config.get('rounds')} "
        "rounds (the order rotated each round), the median shown; CPU over all rounds, "
        "socat's forked children included",
        "- direct's connection rate is the Python connector's own ceiling, not the service's: "
        "tunnelgate / direct understates the tunnel's cost per connection on that row",
        "",
        tcp_table(result),
        "",
    ]  # fmt: skip
    out += [f"- {TCP_NAMES.get(n, n)}: not measured: {why}"
            for n, why in (tcp.get("not_measured") or {}).items()]  # fmt: skip
    return out


# --- metrics on/off (issue 10) -----------------------------------------------------
MIN_ROUNDS: Final = 3  # fewer rounds (the smoke run's one) give no verdict
COST_SCRAPES_TEXT: Final = "100 back-to-back scrapes of the idle gateway, after the load"


def _metrics_section(result: Result) -> list[str]:
    found = result.get("metrics")
    if not isinstance(found, Mapping):
        return []
    config = found.get("config") or {}
    off, on = found.get("off") or {}, found.get("on") or {}
    control = found.get("control") or {}
    within = found.get("within") or 0.03
    ratio, paired = found.get("on_over_off"), found.get("on_over_off_paired")
    scrapes = on.get("scrapes") or {}

    def cells(side: Mapping[str, Any]) -> str:
        rps = side.get("rps")
        runs = ", ".join(f"{x:,.0f}" for x in side.get("runs_rps") or ())
        p99, cpu = side.get("p99_ms"), side.get("gateway_cpu_us_per_request")
        return (f"{'n/a' if rps is None else f'{rps:,.0f}'} | {runs} | "
                f"{'n/a' if p99 is None else f'{p99:,.2f}'} | "
                f"{'n/a' if cpu is None else f'{cpu:,.1f}'} | {side.get('errors')}")  # fmt: skip

    rounds = found.get("round_ratios") or []
    spread = f", from {min(rounds):.3f} to {max(rounds):.3f}" if rounds else ""
    value = "n/a" if ratio is None else f"{ratio:.3f} (each round's ratio: median {paired}{spread})"
    aa = _quotient(control.get("rps"), off.get("rps"))
    # No verdict where the run cannot tell 3 % apart: too few rounds, rounds that spread wider
    # than twice the tolerance, or two identical pairs (control) further apart than it.
    noisy = len(rounds) < MIN_ROUNDS or (max(rounds) - min(rounds)) > 2 * within
    noisy = noisy or (aa is not None and abs(aa - 1) > within)
    met = None if ratio is None or noisy else ratio >= 1 - within
    if noisy and ratio is not None:
        value += f"; too noisy to tell {within:.0%} apart"
    cpu = _quotient(on.get("gateway_cpu_us_per_request"), off.get("gateway_cpu_us_per_request"))
    cpu_value = "n/a" if cpu is None else f"{cpu:.3f}"
    aa_rounds = found.get("control_round_ratios") or []
    aa_cpu = _quotient(
        control.get("gateway_cpu_us_per_request"), off.get("gateway_cpu_us_per_request")
    )
    cpu_noisy = len(rounds) < MIN_ROUNDS or (aa_cpu is not None and abs(aa_cpu - 1) > within)
    cpu_met = None if cpu is None or cpu_noisy else cpu <= 1 + within
    if cpu_noisy and cpu is not None:
        cpu_value += f"; too noisy to tell {within:.0%} apart"
    aa_value = (
        "n/a"
        if aa is None
        else (
            f"req/s {aa:.3f} (each round's: median {found.get('control_over_off_paired')}"
            + (f", from {min(aa_rounds):.3f} to {max(aa_rounds):.3f}" if aa_rounds else "")
            + ")"
            + ("" if aa_cpu is None else f"; gateway CPU per request {aa_cpu:.3f}")
        )
    )
    return [
        "## Metrics on/off (issue 10)",
        "",
        f"- tunnelgate, small GETs at {config.get('connections')} connections "
        f"({config.get('load_generator')}, {config.get('duration_s')} s each), "
        f"{'three' if control else 'two'} gateway+client pairs side by side: **off** "
        "without `--admin`; **on** with `--admin "
        f"127.0.0.1:PORT` and /metrics fetched every {config.get('scrape_interval_s')} s during "
        "the load",
        f"- {config.get('rounds')} rounds, each side in turn, the order rotated every round; "
        "the median of each side shown"
        + ("; **control** is a second *off* pair, measured like the others: how far two "
           "identical pairs drift apart here" if control else ""),
        f"- scrapes during the load: {scrapes.get('ok')} answered, {scrapes.get('failed')} "
        f"failed; the last was {scrapes.get('last_bytes'):,} bytes"
        if scrapes else "- no scrapes recorded",
        *([f"- one scrape costs the gateway {on['scrape_cpu_us']:,.0f} µs of CPU "
           f"({COST_SCRAPES_TEXT}); the scrapes during the load were "
           f"{on.get('scrape_share_of_gateway_cpu', 0):.3%} of the gateway's CPU meanwhile"]
          if on.get("scrape_cpu_us") is not None else []),
        "",
        "| admin API | req/s (median) | req/s, each round | p99 (ms, median) | "
        "gateway CPU per request (µs, median) | errors |",
        "|---|---|---|---|---|---|",
        f"| off | {cells(off)} |",
        f"| on, /metrics scraped | {cells(on)} |",
        *([f"| control: off again (A/A) | {cells(control)} |"] if control else []),
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
        f"| small GET req/s, metrics on / off | >= {1 - within:.2f} | {value} | {_mark(met)} |",
        f"| gateway CPU per small GET, metrics on / off (the machine's load moves it less; "
        f"on two busy cores req/s follows CPU per request) | <= {1 + within:.2f} | {cpu_value} "
        f"| {_mark(cpu_met)} |",
        *([f"| for reference, control / off: two identical pairs (A/A), the noise floor | "
           f"1.00 | {aa_value} | — |"] if control else []),
        "",
    ]  # fmt: skip


def targets(result: Result, scale: Result | None = None) -> list[Target]:
    rps = _quotient(_c50(result, "tunnelgate", "rps"), _c50(result, "direct", "rps"))
    p99 = _quotient(_c50(result, "tunnelgate", "p99_ms"), _c50(result, "direct", "p99_ms"))
    bulk = _get(result, "systems", "tunnelgate", "bulk_single", "mb_per_s")
    per_tunnel = _get(result, "idle_tunnels", "per_tunnel_kib")
    found = [
        Target("small GET req/s, c50, tunnelgate / direct", ">= 0.40",
               *_check(rps, lambda v: v >= 0.40, "{:.2f}")),
        Target("p99 latency c50, tunnelgate / direct", "<= 2.0",
               *_check(p99, lambda v: v <= 2.0, "{:.2f}")),
        Target("one 100 MiB download", ">= 600 MB/s",
               *_check(bulk, lambda v: v >= 600, "{:,.0f} MB/s")),
        Target("gateway RSS per idle tunnel (2,000 tunnels)", "<= 16 KiB",
               *_check(per_tunnel, lambda v: v <= 16, "{:.1f} KiB")),
        _scale_target(scale),
        _pagekite_target(result),
    ]  # fmt: skip
    return found


def _scale_target(scale: Result | None) -> Target:
    metric = "10,000 idle tunnels + 10,000 idle public connections"
    wanted = "all route; gateway RSS <= 400 MiB"
    if scale is None:
        return Target(metric, wanted, "not run (make bench-scale)", None)
    routed, tunnels = _get(scale, "tunnels", "routed"), _get(scale, "tunnels", "count")
    rss = _mib(_get(scale, "rss_kib", "with_connections"))
    held = _get(scale, "public", "still_open")
    value = f"{routed}/{tunnels} routed, {held} connections held, " + (
        "n/a" if rss is None else f"{rss:,.0f} MiB"
    )
    met = routed == tunnels and held == _get(scale, "public", "count")
    met = met and rss is not None and rss <= 400
    value += f" ({scale.get('date')}"
    value += "; errors: see scale.md)" if scale.get("errors") else ")"
    return Target(metric, wanted, value, met)


def _pagekite_target(result: Result) -> Target:
    systems = result.get("systems", {})
    if "pagekite" not in systems or "tunnelgate" not in systems:
        return Target("against PageKite", "ahead on every row", "not measured", None)
    behind = []
    compared = 0
    for row in ROWS:
        verdict = ahead(row, row.value(systems["tunnelgate"], result),
                        row.value(systems["pagekite"], result))  # fmt: skip
        if verdict is not None:
            compared += 1
            if not verdict:
                behind.append(row.label)
    value = f"ahead on {compared - len(behind)}/{compared} rows"
    if behind:
        value += "; behind on: " + ", ".join(behind)
    return Target("against PageKite", "ahead on every row", value, not behind and compared > 0)


# --- the report ------------------------------------------------------------------
def _mark(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[met]


def _notes(result: Result) -> list[str]:
    notes = [f"error: {e}" for e in result.get("errors", [])]
    named = [(display_name(result, n), s) for n, s in result.get("systems", {}).items()]
    https = _get(result, "https", "systems") or {}
    named += [(f"{HTTPS_NAMES.get(n, n)} (HTTPS)", s) for n, s in https.items()]
    for shown, system in named:
        notes += [f"{shown}: skipped {step}" for step in system.get("skipped", [])]
        notes += [f"{shown}: {what}" for what in system.get("incidents", [])]
        for entry in system.get("sweep", []):
            if entry.get("errors"):
                notes.append(
                    f"{shown} c{entry['connections']}: {entry['errors']:,} "
                    f"socket errors or non-2xx answers in {entry['requests']:,} requests"
                )
        for key in ("bulk_single", "bulk_parallel"):
            bulk = system.get(key) or {}
            if bulk.get("truncated"):
                notes.append(
                    f"{shown} {key}: cut off by the time limit after "
                    f"{bulk['bytes'] / 2**20:,.1f} MiB in {bulk['seconds']:.1f} s"
                )
            if bulk.get("errors"):
                notes.append(f"{shown} {key}: {bulk['errors']} downloads failed")
    return notes


def _twohop_line(result: Result) -> str:
    if _get(result, "config", "twohop") == "python":
        return "two-hop: two Python TCP relays (the smoke run has no nginx), each its own process"
    return (
        "nginx two-hop: wrk -> nginx proxy -> nginx proxy -> origin, one worker each, "
        "upstream keep-alive, no buffering, no access log (the C floor of a two-relay path); "
        "front hop in the gateway's rows, back hop in the client's"
    )


def _phases(result: Result) -> tuple[str, ...]:
    """The phases the run was asked for (a run before --only existed: all of them)."""
    return tuple(_get(result, "config", "phases") or PHASES)


def _http_section(result: Result, scale: Result | None) -> list[str]:
    out = [
        table(result),
        "",
        "## Targets (issue 3)",
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
    ]
    out += [f"| {t.metric} | {t.wanted} | {t.value} | {_mark(t.met)} |"
            for t in targets(result, scale)]  # fmt: skip
    chart = result.get("chart", "latest.png")
    if chart.endswith(".png"):
        out += ["", f"![req/s and p99 latency against concurrency]({chart})", ""]
    else:
        out += ["", f"(chart {chart})", ""]
    return out


def markdown(result: Result, scale: Result | None = None) -> str:
    m, sw = result.get("machine", {}), result.get("software", {})
    commit = sw.get("commit") or "?"
    if sw.get("src_modified"):
        commit += " (with uncommitted changes in src/)"
    config = result.get("config", {})
    out = [
        f"# tunnelgate benchmark ({result.get('kind', 'bench')})",
        "",
        f"- date: {result.get('date')}, run took {result.get('duration_s')} s",
        f"- machine: {m.get('nproc')} CPUs, {m.get('cpu_model')}, Linux {m.get('kernel')}, "
        f"Python {m.get('python')}, load average {m.get('loadavg_1m')} at the start",
        f"- tunnelgate {commit}; origin {config.get('origin')}, load "
        f"{config.get('load_generator')}; nginx {sw.get('nginx')}, wrk {sw.get('wrk')}, "
        f"PageKite {sw.get('pagekite')}",
        "- everything on 127.0.0.1; small GET = 13-byte body; CPU from /proc "
        "(utime+stime) over the 50-connection run, divided by its requests",
        f"- {_twohop_line(result)}",
        "- ratios: the first system's value over the second's, both from this run",
        "",
    ]
    if "http" in _phases(result):
        out += _http_section(result, scale)
    else:
        out += [f"Only these phases were run: {', '.join(_phases(result))} "
                "(`python -m bench.run --only ...`).", ""]  # fmt: skip
    out += _https_section(result)
    out += _tcp_section(result)
    out += _metrics_section(result)
    out += _cluster_section(result)
    out += workers_report.section(result)
    notes = _notes(result)
    if notes:
        out += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(out)


# --- cross-node (issue 12) -----------------------------------------------------------
def _cluster_section(result: Result) -> list[str]:
    found = result.get("cluster")
    if not isinstance(found, Mapping):
        return []
    config = found.get("config") or {}
    same, cross = found.get("same-node") or {}, found.get("cross-node") or {}

    def row(name: str, side: Mapping[str, Any]) -> str:
        rps, bulk = side.get("rps"), side.get("bulk") or {}
        runs = ", ".join(f"{x:,.0f}" for x in side.get("runs_rps") or ())
        cpu = side.get("cpu_us_per_request") or {}
        gateways = [cpu.get(role) for role in ("gateway", "gateway2")]
        spent = "n/a" if None in gateways else f"{sum(gateways):,.1f}"  # type: ignore[arg-type]
        mbps = bulk.get("mb_per_s")
        return (f"| {name} | {'n/a' if rps is None else f'{rps:,.0f}'} | {runs} | "
                f"{side.get('p99_ms')} | {spent} | {'n/a' if mbps is None else f'{mbps:,.1f}'} | "
                f"{side.get('errors')} |")  # fmt: skip

    rounds = found.get("rps_round_ratios") or []
    spread = f", from {min(rounds):.3f} to {max(rounds):.3f}" if rounds else ""
    big = config.get("big_bytes") or 0
    return [
        "## Cross-node (issue 12)",
        "",
        "- two gateways sharing one redis-server, the tunnel's client on the first: "
        "**same-node** sends the load to that gateway, **cross-node** to the second, which "
        "relays each connection over the cluster link (docs/cluster.md, Forwarding)",
        f"- small GETs at {config.get('connections')} connections ({config.get('load_generator')}, "
        f"{config.get('duration')} s each), {config.get('rounds')} rounds, in turn; then "
        f"{config.get('bulk_rounds')} downloads of {big / 2**20:,.0f} MiB through each, in turn",
        "",
        "| through | req/s (median) | req/s, each round | p99 (ms, median) | "
        "both gateways' CPU per request (µs) | download MB/s | errors |",
        "|---|---|---|---|---|---|---|",
        row("same node", same),
        row("a second node", cross),
        "",
        f"- req/s cross / same: {found.get('rps_cross_over_same')} (medians; each round's: "
        f"median {found.get('rps_cross_over_same_paired')}{spread})",
        f"- download MB/s cross / same: {found.get('bulk_cross_over_same')}",
        "",
    ]


# --- form ------------------------------------------------------------------------
POINT_KEYS: Final = ("connections", "requests", "rps", "p50_ms", "p99_ms", "errors",
                     "cpu_us_per_request")  # fmt: skip
BULK_KEYS: Final = ("parallel", "bytes", "seconds", "mb_per_s", "truncated", "errors")
SYSTEM_KEYS: Final = ("sweep", "bulk_single", "bulk_parallel", "integrity", "rss_kib",
                      "restarts", "route_failures", "skipped")  # fmt: skip


def validate(result: Result) -> list[str]:
    """What is missing or wrong in a result; empty when it is complete and well formed."""
    problems = [f"missing {k}" for k in ("schema", "date", "machine", "config", "systems")
                if k not in result]  # fmt: skip
    problems += [f"missing machine.{k}" for k in ("nproc", "cpu_model", "kernel")
                 if _get(result, "machine", k) is None]  # fmt: skip
    asked = _get(result, "config", "systems") or ()
    required = REQUIRED_SYSTEMS if "http" in _phases(result) else ()
    for name in dict.fromkeys([*required, *asked]):
        if name not in result.get("systems", {}):
            problems.append(f"no results for {name}")
    for name, system in result.get("systems", {}).items():
        problems += [f"{name}: {p}" for p in _validate_system(system, result)]
    problems += _validate_https(result)
    problems += _validate_tcp(result)
    problems += _validate_metrics(result)
    if "workers" in _phases(result):
        problems += workers_report.validate(result)
    if "tunnelgate" in result.get("systems", {}):
        tunnels = result.get("idle_tunnels") or {}
        if not isinstance(tunnels.get("per_tunnel_kib"), int | float):
            problems.append("no idle-tunnel memory")
        elif tunnels.get("sample_routed") != tunnels.get("sample_size"):
            problems.append("idle tunnels did not all route")
    return problems


def _validate_system(system: Result, result: Result) -> list[str]:
    problems = [f"missing {k}" for k in SYSTEM_KEYS if k not in system]
    wanted = set(_get(result, "config", "sweep") or ())
    seen = {entry.get("connections") for entry in system.get("sweep") or ()}
    if wanted - seen:
        problems.append(f"no sweep point for {sorted(wanted - seen)} connections")
    for entry in system.get("sweep") or ():
        problems += [f"sweep point lacks {k}" for k in POINT_KEYS if entry.get(k) is None]
    for key in ("bulk_single", "bulk_parallel"):
        bulk = system.get(key)
        if not isinstance(bulk, Mapping):
            problems.append(f"no {key}")
        else:
            problems += [f"{key} lacks {k}" for k in BULK_KEYS if bulk.get(k) is None]
    if _get(system, "integrity", "ok") is not True:
        problems.append("integrity check failed or missing")
    return problems


def _validate_tcp(result: Result) -> list[str]:
    if "tcp" not in _phases(result):
        return []
    systems = _get(result, "tcp", "systems")
    if not isinstance(systems, Mapping):
        return ["no TCP results"]
    problems = []
    for name in ("direct", "tunnelgate"):
        system = systems.get(name)
        if not isinstance(system, Mapping):
            problems.append(f"no TCP results for {name}")
            continue
        if not _get(system, "transfer", "mb_per_s"):
            problems.append(f"TCP {name}: no transfer")
        elif _get(system, "transfer", "truncated"):
            problems.append(f"TCP {name}: a transfer was cut short")
        if not _get(system, "connections", "per_s"):
            problems.append(f"TCP {name}: no connections")
        if _get(system, "connections", "errors"):
            problems.append(f"TCP {name}: connections failed")
    return problems


def _validate_metrics(result: Result) -> list[str]:
    if "metrics" not in _phases(result):
        return []
    found = result.get("metrics")
    if not isinstance(found, Mapping) or found.get("on_over_off") is None:
        return ["no metrics on/off result"]
    if not _get(found, "on", "scrapes", "ok"):
        return ["metrics on: /metrics was never scraped"]
    return []


def _validate_https(result: Result) -> list[str]:
    asked = _get(result, "config", "https_systems") or ()
    if not asked:
        return []
    systems = _get(result, "https", "systems")
    if not isinstance(systems, Mapping):
        return ["no HTTPS results"]
    problems = []
    for name in asked:
        system = systems.get(name)
        if not isinstance(system, Mapping):
            problems.append(f"no HTTPS results for {name}")
            continue
        found = []
        entry = point(system, 50)
        if entry is None:
            found.append("no sweep point for 50 connections")
        else:
            found += [f"sweep point lacks {k}" for k in POINT_KEYS if entry.get(k) is None]
        bulk = system.get("bulk_single")
        if not isinstance(bulk, Mapping):
            found.append("no bulk_single")
        else:
            found += [f"bulk_single lacks {k}" for k in BULK_KEYS if bulk.get(k) is None]
        if _get(system, "integrity", "ok") is not True:
            found.append("integrity check failed or missing")
        if not _get(system, "tls", "version"):
            found.append("no negotiated TLS version")
        problems += [f"{name} (HTTPS): {p}" for p in found]
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).parent / "results" / "latest.json"
    result = load(path)
    if result is None:
        print(f"cannot read {path}", file=sys.stderr)
        return 1
    from .chart import render

    path.with_suffix(".md").write_text(markdown(result, load(path.with_name("scale.json"))))
    if result.get("systems"):  # a run of --only phases without plain HTTP has no chart
        render(result, path.with_suffix(".png"))
    print(path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
