"""Install the Debian packages a run needs, if any is missing: `bench` (nginx, wrk,
pagekite, socat: the plain TCP relay of the TCP rows, slowhttptest for
``python -m bench.slowhttp``, redis-server for the workers row) for the benchmark, `tests`
(pebble, the ACME test CA; nftables and iproute2 for the blackhole test; redis-server for
the cluster tests) for `make test`,
`tls-scan` (testssl.sh) for `make tls-scan`.

    python3 -m bench.bootstrap [bench|tests|tls-scan]       (default: bench)

Run by ``make bench`` and ``make bench-scale`` before the benchmark, and by ``make test``
before the tests (standard library only: it runs before the virtual environment exists
for some targets). When everything is there it does nothing; otherwise ``apt-get update``
once and ``apt-get install`` of what is missing, as root or through sudo. ``RUNLEVEL=1``
asks Debian's invoke-rc.d not to start the packages' services (nginx on port 80,
pagekite.service): the benchmark and the tests run their own copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

# Each set: command -> the package that brings it.
SETS: Final[Mapping[str, Mapping[str, str]]] = {
    "bench": {
        "nginx": "nginx",
        "wrk": "wrk",
        "pagekite": "pagekite",
        "socat": "socat",
        "slowhttptest": "slowhttptest",
        "redis-server": "redis-server",  # the --workers 2 row's shared namespace
    },
    # nft and ip: tests/e2e/test_blackhole.py drops a tunnel's packets in a network namespace.
    "tests": {
        "pebble": "pebble",
        "pebble-challtestsrv": "pebble",
        "nft": "nftables",
        "ip": "iproute2",
        # redis-server: the cluster tests' shared registry (testing/redis_server.py).
        "redis-server": "redis-server",
    },
    "tls-scan": {"testssl": "testssl.sh"},
}
APT_TIMEOUT: Final = 300.0  # seconds for each apt-get call


def installed(command: str) -> bool:
    # /usr/sbin may be missing from a non-root PATH, and nginx lives there.
    return shutil.which(command) is not None or Path("/usr/sbin", command).exists()


def missing(packages: Mapping[str, str]) -> list[str]:
    wanted = {package for command, package in packages.items() if not installed(command)}
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "bench"
    if name not in SETS or len(args) > 1:
        print(f"usage: python3 -m bench.bootstrap [{'|'.join(SETS)}]", file=sys.stderr)
        return 2
    packages = SETS[name]
    wanted = missing(packages)
    if not wanted:
        print(f"{name}: {', '.join(sorted(set(packages.values())))} installed")
        return 0
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "--preserve-env=DEBIAN_FRONTEND,RUNLEVEL"]
    else:
        print(f"{name}: please install {' '.join(wanted)} (apt-get, as root)", file=sys.stderr)
        return 1
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    print(f"{name}: installing {' '.join(wanted)} with apt-get")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *wanted]):
        done = subprocess.run([*prefix, *command], env=env, timeout=APT_TIMEOUT, check=False)
        if done.returncode != 0:
            print(f"{name}: {' '.join(command)} failed ({done.returncode})", file=sys.stderr)
            return 1
    still = missing(packages)
    if still:
        print(f"{name}: still missing after apt-get: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
