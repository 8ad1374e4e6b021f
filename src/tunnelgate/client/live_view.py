"""The client's live view: an ngrok-like screen, redrawn in place, when stdout is a terminal.

    tunnelgate                                                  (Ctrl+C to quit)

    Session Status   online
    Server           ws://127.0.0.1:8080/connect
    Round trip       0.4 ms
    Forwarding       http://demo.localhost:8080 -> http://127.0.0.1:3000
    Traffic          2 requests · 0 open

    HTTP Requests
    12:04:32  POST  /api/items                              201 Created  12.0 ms
    12:04:31  GET   /                                       200 OK        1.3 ms

`LiveView` is the client's `Output` (output.py) when the log format was not chosen and
`view_model.wanted()` says yes; it keeps its state in the `ViewModel` it extends, and draws
it with rich's `Live`. Redraws come from the event loop, at most every `REFRESH_INTERVAL`
and only when the model changed: a burst of requests costs the data path one small call
each, never a redraw each (rich's own refresh thread is off, so nothing reads the model
from another thread).

Messages that are lines in the text output (connection lost, rejected, closed, errors) are
still lines, formatted by the same `TextOutput`: printed above the live region while it is
shown (or to stderr as usual when stderr is not the terminal), like the client's log lines.
On exit the last screen stays, its status "offline", and the cursor comes back.

Paths and addresses come from the public internet: they are shown through
`output.printable` and as rich `Text` (never parsed as markup).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Final, Protocol, TextIO, cast

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tunnelgate.config import ClientConfig
from tunnelgate.logs import EventLog

from .output import TextOutput, printable
from .view_model import ConnectionRow, RequestRow, ViewModel

# Redraws at most this often (rich's default rate, 4 a second): quick enough to feel live,
# and a burst of requests between two redraws is drawn once.
REFRESH_INTERVAL: Final = 0.25

_STATUS_STYLES: Final = {
    "online": "bold green",
    "connecting": "bold yellow",
    "reconnecting": "bold yellow",
    "draining": "bold yellow",
    "offline": "bold red",
}
# By the status class: 1xx 2xx 3xx 4xx 5xx.
_CLASS_STYLES: Final = ("", "blue", "green", "cyan", "yellow", "red")
_END_STYLES: Final = {"closed": "green", "reset": "yellow"}  # others (failures): red
_GAP: Final = 2  # spaces between the columns of the latest rows

log = EventLog("tunnelgate.client")


class Statistics(Protocol):
    """What a redraw reads of the agent (client/session.py's SessionStatistics)."""

    @property
    def open_streams(self) -> int: ...
    @property
    def rtt(self) -> float | None: ...


class LiveView(ViewModel):
    def __init__(self, config: ClientConfig, stdout: TextIO, stderr: TextIO) -> None:
        tunnels = [(spec.name, spec.protocol, spec.local_url) for spec in config.tunnels]
        super().__init__(config.server, tunnels)
        self.console = Console(file=stdout, highlight=False, markup=False, emoji=False)
        self._live = Live(
            console=self.console,
            auto_refresh=False,  # we redraw from the event loop: no thread reads the model
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",  # newest rows first: the oldest fall off the bottom
            get_renderable=lambda: render(self, *self.console.size),
        )
        # Lines for stderr: above the view when stderr is this terminal too.
        # (A TextIOBase is all of TextIO that LineWriter uses: write, flush.)
        above = cast(TextIO, _ConsoleLines(self.console))
        self.log_stream = above if stderr.isatty() else stderr
        self._lines = TextOutput(self.log_stream, self.log_stream)

    # --- Output: the model's state, and the lines the text output prints for these ------
    def reconnecting(self, attempt: int, delay: float, reason: str) -> None:
        super().reconnecting(attempt, delay, reason)
        self._lines.reconnecting(attempt, delay, reason)

    def rejected(self, tunnel: str, reason: str, message: str) -> None:
        super().rejected(tunnel, reason, message)
        self._lines.rejected(tunnel, reason, message)

    def closed(self, reason: str) -> None:
        super().closed(reason)
        self._lines.closed(reason)

    def draining(self, open_streams: int, timeout: float) -> None:
        super().draining(open_streams, timeout)
        self._lines.draining(open_streams, timeout)

    def drained(self, ended: str, duration_ms: float, cut_streams: int) -> None:
        super().drained(ended, duration_ms, cut_streams)
        self._lines.drained(ended, duration_ms, cut_streams)

    def error(self, message: str) -> None:
        super().error(message)
        self._lines.error(message)

    # --- the screen -----------------------------------------------------------------
    @contextlib.contextmanager
    def showing(self, statistics: Callable[[], Statistics]) -> Iterator[None]:
        """Draw the view while the block runs (in the event loop), reading `statistics`
        at each tick; then leave its last screen on the terminal."""
        loop = asyncio.get_running_loop()
        drawn = -1  # the `changes` on screen
        handle: asyncio.Handle | None = None

        def tick() -> None:
            nonlocal drawn, handle
            try:
                stats = statistics()
                self.sample(stats.open_streams, stats.rtt)
                if self.changes != drawn:
                    drawn = self.changes
                    self._live.refresh()
            except Exception:  # the root of this callback: the lines go on, the view stops
                log.exception("live_view_failed")
                return
            handle = loop.call_later(REFRESH_INTERVAL, tick)

        self._live.start(refresh=True)
        handle = loop.call_soon(tick)
        try:
            yield
        finally:
            handle.cancel()
            self.ended()
            self._live.stop()  # draws the last screen, shows the cursor again


def render(model: ViewModel, width: int, height: int) -> RenderableType:
    """The screen for `model`, on a terminal of `width` columns and `height` lines.

    It ends with an empty line, and its lines stop one column short of the width: the
    cursor waits at the start of that empty line, so what the terminal echoes there (Ctrl+C's
    "^C", keys typed) cannot wrap and scroll the screen, which would leave a line of the old
    view behind on the next redraw (rich redraws in place by moving up its height)."""
    width = max(1, width - 1)
    title = Table.grid()
    title.width = width
    title.add_column(style="bold cyan")
    title.add_column(justify="right", style="dim")
    title.add_row("tunnelgate", "(Ctrl+C to quit)")
    head = _head(model)
    # Lines besides the head and the rows: title, 2 blank lines, section title, the last.
    rows = max(0, height - head.row_count - 5)
    return Group(title, "", head, "", *_recent(model, width, rows), "")


def _head(model: ViewModel) -> Table:
    grid = Table.grid(padding=(0, 3))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    status = Text.assemble((model.status, _STATUS_STYLES[model.status]))
    if model.detail:
        status.append(f"  {printable(model.detail, 300)}")
    if model.retry:
        status.append(f"; {model.retry}")
    grid.add_row("Session Status", status)
    grid.add_row("Server", Text(model.server))
    rtt = "-" if model.rtt is None else f"{model.rtt * 1000:.1f} ms"
    grid.add_row("Round trip", Text(rtt))
    for tunnel in model.tunnels.values():
        url = tunnel.url or "(not registered yet)"
        shown = Text(f"{url} -> {tunnel.local}", style="" if tunnel.ready else "dim")
        grid.add_row("Forwarding", shown)
    counts = []
    if model.requests or any(t.protocol == "http" for t in model.tunnels.values()):
        counts.append(_count(model.requests, "request"))
    if model.connections or any(t.protocol != "http" for t in model.tunnels.values()):
        counts.append(_count(model.connections, "connection"))
    counts.append(f"{model.open_streams} open")
    grid.add_row("Traffic", Text(" · ".join(counts)))
    return grid


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _recent(model: ViewModel, width: int, limit: int) -> list[RenderableType]:
    """The section title and the latest rows, newest first, in columns.

    Laid out here rather than by a rich `Table`, which measured its cells at four times the
    cost of the whole rest of a frame (a frame blocks the event loop while it is drawn)."""
    protocols = {tunnel.protocol for tunnel in model.tunnels.values()}
    if protocols <= {"http"}:
        heading = "HTTP Requests"
    else:
        heading = "Connections" if "http" not in protocols else "Requests and connections"
    several = len(model.tunnels) > 1
    rows = [_cells(row, several) for row in itertools.islice(reversed(model.recent), limit)]
    return [Text(heading, style="bold"), *_columns(rows, width)]


def _columns(rows: list[tuple[Text, ...]], width: int) -> list[Text]:
    """`rows` as lines `width` wide: the path (the column before the last two) gets what the
    others leave and is cut with an ellipsis; the duration (the last) is aligned right."""
    if not rows:
        return []
    widths = [max(row[i].cell_len for row in rows) for i in range(len(rows[0]))]
    elastic = len(widths) - 3
    widths[elastic] = max(1, width - sum(widths) + widths[elastic] - _GAP * (len(widths) - 1))
    lines = []
    for row in rows:
        line = Text(no_wrap=True, overflow="ellipsis")
        for i, (cell, cell_width) in enumerate(zip(row, widths, strict=True)):
            if i == elastic:
                cell.truncate(cell_width, overflow="ellipsis", pad=True)
            elif i == len(widths) - 1:
                line.append(" " * (cell_width - cell.cell_len))
            else:
                cell.pad_right(cell_width - cell.cell_len)
            line.append_text(cell)
            if i < len(widths) - 1:
                line.append(" " * _GAP)
        lines.append(line)
    return lines


def _cells(row: RequestRow | ConnectionRow, tunnel: bool) -> tuple[Text, ...]:
    """A row's cells: time, [tunnel,] method, path, status, duration (a connection's:
    protocol, client address and bytes, how it ended)."""
    at = Text(time.strftime("%H:%M:%S", time.localtime(row.at)), style="dim")
    first = (at, Text(printable(row.tunnel, 16))) if tunnel else (at,)
    duration = Text(f"{row.duration_ms:.1f} ms")
    if isinstance(row, RequestRow):
        method = Text(printable(row.method, 32), style="bold")
        return *first, method, Text(printable(row.path)), _status(row.status), duration
    target = f"{printable(row.client, 64)} in={row.bytes_in} out={row.bytes_out}"
    end = Text(row.end, style=_END_STYLES.get(row.end, "red"))
    return *first, Text(row.protocol.upper(), style="bold"), Text(target), end, duration


def _status(status: int) -> Text:
    """`200 OK`, coloured by its class."""
    try:
        text = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        text = str(status)
    cls = status // 100
    return Text(text, style=_CLASS_STYLES[cls] if 0 < cls < len(_CLASS_STYLES) else "")


class _ConsoleLines(io.TextIOBase):
    """A text stream whose lines the console prints above the live region (as rich's
    FileProxy does, without decoding escape sequences: our lines have none, by design)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._console.print(Text("\n".join(lines)), soft_wrap=True)
        return len(text)

    def isatty(self) -> bool:
        return True
