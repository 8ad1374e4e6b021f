"""A throwaway network namespace for tests that break the network (nftables rules).

The processes under test run inside it by prefixing their command line with
:attr:`NetNamespace.prefix` (``ip netns exec NS``: the command is exec'd, so the PID is the
process's own and signals reach it). Inside, only loopback exists: every 127.x.y.z address
is local, so a test can reach the gateway at 127.0.0.1 for public traffic and at 127.0.0.2
for the tunnel, and break one without the other.

Creating a namespace needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), ``ip`` (iproute2) and, for
rules, ``nft`` (nftables). :func:`netns_problem` says what is missing; the namespace is deleted
on exit from the ``with`` block (its rules and sockets with it), whatever happened inside.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from types import TracebackType

__all__ = ["NO_NETNS_ENV", "NetNamespace", "NetnsError", "netns_problem"]

NO_NETNS_ENV = "TUNNELGATE_NO_NETNS"
"""Set to 1 to skip (not fail) the tests that need a network namespace, where none can be made."""
COMMAND_TIMEOUT = 10.0
"""Seconds one ``ip`` or ``nft`` command may take."""


class NetnsError(RuntimeError):
    """An ``ip`` or ``nft`` command failed; the message quotes its stderr."""


def netns_problem() -> str | None:
    """Why no namespace can be made here (None: it can be tried)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    for command, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(command) is None:
            return f"{command!r} not found (apt-get install {package})"
    return None


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class NetNamespace:
    """``with NetNamespace() as ns:`` a new namespace ``tg-<random>`` with ``lo`` up."""

    def __init__(self) -> None:
        self.name = f"tg-{secrets.token_hex(4)}"
        self.created = False

    def __repr__(self) -> str:
        return f"<NetNamespace {self.name} {'created' if self.created else 'not created'}>"

    @property
    def prefix(self) -> list[str]:
        """Put this in front of a command line to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def __enter__(self) -> NetNamespace:
        _run(["ip", "netns", "add", self.name])
        self.created = True
        try:
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.delete()

    def run(self, *argv: str, stdin: str | None = None) -> str:
        """Run a command inside the namespace; its stdout, or NetnsError."""
        return _run([*self.prefix, *argv], stdin)

    def nft(self, script: str) -> None:
        """Apply an nftables script (``nft -f -``) inside the namespace."""
        self.run("nft", "-f", "-", stdin=script)

    def delete(self) -> None:
        """Delete the namespace (idempotent). Processes still inside keep it alive until
        they exit, but its name is gone at once."""
        if self.created:
            self.created = False
            _run(["ip", "netns", "delete", self.name])
