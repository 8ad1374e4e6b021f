"""The client's live view, end to end: the real gateway, local app and client, the client in
a pseudo-terminal (pexpect, a fixed size) whose output a terminal emulator (pyte) turns into
the screen a person would see. And the other side of the switch: at a terminal, an explicit
``--log-format text`` or ``json``, or ``NO_COLOR``, keep the lines; piped, the default is the
plain lines (the other end-to-end tests read those, and the JSON, from pipes)."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import cast

import pexpect
import pyte
import pytest

from tunnelgate.testing.processes import (
    Proc,
    free_port,
    start_gateway,
    start_local_app_proc,
    tunnelgate_argv,
)

COLUMNS, ROWS = 110, 30
TIMEOUT = 15.0  # seconds for the screen to show what a step expects


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    """(gateway port, local app port), shared by the module (each test its own subdomain)."""
    app, app_port = start_local_app_proc()
    try:
        gateway, port = start_gateway()
        try:
            yield port, app_port
        finally:
            gateway.terminate()
    finally:
        app.terminate()


def get(port: int, name: str, target: str) -> int:
    """GET `target` through the tunnel `name`; the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers={"Host": f"{name}.localhost:{port}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def terminal_env(**extra: str) -> dict[str, str]:
    """The test's environment for a terminal program: no TUNNELGATE_* (as Proc does), no
    NO_COLOR from the caller's environment, a TERM that can redraw."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TUNNELGATE_") and k not in ("NO_COLOR", "COLUMNS", "LINES")
    }
    return env | {"TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"} | extra


class Terminal:
    """A program in a pseudo-terminal, and the screen its output draws."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = b""
        self.child: pexpect.spawn[bytes] = pexpect.spawn(
            argv[0], argv[1:], env=env, dimensions=(ROWS, COLUMNS), timeout=TIMEOUT
        )

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait(self, condition: Callable[[list[str]], bool], what: str) -> list[str]:
        """The screen once `condition` holds for its lines, reading the program's output
        until then (at most TIMEOUT seconds)."""
        deadline = time.monotonic() + TIMEOUT
        while not condition(self.lines()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} on the screen after {TIMEOUT}s:\n{self.text()}")
            self._read(remaining)
        return self.lines()

    def wait_exit(self) -> int:
        """The exit status, once the program has ended (its last output drawn)."""
        deadline = time.monotonic() + TIMEOUT
        while self.child.isalive() or not self.child.eof():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"still running after {TIMEOUT}s:\n{self.text()}")
            if not self._read(remaining):
                break
        self.child.wait()
        status = self.child.exitstatus
        assert status is not None, f"ended by signal {self.child.signalstatus}"
        return status

    def _read(self, timeout: float) -> bool:
        """Feed what the program wrote (waiting up to `timeout`); False at its end."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw += data
        self._stream.feed(data)
        return True

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        terminal.close()


def client_argv(servers: tuple[int, int], name: str, *args: str) -> list[str]:
    port, app_port = servers
    server = f"ws://127.0.0.1:{port}/connect"
    return tunnelgate_argv("http", str(app_port), "--server", server, "--subdomain", name, *args)


def row_of(lines: list[str], method: str, path: str, status: str) -> int | None:
    """The index of the request row `method path status ...`, if it is on the screen."""
    for i, line in enumerate(lines):
        words = line.split()
        if words[1:4] == [method, path, status]:
            return i
    return None


def test_the_live_view_shows_the_tunnel_and_its_requests(
    servers: tuple[int, int], terminals: list[Terminal]
) -> None:
    port, app_port = servers
    term = Terminal(client_argv(servers, "live"), terminal_env())
    terminals.append(term)
    forwarding = f"Forwarding       http://live.localhost:{port} -> http://127.0.0.1:{app_port}"
    # (A frame may be read in pieces: each wait is for everything asserted after it.)
    lines = term.wait(
        lambda lines: "Session Status   online" in lines and forwarding in lines, "online status"
    )
    assert lines[0].startswith("tunnelgate")
    assert lines[0].endswith("(Ctrl+C to quit)")

    assert get(port, "live", "/status/200") == 200
    assert get(port, "live", "/status/404") == 404
    traffic = "Traffic          2 requests · 0 open"
    lines = term.wait(
        lambda lines: (
            traffic in lines
            and row_of(lines, "GET", "/status/200", "200") is not None
            and row_of(lines, "GET", "/status/404", "404") is not None
        ),
        "the two requests",
    )
    ok, missing = (
        row_of(lines, "GET", "/status/200", "200"),
        row_of(lines, "GET", "/status/404", "404"),
    )
    assert ok is not None
    assert missing is not None
    assert missing < ok  # newest first
    assert lines[ok].split()[4:] == ["OK", lines[ok].split()[5], "ms"]
    # The status is coloured by its class, as the terminal shows it.
    assert term.screen.buffer[ok][lines[ok].index(" 200 ") + 1].fg == "green"
    # (SGR 33, yellow, is "brown" in pyte's VT102 palette.)
    assert term.screen.buffer[missing][lines[missing].index(" 404 ") + 1].fg == "brown"
    # The first PING went out once the tunnel was registered: its round trip is shown.
    term.wait(lambda lines: any(line.startswith("Round trip") and line.endswith(" ms")
                                for line in lines), "round-trip time")  # fmt: skip

    term.child.sendintr()  # Ctrl+C: a clean close, exit status 0, the last screen stays
    assert term.wait_exit() == 0
    lines = term.lines()  # everything it wrote has been read: the screen is final
    assert "Session Status   offline  stopped" in lines
    assert forwarding in lines
    assert row_of(lines, "GET", "/status/200", "200") is not None
    assert sum(line.startswith("tunnelgate") for line in lines) == 1, term.text()  # in place
    assert term.raw.rfind(b"\x1b[?25h") > term.raw.rfind(b"\x1b[?25l")  # the cursor is back


def test_messages_are_lines_above_the_live_view(
    servers: tuple[int, int], terminals: list[Terminal]
) -> None:
    """A rejection (the name is taken) prints its line, and exits 2 as before."""
    with Proc([*client_argv(servers, "taken"), "--log-format", "json"]) as first:
        first.wait_for_json(lambda obj: obj.get("event") == "tunnel_ready")
        term = Terminal(client_argv(servers, "taken"), terminal_env())
        terminals.append(term)
        assert term.wait_exit() == 2
    text = term.text()
    assert "tunnelgate: tunnel http rejected:" in text
    assert "Session Status   offline  tunnel http rejected:" in text


def test_giving_up_leaves_the_screen_and_exits_1(terminals: list[Terminal]) -> None:
    server = f"ws://127.0.0.1:{free_port()}/connect"  # nothing listens there
    argv = tunnelgate_argv("http", "3000", "--server", server, "--max-retries", "1")
    term = Terminal(argv, terminal_env())
    terminals.append(term)
    assert term.wait_exit() == 1
    text = term.text()
    assert "Connection lost (cannot reach" in text  # the retry's line, above the view
    assert "tunnelgate: giving up after 1 retries: cannot reach" in text
    assert "Session Status   offline  cannot reach" in text
    assert sum(line.startswith("tunnelgate  ") for line in term.lines()) == 1, text


@pytest.mark.parametrize(
    ("name", "args", "env"),
    [
        ("explicit", ["--log-format", "text"], {}),  # chosen: the lines, even at a terminal
        ("nocolor", [], {"NO_COLOR": "1"}),
        ("dumb", [], {"TERM": "dumb"}),
    ],
)
def test_plain_lines_at_a_terminal_when_asked(
    servers: tuple[int, int],
    terminals: list[Terminal],
    name: str,
    args: list[str],
    env: dict[str, str],
) -> None:
    port, _ = servers
    term = Terminal(client_argv(servers, name, *args), terminal_env(**env))
    terminals.append(term)
    term.child.expect_exact(f"Forwarding  http://{name}.localhost:{port} -> ")
    assert get(port, name, "/status/201") == 201
    term.child.expect(r"GET /status/201 201 [0-9.]+ ms\r\n")
    assert b"\x1b[" not in (term.child.before or b"")  # lines, not a screen


def test_json_at_a_terminal_is_unchanged(
    servers: tuple[int, int], terminals: list[Terminal]
) -> None:
    port, _ = servers
    term = Terminal(client_argv(servers, "jsontty", "--log-format", "json"), terminal_env())
    terminals.append(term)
    term.child.expect_exact('"event": "tunnel_ready"')
    assert get(port, "jsontty", "/status/202") == 202
    term.child.expect(rb'\{"event": "request"[^\r\n]*\}\r\n')
    request = json.loads(cast(bytes, term.child.after))
    assert (request["method"], request["path"], request["status"]) == ("GET", "/status/202", 202)


def test_piped_the_default_is_plain_lines(servers: tuple[int, int]) -> None:
    port, app_port = servers
    argv = client_argv(servers, "piped")
    with Proc(argv) as client:
        client.wait_for_line(
            f"Forwarding  http://piped.localhost:{port} -> http://127.0.0.1:{app_port}"
        )
        assert get(port, "piped", "/status/200") == 200
        line = client.wait_for_line(lambda line: line.startswith("GET /status/200 200 "))
        assert line.endswith(" ms")
    assert not any("\x1b" in line for line in client.stdout_lines + client.stderr_lines)
