"""What a forked worker process does before and after it runs the ordinary gateway.

`run_child` never returns: it ends the process with the gateway's exit status, so no code
of the supervisor (whose stack the fork copied) ever runs in a worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Iterable
from dataclasses import replace
from typing import Final, NoReturn

from tunnelgate.config import GatewayConfig, read_tokens_file
from tunnelgate.errors import ConfigError
from tunnelgate.logs import EventLog, LineWriter

from .app import run_gateway

log = EventLog("tunnelgate.gateway")

PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
# The signals the supervisor forwards: blocked around fork (workers.py), so none reaches
# the child before it has dropped the supervisor's handlers.
FORWARDED: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def run_child(
    config: GatewayConfig, index: int, ready_fd: int, supervisor: int, inherited: Iterable[int]
) -> NoReturn:
    """Worker `index`: leave the supervisor's state behind, then run the gateway with
    `config`; `ready_fd` gets a byte once it listens. Exits the process."""
    code = 1
    try:
        _die_with(supervisor)
        # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
        # forwards it once (twice would cut the drain short).
        os.setpgid(0, 0)
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # A reload forwarded while the worker starts would otherwise kill it; it reads
        # the files fresh anyway. run_gateway installs the real handlers.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        code = run_gateway(
            _current_tokens(config, index), worker=index, ready=lambda: _tell_ready(ready_fd)
        )
    except BaseException:  # the root of the process: whatever it was, say so and exit 1
        traceback.print_exc()
    finally:
        LineWriter.flush_all()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _die_with(supervisor: int) -> None:
    """SIGTERM (a drain) to this process when the supervisor dies, even by SIGKILL: no
    worker outlives it for longer than its --drain-timeout."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != supervisor:  # it died before the prctl took effect
        os._exit(1)


def _current_tokens(config: GatewayConfig, index: int) -> GatewayConfig:
    """The tokens file as it is now: a worker restarted after a reload must accept what
    its siblings accept. A file broken meanwhile: the supervisor's copy, as a reload
    keeps the old set."""
    if config.tokens_file is None:
        return config
    try:
        digests = read_tokens_file(config.tokens_file)
    except ConfigError as exc:
        log.warning("tokens_reload_failed", worker=index, error=str(exc))
        return config
    return replace(config, file_token_digests=digests)


def _tell_ready(fd: int) -> None:
    LineWriter.flush_all()  # its `listening` lines come before the supervisor's `worker_ready`
    try:
        os.write(fd, b"r")
    except OSError:
        pass  # the supervisor is gone: the parent-death signal is on its way
    finally:
        os.close(fd)
