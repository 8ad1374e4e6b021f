"""Process helpers: output capture, deadlines, and killing by PID."""

from __future__ import annotations

import signal
import socket
import sys
import time

import pytest

from tunnelgate.testing.local_app import LocalApp
from tunnelgate.testing.processes import (
    Proc,
    ProcExited,
    WaitTimeout,
    build_request,
    free_port,
    free_port_range,
    http_request,
    start_gateway,
    start_local_app_proc,
)


def python(code: str) -> Proc:
    return Proc([sys.executable, "-c", code])


def test_free_port_is_bindable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_free_port_range_is_consecutive_and_bindable() -> None:
    lo, hi = free_port_range(4)
    assert hi - lo == 3
    socks = [socket.socket() for _ in range(4)]
    try:
        for sock, port in zip(socks, range(lo, hi + 1), strict=True):
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in socks:
            sock.close()


def test_wait_for_line_and_exit_status() -> None:
    code = (
        'import sys; print(\'one\'); print(\'{"event": "x", "n": 2}\');'
        "print('err', file=sys.stderr); sys.exit(3)"
    )
    with python(code) as proc:
        assert proc.wait_for_line("one") == "one"
        assert proc.wait_for_line(lambda line: line.startswith("{")).startswith("{")
        assert proc.wait_for_json(lambda obj: obj["event"] == "x") == {"event": "x", "n": 2}
        assert proc.wait_for_line("err", stream="stderr") == "err"
        assert proc.wait_exit() == 3
    assert proc.stdout_lines[0] == "one"
    assert proc.json_lines() == [{"event": "x", "n": 2}]


def test_wait_for_line_after_skips_earlier_lines() -> None:
    with python("print('a'); print('b'); print('a2')") as proc:
        proc.wait_exit()
        assert proc.wait_for_line("a", after=1) == "a2"


def test_exit_without_the_line_raises_at_once_with_output() -> None:
    with python("print('something else')") as proc:
        started = time.monotonic()
        with pytest.raises(ProcExited, match="something else"):
            proc.wait_for_line("never", timeout=30)
        assert time.monotonic() - started < 10


def test_timeout_raises_with_output() -> None:
    code = "import sys, time; print('waiting', flush=True); sys.stdin.read(); time.sleep(30)"
    with python(code) as proc:
        proc.wait_for_line("waiting")
        with pytest.raises(WaitTimeout, match="waiting"):
            proc.wait_for_line("never", timeout=0.2)
        with pytest.raises(WaitTimeout):
            proc.wait_exit(timeout=0.1)
    assert proc.returncode == -signal.SIGTERM


def test_terminate_escalates_to_sigkill() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready', flush=True); time.sleep(30)"
    )
    proc = python(code)
    try:
        proc.wait_for_line("ready")
        assert proc.terminate(timeout=0.3) == -signal.SIGKILL
    finally:
        proc.terminate()


def test_signal_is_delivered() -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    with python(code) as proc:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGINT)
        assert proc.wait_exit() == 0


async def test_async_wait_lets_the_loop_serve(local_app: LocalApp) -> None:
    # The child asks the in-process app for a page: a blocking wait would deadlock here.
    code = (
        "import socket, sys\n"
        f"s = socket.create_connection(('127.0.0.1', {local_app.port}))\n"
        "s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "data = b''\n"
        "while chunk := s.recv(4096): data += chunk\n"
        "print('got', data.split(b'\\r\\n\\r\\n', 1)[1].decode().strip(), flush=True)\n"
    )
    with python(code) as proc:
        assert await proc.wait_for_line_async("got") == "got hello"
        assert await proc.wait_exit_async() == 0


async def test_local_app_process_exits_cleanly_on_sigterm() -> None:
    proc, port = start_local_app_proc()
    with proc:
        assert (await http_request(port, build_request("GET", "/"))).status == 200
        assert proc.terminate() == 0


def test_start_gateway_failure_leaks_no_process() -> None:
    with pytest.raises(ProcExited) as excinfo:
        start_gateway("--no-such-option")
    assert "exited" in str(excinfo.value)
    assert "no-such-option" in str(excinfo.value)
