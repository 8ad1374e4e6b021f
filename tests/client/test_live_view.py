"""client/live_view.py: what the screen shows, and how often it is redrawn (on a fake
terminal; tests/e2e/test_client_terminal.py runs the real client in a pseudo-terminal)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from rich.console import Console

from tunnelgate.client import live_view
from tunnelgate.client.live_view import LiveView, render
from tunnelgate.client.session import SessionStatistics
from tunnelgate.client.view_model import ViewModel
from tunnelgate.config import load_client_config
from tunnelgate.testing.proc import poll_until_async

SERVER = "ws://127.0.0.1:8080/connect"
QUIT = "(Ctrl+C to quit)"  # once a frame
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(model: ViewModel, width: int = 80, height: int = 24) -> list[str]:
    console = Console(file=io.StringIO(), width=width, height=height, record=True)
    console.print(render(model, width, height))
    return [line.rstrip() for line in console.export_text().splitlines()]


def web_model() -> ViewModel:
    view = ViewModel(SERVER, [("web", "http", "http://127.0.0.1:3000")])
    view.connecting(SERVER)
    view.tunnel_ready("web", "http://web.localhost:8080", "http://127.0.0.1:3000")
    return view


def test_the_screen_of_an_http_tunnel() -> None:
    view = web_model()
    view.sample(1, 0.0015)
    view.request("web", "GET", "/hello", 200, 1.25, 0, 6)
    view.request("web", "POST", "/items", 503, 12.0, 40, 0)
    lines = screen(view)
    assert lines[0].startswith("tunnelgate")
    assert lines[0].endswith(QUIT)
    assert "Session Status   online" in lines
    assert f"Server           {SERVER}" in lines
    assert "Round trip       1.5 ms" in lines
    assert "Forwarding       http://web.localhost:8080 -> http://127.0.0.1:3000" in lines
    assert "Traffic          2 requests · 1 open" in lines
    heading = lines.index("HTTP Requests")
    newest, older = lines[heading + 1], lines[heading + 2]
    assert newest.split()[1:] == ["POST", "/items", "503", "Service", "Unavailable", "12.0", "ms"]
    assert older.split()[1:] == ["GET", "/hello", "200", "OK", "1.2", "ms"]
    assert max(len(line) for line in lines) < 80  # one column spare (see render())


def test_tcp_connections_and_several_tunnels() -> None:
    view = ViewModel(SERVER, [("web", "http", "http://127.0.0.1:3000"), ("db", "tcp", "x:5")])
    view.connection("db", "tcp", "203.0.113.9:4000", "local_reset", 30.0, 12, 3400)
    view.request("web", "GET", "/", 200, 1.0, 0, 0)
    lines = screen(view)
    assert "Traffic          1 request · 1 connection · 0 open" in lines
    heading = lines.index("Requests and connections")
    assert lines[heading + 1].split()[1:4] == ["web", "GET", "/"]
    assert lines[heading + 2].split()[1:] == [
        "db", "TCP", "203.0.113.9:4000", "in=12", "out=3400", "local_reset", "30.0", "ms",
    ]  # fmt: skip


def test_not_online_says_why() -> None:
    view = web_model()
    view.reconnecting(3, 2.0, "cannot reach the gateway")
    lines = screen(view, width=120)
    assert "Session Status   reconnecting  cannot reach the gateway; attempt 3 in 2.0 s" in lines
    assert "Round trip       -" in lines


def test_paths_from_the_internet_cannot_drive_the_terminal() -> None:
    view = web_model()
    view.request("web", "GET", "/\x1b[2J[bold]x[/bold]" + "y" * 300, 200, 1.0, 0, 0)
    console = Console(file=io.StringIO(), width=80, height=24, record=True)
    console.print(render(view, 80, 24))
    text = console.export_text()
    assert "\x1b" not in text
    row = text.splitlines()[-2]  # the last line is empty (render())
    assert "/\\x1b[2J[bold]x[/bold]yyy" in row  # escaped, and not taken for markup
    assert "…" in row  # cut to the width


def test_only_the_rows_that_fit_newest_first() -> None:
    view = web_model()
    for i in range(20):
        view.request("web", "GET", f"/{i}", 200, 1.0, 0, 0)
    lines = screen(view, height=14)
    rows = lines[lines.index("HTTP Requests") + 1 :]
    assert [row.split()[2] for row in rows[:-1]] == ["/19", "/18", "/17", "/16"]
    assert rows[-1] == ""  # where the cursor waits (render())
    assert len(lines) == 14


@pytest.mark.parametrize(
    ("status", "style"),
    [(101, "blue"), (200, "green"), (304, "cyan"), (404, "yellow"), (502, "red"), (799, "")],
)
def test_status_colour_by_class(status: int, style: str) -> None:
    assert live_view._status(status).style == style


# --- redraws ----------------------------------------------------------------------------
def make_view(stderr: io.StringIO | None = None) -> tuple[LiveView, Tty]:
    config = load_client_config("http", {"addr": "3000", "server": SERVER}, {})
    out = Tty()
    return LiveView(config, out, out if stderr is None else stderr), out


async def until(condition: Callable[[], bool]) -> None:
    await poll_until_async(condition, 5.0, interval=0.001)


class Stats:
    """The agent's statistics(); counts the ticks that read it."""

    def __init__(self) -> None:
        self.reads = 0
        self.value = SessionStatistics(0, None)

    def __call__(self) -> SessionStatistics:
        self.reads += 1
        return self.value

    async def ticks(self, n: int) -> None:
        target = self.reads + n
        await until(lambda: self.reads >= target)


async def test_redrawn_when_changed_and_a_burst_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_view, "REFRESH_INTERVAL", 0.001)
    view, out = make_view()
    stats = Stats()
    with view.showing(stats):
        await stats.ticks(5)
        assert out.getvalue().count(QUIT) <= 2  # the first frame, and the first tick's
        drawn = out.getvalue().count(QUIT)
        for i in range(5000):  # within one loop turn: one redraw, not 5000
            view.request("http", "GET", f"/{i}", 200, 1.0, 0, 0)
        await stats.ticks(3)
        assert out.getvalue().count(QUIT) == drawn + 1
        assert "/4999" in out.getvalue()
        stats.value = SessionStatistics(2, 0.004)  # sampled at the next tick
        await stats.ticks(2)
        assert "2 open" in out.getvalue().rsplit(QUIT, 1)[1]
        assert "4.0 ms" in out.getvalue().rsplit(QUIT, 1)[1]


async def test_messages_are_lines_above_the_view_and_the_last_screen_stays() -> None:
    view, out = make_view()
    with view.showing(Stats()):
        view.reconnecting(1, 0.5, "connection lost")
        assert "Connection lost (connection lost); reconnecting in 0.5 s (attempt 1)" not in (
            out.getvalue()
        )  # a line goes out at the end of the loop turn (LineWriter)
        await until(lambda: "reconnecting in 0.5 s" in out.getvalue())
    last = ANSI.sub("", out.getvalue().rsplit(QUIT, 1)[1])
    assert "offline  connection lost" in last
    assert out.getvalue().endswith("\x1b[?25h")  # the cursor is back


async def test_lines_go_to_stderr_when_it_is_not_the_terminal() -> None:
    err = io.StringIO()
    view, out = make_view(stderr=err)
    with view.showing(Stats()):
        view.error("cannot reach the gateway")
        await until(lambda: bool(err.getvalue()))
    assert err.getvalue() == "tunnelgate: cannot reach the gateway\n"
    assert "cannot reach" not in out.getvalue()


def test_draining_is_shown() -> None:
    view = web_model()
    view.draining(2, 10.0)
    lines = screen(view, width=120)
    assert any(
        line.startswith("Session Status   draining  finishing what is in flight") for line in lines
    ), lines
