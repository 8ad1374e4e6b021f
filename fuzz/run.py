"""`make fuzz`: each target in turn, bounded, from its committed corpus; a crash fails.

    python fuzz/run.py [--seconds S] [--runs N] [--merge] [target ...]

Each target is `fuzz/fuzz_<target>.py`, a libFuzzer binary in all but name. It runs until
S seconds or N inputs, whichever comes first, reading fuzz/corpus/<target> and writing the
inputs that found new coverage to .fuzz/corpus/<target> (the committed corpus is only read)
and any crash to .fuzz/crashes/. The table printed at the end (runs, seconds, coverage
edges and features, crashes) is what docs/reliability.md records. --merge folds the new
inputs into the committed corpus, keeping only those that add coverage (libFuzzer -merge=1).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / ".fuzz"
TARGETS = (
    "frames", "control", "mux", "http_request", "http_response", "hosts", "clienthello", "link",
)  # fmt: skip
# libFuzzer's status lines: "#1234 DONE cov: 567 ft: 890 corp: ..." (the last one counts).
_STATUS = re.compile(rb"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", re.MULTILINE)


@dataclass
class Result:
    target: str
    runs: int
    seconds: float
    edges: int
    features: int
    crashed: bool

    def row(self) -> str:
        crashes = "1 (see .fuzz/crashes/)" if self.crashed else "0"
        return (
            f"| {self.target} | {self.runs:,} | {self.seconds:.0f} | {self.edges} "
            f"| {self.features} | {crashes} |"
        )


def run(target: str, seconds: int, runs: int) -> Result:
    corpus = HERE / "corpus" / target
    found = WORK / "corpus" / target
    crashes = WORK / "crashes"
    found.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        f"-max_total_time={seconds}",
        f"-runs={runs}",
        f"-artifact_prefix={crashes}/{target}-",
        "-print_final_stats=1",
        "-rss_limit_mb=2048",
        "-timeout=10",  # seconds for one input: a slow path is a finding too
        str(found),
        str(corpus),
    ]
    words = HERE / f"{target}.dict"  # tokens for the mutator: JSON keys, header names
    if words.exists():
        command.insert(2, f"-dict={words}")
    print(f"== {target}: up to {seconds} s or {runs:,} runs", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, check=False)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    (WORK / f"{target}.log").write_bytes(output)
    statuses = _STATUS.findall(output)
    executed, edges, features = (int(x) for x in statuses[-1]) if statuses else (0, 0, 0)
    if done.returncode != 0:
        sys.stdout.write(output[-4000:].decode(errors="replace"))
    return Result(target, executed, elapsed, edges, features, done.returncode != 0)


def merge(target: str) -> None:
    """Fold the inputs that found new coverage into the committed corpus.

    libFuzzer runs the merge's inner passes as `argv[0] ...` through the shell: the target
    is run as an executable script, its `#!/usr/bin/env python3` finding this interpreter
    first on PATH."""
    command = [
        str(HERE / f"fuzz_{target}.py"),
        "-merge=1",
        str(HERE / "corpus" / target),
        str(WORK / "corpus" / target),
    ]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    subprocess.run(command, capture_output=True, check=True, env={**os.environ, "PATH": path})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--runs", type=int, default=1_000_000, help="per target")
    parser.add_argument("--merge", action="store_true", help="grow the committed corpus")
    parser.add_argument("targets", nargs="*", help=f"of {', '.join(TARGETS)} (default: all)")
    args = parser.parse_args()
    targets = args.targets or TARGETS
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    results = [run(target, args.seconds, args.runs) for target in targets]
    if args.merge:
        for target in targets:
            merge(target)
    print("\n| target | runs | seconds | coverage edges | features | crashes |")
    print("|---|---:|---:|---:|---:|---|")
    for result in results:
        print(result.row())
    return 1 if any(r.crashed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
