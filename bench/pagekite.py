"""PageKite, the Python peer: Debian's ``pagekite`` as front end and back end.

Run exactly as the issue says. ``--clean`` keeps it from reading /etc/pagekite.d and
``--nocrashreport`` from calling pagekite.net. PageKite adds about 92 ms per request (no
TCP_NODELAY) and may crash under load: it then restarts itself inside the same process
(``Crashed:`` on stderr), or the process dies. Before each measurement the route is checked;
a dead or unrouted PageKite is restarted, and both kinds of restart are counted.
"""

from __future__ import annotations

import secrets
import shutil
from functools import partial
from typing import Final

from .origin import Origin
from .probe import Target, answers
from .procs import BenchError, ManagedProc, Processes, free_port, port_open, wait_until
from .systems import DOMAIN, SUBDOMAIN

ROUTE_TIMEOUT: Final = 30.0  # seconds for a (re)started back end to register with the front end
RECOVER_WAIT: Final = 10.0  # seconds a live PageKite gets to find its route again
START_TIMEOUT: Final = 15.0


def frontend_argv(pagekite: str, port: int, secret: str) -> list[str]:
    return [
        pagekite, "--clean", "--nullui", "--nocrashreport", "--noproxy", "--isfrontend",
        "--host=127.0.0.1", f"--ports={port}", "--protos=http",
        f"--domain=http:*.{DOMAIN}:{secret}",
    ]  # fmt: skip


def backend_argv(pagekite: str, port: int, origin_port: int, secret: str) -> list[str]:
    service = f"http:{SUBDOMAIN}.{DOMAIN}:127.0.0.1:{origin_port}:{secret}"
    return [
        pagekite, "--clean", "--nullui", "--nocrashreport", "--noproxy",
        f"--frontend=127.0.0.1:{port}", f"--service_on={service}",
    ]  # fmt: skip


class PageKite:
    """wrk -> PageKite front end (Host bench.localhost) -> back end -> origin."""

    name = "pagekite"

    def __init__(self, procs: Processes, origin: Origin) -> None:
        found = shutil.which("pagekite")
        if found is None:
            raise BenchError("pagekite is not installed (make bench installs it with apt)")
        self.pagekite = found
        self.procs = procs
        self.origin = origin
        self.secret = secrets.token_hex(12)
        self.port = free_port()
        self.target = Target(self.port, f"{SUBDOMAIN}.{DOMAIN}")
        self.process_restarts = 0
        self._earlier_crashes = 0  # "Crashed:" lines in the logs of processes we replaced
        self.frontend: ManagedProc
        self.backend: ManagedProc
        self._start()

    @property
    def restarts(self) -> int:
        """Process restarts by us plus crash-restarts PageKite did by itself."""
        return self.process_restarts + self._earlier_crashes + self._crashes()

    def _crashes(self) -> int:
        return sum(p.log_text().count("Crashed:") for p in (self.frontend, self.backend))

    def _start(self) -> None:
        self.frontend = self.procs.start(
            "pagekite-frontend", frontend_argv(self.pagekite, self.port, self.secret)
        )
        listening = partial(port_open, self.port)
        wait_until("PageKite's front end", listening, START_TIMEOUT, self.frontend)
        self.backend = self.procs.start(
            "pagekite-backend",
            backend_argv(self.pagekite, self.port, self.origin.port, self.secret),
        )
        wait_until("PageKite's route", self._routes, ROUTE_TIMEOUT, self.backend)

    def _routes(self) -> bool:
        return answers(self.target, self.origin.small_path, self.origin.small_body)

    def restart(self) -> None:
        self._earlier_crashes += self._crashes()
        for proc in (self.backend, self.frontend):
            self.procs.stop(proc)
        self.process_restarts += 1
        self._start()

    def ensure_route(self) -> bool:
        if self._routes():
            return True
        if self.frontend.alive and self.backend.alive:
            try:
                wait_until("PageKite's route to come back", self._routes, RECOVER_WAIT)
                return True
            except BenchError:
                pass
        self.restart()
        return self._routes()

    def cpu_pids(self) -> dict[str, int]:
        return {
            "gateway": self.frontend.pid,
            "client": self.backend.pid,
            "origin": self.origin.worker_pid,
        }

    def rss_pids(self) -> dict[str, int]:
        return {"gateway": self.frontend.pid, "client": self.backend.pid}
