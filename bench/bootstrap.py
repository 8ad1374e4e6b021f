"""Install the Debian packages the benchmark needs, if any is missing.

    python -m bench.bootstrap              # nginx, wrk, pagekite (make bench, bench-scale)
    python -m bench.bootstrap tls-scan     # testssl.sh (make tls-scan)

When everything is there it does nothing; otherwise ``apt-get update`` once and
``apt-get install`` of what is missing, as root or through sudo. ``RUNLEVEL=1`` asks Debian's
invoke-rc.d not to start the packages' services (nginx on port 80, pagekite.service): the
benchmark runs its own copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

# What each make target needs, as command: Debian package.
GROUPS: Final = {
    "bench": {"nginx": "nginx", "wrk": "wrk", "pagekite": "pagekite"},
    "tls-scan": {"testssl": "testssl.sh"},
}
APT_TIMEOUT: Final = 300.0  # seconds for each apt-get call


def installed(command: str) -> bool:
    # /usr/sbin may be missing from a non-root PATH, and nginx lives there.
    return shutil.which(command) is not None or Path("/usr/sbin", command).exists()


def missing(packages: dict[str, str]) -> list[str]:
    return [package for command, package in packages.items() if not installed(command)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    group = args[0] if args else "bench"
    if group not in GROUPS:
        print(f"bench: unknown group {group!r} (one of {', '.join(GROUPS)})", file=sys.stderr)
        return 2
    packages = GROUPS[group]
    wanted = missing(packages)
    if not wanted:
        print(f"bench: {', '.join(packages.values())} installed")
        return 0
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "--preserve-env=DEBIAN_FRONTEND,RUNLEVEL"]
    else:
        print(f"bench: please install {' '.join(wanted)} (apt-get, as root)", file=sys.stderr)
        return 1
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    print(f"bench: installing {' '.join(wanted)} with apt-get")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *wanted]):
        done = subprocess.run([*prefix, *argv], env=env, timeout=APT_TIMEOUT, check=False)
        if done.returncode != 0:
            print(f"bench: {' '.join(argv)} failed ({done.returncode})", file=sys.stderr)
            return 1
    still = missing(packages)
    if still:
        print(f"bench: still missing after apt-get: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
