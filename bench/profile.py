"""Where tunnelgate's time goes: py-spy on the gateway and the client under load.

    .venv/bin/pip install py-spy     # an investigation tool, deliberately not a dependency
    python -m bench.profile [small|bulk] [--seconds S] [--native]

Starts nginx and tunnelgate as the benchmark does, puts load on them (wrk with 50 connections
for ``small``, back-to-back 100 MiB downloads for ``bulk``), samples both processes with
``py-spy record --format raw`` meanwhile, and prints the functions with the most samples, by
self time and inclusive time, with the CPU each process used per request or per MiB.
Raw stacks are kept in bench/.work/profile/ (feed them to a flame-graph tool).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Final

from .download import download
from .loadgen import Wrk
from .origin import start_nginx
from .procs import BenchError, Processes, cpu_meter, raise_on_signals
from .run import WORKDIR
from .systems import Tunnelgate

RATE: Final = 250  # samples per second
SHOWN: Final = 20  # functions listed per table
_FRAME = re.compile(r"(.*?) \((.*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    function, path = match.groups()
    return f"{function} ({path.split('site-packages/')[-1].split('src/')[-1]})"


def summarize(raw: Path) -> str:
    """Self and inclusive shares of the samples in a py-spy raw (collapsed stacks) file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        inclusive.update(dict.fromkeys(set(frames), int(count)))
    if not total:
        return f"{raw.name}: no samples"
    lines = [f"{raw.stem}: {total} samples", "  self:"]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(SHOWN)]
    lines += ["  inclusive:"]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(SHOWN)]
    return "\n".join(lines)


def _load(mode: str, system: Tunnelgate, path: str, seconds: float) -> tuple[float, str]:
    """Run the load; (units of work done, unit name)."""
    if mode == "small":
        result = Wrk().run(system.target, "/", 50, seconds)
        return result.requests, "request"
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        done += download(system.target, path, limit=max(1.0, deadline - time.monotonic())).bytes
    return done / 2**20, "MiB"


def profile(mode: str, seconds: float, native: bool) -> None:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        raise BenchError("py-spy is not installed: .venv/bin/pip install py-spy")
    workdir = WORKDIR / "profile"
    with Processes(workdir) as procs:
        origin = start_nginx(procs, WORKDIR)
        system = Tunnelgate(procs, origin)
        Wrk().run(system.target, "/", 10, 1)  # warm up
        outputs = {role: workdir / f"{mode}-{role}.txt" for role in ("gateway", "client")}
        pids = {"gateway": system.gateway.pid, "client": system.client.pid}
        for role, out in outputs.items():
            argv = [pyspy, "record", "-p", str(pids[role]), "-d", str(round(seconds)),
                    "-r", str(RATE), "--format", "raw", "-o", str(out),
                    "--nonblocking"]  # fmt: skip
            procs.start(f"py-spy-{role}", [*argv, "--native"] if native else argv)
        time.sleep(0.5)  # py-spy attaches
        with cpu_meter(pids) as used:
            work, unit = _load(mode, system, origin.big_path, seconds - 1)
        for proc in [p for p in procs.procs if p.name.startswith("py-spy")]:
            proc.popen.wait(seconds + 30)
        for role, out in outputs.items():
            per = used.get(role, 0.0) * 1e6 / max(work, 1)
            print(f"{role}: {used.get(role, 0.0):.2f} s CPU, {per:,.1f} µs per {unit}")
            print(summarize(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("mode", nargs="?", choices=("small", "bulk"), default="small")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--native", action="store_true", help="include C frames (uvloop, picows)")
    args = parser.parse_args(argv)
    raise_on_signals()
    try:
        profile(args.mode, args.seconds, args.native)
    except BenchError as exc:
        print(f"bench.profile: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
