"""slowhttptest against the gateway: slow headers, slow body, slow read (issue 11).

    python -m bench.slowhttp [--connections 1000] [--rate 200] [--length 60] [--modes H,B,X]

Starts the test app (``tunnelgate.testing.local_app``), a gateway with its defaults
(``--log-format json`` only) and a client (``tunnelgate http APP --subdomain app``), then runs
slowhttptest once per mode against ``http://app.localhost:PORT/...``. The name does not
resolve through glibc and slowhttptest has no option to set the Host header (it sends the
URL's host, and resolves it even with ``-d PROXY``), so slowhttptest runs in its own mount
namespace (``unshare -m``, as root) where /etc/hosts is bind-mounted over by a file saying
``127.0.0.1 app.localhost``: it connects to 127.0.0.1:PORT and sends ``Host:
app.localhost:PORT``, and the machine's /etc/hosts is left as it is.

While a mode runs, a probe sends one GET / every 0.5 s through the same tunnel on a fresh
connection from 127.0.0.2 (another client: slowhttptest's connections all come from
127.0.0.1 and count against its per-address cap), and the gateway's RSS and open descriptors
are read from /proc. Every step is bounded: slowhttptest's own ``-l``, then at most
``SETTLE`` s for the gateway to let go of what it held, and a hard deadline over the whole.
Results: ``bench/results/slowhttp.{md,json}`` and slowhttptest's CSV/HTML beside them.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import http.client
import json
import re
import shlex
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

from .measure import run_bounded, say
from .origin import start_python_origin
from .procs import BenchError, Processes, open_fds, raise_on_signals, rss_kib, wait_until
from .run import RESULTS, WORKDIR, machine
from .systems import start_client, start_gateway

SUBDOMAIN: Final = "app"
PROBE_SOURCE: Final = "127.0.0.2"
PROBE_INTERVAL: Final = 0.5  # seconds between probe requests
PROBE_TIMEOUT: Final = 5.0  # a probe request slower than this counts as failed
SAMPLE_INTERVAL: Final = 0.5  # seconds between /proc samples of the gateway
SETTLE: Final = 75.0  # at most this long after slowhttptest for the gateway's fds to fall back
TRIM_WAIT: Final = 20.0  # seconds after that before the end sample (limits.TRIM_INTERVAL 15 s)
SLOW_READ_SIZE: Final = 1 << 20  # bytes of the response slow-read clients ask for
STATUS_KEYS: Final = {
    "initializing",
    "pending",
    "connected",
    "error",
    "closed",
    "service available",
}
MODES: Final = {
    "H": ("slow headers", "/", ()),
    "B": ("slow body", "/upload", ("-s", "8192")),
    "X": ("slow read", f"/bytes?n={SLOW_READ_SIZE}&seed=1", ("-k", "3", "-n", "1", "-z", "32")),
}


def slowhttptest_argv(mode: str, port: int, args: argparse.Namespace, prefix: Path) -> list[str]:
    _, path, extra = MODES[mode]
    return [
        "slowhttptest", f"-{mode}", "-c", str(args.connections), "-r", str(args.rate),
        "-l", str(args.length), "-i", "10", *extra, "-p", "5",
        "-g", "-o", str(prefix), "-u", f"http://{SUBDOMAIN}.localhost:{port}{path}",
    ]  # fmt: skip


def with_hosts(argv: list[str], hosts: Path) -> list[str]:
    """`argv` in a private mount namespace whose /etc/hosts is `hosts` (exec: same PID)."""
    command = " ".join(shlex.quote(a) for a in argv)
    script = f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec {command}"
    return ["unshare", "-m", "sh", "-c", script]


class Probe(threading.Thread):
    """GET / through the tunnel every PROBE_INTERVAL s until stopped: status and latency."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.results: list[tuple[float, str, float]] = []  # (t, outcome, seconds)
        self.stopping = threading.Event()

    def once(self) -> tuple[str, float]:
        """ "200", "503 tunnel_busy" (the X-Tunnelgate-Error code), or "error" (no answer)."""
        started = time.monotonic()
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=PROBE_TIMEOUT, source_address=(PROBE_SOURCE, 0)
        )
        try:
            conn.request("GET", "/", headers={"Host": f"{SUBDOMAIN}.localhost:{self.port}"})
            response = conn.getresponse()
            response.read()
            code = response.getheader("X-Tunnelgate-Error")
            outcome = f"{response.status} {code}" if code else str(response.status)
            return outcome, time.monotonic() - started
        except (OSError, http.client.HTTPException):
            return "error", time.monotonic() - started
        finally:
            conn.close()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stopping.is_set():
            status, seconds = self.once()
            self.results.append((round(time.monotonic() - t0, 2), status, seconds))
            self.stopping.wait(max(0.0, PROBE_INTERVAL - seconds))

    def summary(self) -> dict[str, Any]:
        ok = [s for _, status, s in self.results if status == "200"]
        failed = [(t, status, s) for t, status, s in self.results if status != "200"]
        return {
            "sent": len(self.results),
            "ok": len(ok),
            "p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
            "max_ms": round(max(ok) * 1000, 1) if ok else None,
            "first_failure_s": failed[0][0] if failed else None,
            "last_failure_s": failed[-1][0] if failed else None,
            "failures": dict(Counter(status for _, status, _ in failed)),
            # (s into the run, outcome, s it took): a timeout takes PROBE_TIMEOUT, a refusal none
            "failed": [(t, status, round(s, 2)) for t, status, s in failed][:20],
        }


class Sampler(threading.Thread):
    """The gateway's RSS (KiB) and open descriptors every SAMPLE_INTERVAL s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.samples.append((rss_kib(self.pid), open_fds(self.pid)))
            except OSError:
                return
            self.stopping.wait(SAMPLE_INTERVAL)


def read_csv(path: Path) -> dict[str, Any]:
    """slowhttptest's CSV: seconds, closed, pending, connected, service available."""
    rows: list[list[str]] = []
    with path.open() as f:
        rows = [row for row in csv.reader(f) if row]
    header, data = [name.strip().lower() for name in rows[0]], rows[1:]
    table = [dict(zip(header, row, strict=False)) for row in data]

    def column(name: str) -> list[int]:
        return [int(row.get(name, "0") or 0) for row in table]

    available = column("service available")
    return {
        "columns": header,
        "seconds": len(table),
        "peak_connected": max(column("connected"), default=0),
        "peak_pending": max(column("pending"), default=0),
        "final_closed": column("closed")[-1] if table else 0,
        "final_connected": column("connected")[-1] if table else 0,
        "available_seconds": sum(1 for a in available if a > 0),  # the CSV plots it as 0 or c
    }


def run_mode(mode: str, port: int, gateway_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    name = MODES[mode][0]
    prefix = RESULTS / f"slowhttp-{mode}"
    argv = slowhttptest_argv(mode, port, args, prefix)
    say(f"{name}: {' '.join(argv)}")
    sampler, probe = Sampler(gateway_pid), Probe(port)
    start = (rss_kib(gateway_pid), open_fds(gateway_pid))
    sampler.start()
    probe.start()
    out = WORKDIR / f"slowhttptest-{mode}.out"
    with Processes(WORKDIR) as procs:
        hosts = WORKDIR / "slowhttp-hosts"
        hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {SUBDOMAIN}.localhost\n")
        proc = procs.start(f"slowhttptest-{mode}", with_hosts(argv, hosts))
        try:
            proc.popen.wait(args.length + 60)
        except Exception as exc:
            raise BenchError(f"slowhttptest {mode} overran: {exc}") from exc
        shutil.copyfile(proc.log_path, out)
        summary_text = proc.log_text()
    probe.stopping.set()
    probe.join()
    # what the gateway still holds once the clients are gone, within SETTLE s
    settle_started = time.monotonic()
    try:
        wait_until("the gateway's fds to fall back", lambda: open_fds(gateway_pid) <= start[1] + 5,
                   SETTLE)  # fmt: skip
    except BenchError:
        pass
    settle = round(time.monotonic() - settle_started, 1)
    fds_back = (rss_kib(gateway_pid), open_fds(gateway_pid))
    time.sleep(TRIM_WAIT)  # the heap is trimmed every 15 s once nothing is held
    sampler.stopping.set()
    sampler.join()
    end = (rss_kib(gateway_pid), open_fds(gateway_pid))
    samples = sampler.samples or [start]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", summary_text)
    status: dict[str, str] = {}
    for line in plain.splitlines():  # the last status block slowhttptest printed
        key, sep, value = line.partition(":")
        if sep and key.strip() in STATUS_KEYS and value.strip():
            status[key.strip()] = value.strip()
        elif line.startswith("Exit status:"):
            status["exit status"] = line.partition(":")[2].strip()
    return {
        "mode": mode,
        "name": name,
        "command": " ".join(argv),
        "slowhttptest": read_csv(prefix.with_suffix(".csv")),
        "slowhttptest_status": status,
        "probe": probe.summary(),
        "gateway": {
            "rss_kib": {
                "start": start[0],
                "peak": max(s[0] for s in samples),
                "fds_back": fds_back[0],
                "end": end[0],
            },
            "fds": {"start": start[1], "peak": max(s[1] for s in samples), "end": end[1]},
            "settle_s": settle,
            "trim_wait_s": TRIM_WAIT,
        },
    }


def body(args: argparse.Namespace, result: dict[str, Any]) -> None:
    with Processes(WORKDIR) as procs:
        origin = start_python_origin(procs, SLOW_READ_SIZE)
        gateway, port = start_gateway(procs, extra=("--log-format", "json"))
        start_client(procs, port, origin.port, SUBDOMAIN)
        result["gateway_port"] = port
        for mode in args.modes.split(","):
            result["modes"].append(run_mode(mode, port, gateway.pid, args))
            if not gateway.alive:
                raise BenchError(f"the gateway exited:\n{gateway.log_tail()}")
        events: dict[str, int] = {}
        for event in gateway.events():
            key = str(event.get("event"))
            if key in {"connection_timed_out", "connection_refused", "request"}:
                key = f"{key}:{event.get('reason', event.get('status', ''))}"
            events[key] = events.get(key, 0) + 1
        result["gateway_events"] = events


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# slowhttptest ({result['date']})",
        "",
        "| mode | peak connected | closed at the end | service available (s of s) "
        "| last status (connected / closed / error / available) | probe ok | probe p50 / max "
        "| gateway RSS start / peak / end | fds start / peak / end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in result["modes"]:
        s, p, g, st = m["slowhttptest"], m["probe"], m["gateway"], m["slowhttptest_status"]
        rss, fds = g["rss_kib"], g["fds"]
        lines.append(
            f"| {m['name']} | {s['peak_connected']} | {s['final_closed']} "
            f"| {s['available_seconds']} of {s['seconds']} "
            f"| {st.get('connected')} / {st.get('closed')} / {st.get('error')} "
            f"/ {st.get('service available')} | {p['ok']}/{p['sent']} {p['failures'] or ''} "
            f"| {p['p50_ms']} / {p['max_ms']} ms "
            f"| {rss['start'] // 1024} / {rss['peak'] // 1024} / {rss['end'] // 1024} MiB "
            f"({rss['fds_back'] // 1024} before the trim wait) "
            f"| {fds['start']} / {fds['peak']} / {fds['end']} |"
        )
    lines += ["", "Commands:", ""]
    lines += [f"    {m['command']}" for m in result["modes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--modes", default="H,B,X")
    args = parser.parse_args(argv)
    if shutil.which("slowhttptest") is None:
        print("slowhttptest is missing: python3 -m bench.bootstrap", file=sys.stderr)
        return 2
    raise_on_signals()
    RESULTS.mkdir(parents=True, exist_ok=True)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "args": vars(args),
        "modes": [],
        "errors": [],
    }
    budget = len(args.modes.split(",")) * (args.length + 60 + SETTLE + TRIM_WAIT) + 60
    if not run_bounded(budget, lambda r: body(args, r), result):
        return 130
    (RESULTS / "slowhttp.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "slowhttp.md").write_text(markdown(result))
    print(markdown(result))
    for error in result["errors"]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
