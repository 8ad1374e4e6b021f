"""client/view_model.py: the live view's state, kept from the client's events (no terminal)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TextIO

import pytest

from tunnelgate.client.output import Output
from tunnelgate.client.view_model import (
    MAX_RECENT,
    ConnectionRow,
    RequestRow,
    ViewModel,
    wanted,
)

SERVER = "ws://127.0.0.1:8080/connect"
WEB = ("web", "http", "http://127.0.0.1:3000")
DB = ("db", "tcp", "127.0.0.1:5432")


def model(*tunnels: tuple[str, str, str]) -> ViewModel:
    return ViewModel(SERVER, tunnels or [WEB], clock=lambda: 1000.0)


def online(view: ViewModel) -> ViewModel:
    view.connecting(SERVER)
    for name in list(view.tunnels):
        view.tunnel_ready(name, f"http://{name}.localhost:8080", view.tunnels[name].local)
    return view


def test_it_is_an_output() -> None:
    output: Output = model()  # checked by mypy: the same events as the text and JSON outputs
    output.request("web", "GET", "/", 200, 1.0, 0, 0)


def test_online_once_every_tunnel_is_ready() -> None:
    view = model(WEB, DB)
    statuses = [view.status]
    view.connecting(SERVER)
    view.tunnel_ready("web", "http://web.localhost:8080", "http://127.0.0.1:3000")
    statuses.append(view.status)
    view.tunnel_ready("db", "tcp://localhost:20001", "127.0.0.1:5432")
    assert [*statuses, view.status] == ["connecting", "connecting", "online"]
    assert view.tunnels["db"].url == "tcp://localhost:20001"
    assert all(tunnel.ready for tunnel in view.tunnels.values())


def test_reconnecting_says_why_until_online_again() -> None:
    view = online(model())
    view.reconnecting(2, 1.25, "connection lost")
    assert (view.status, view.detail, view.retry) == (
        "reconnecting",
        "connection lost",
        "attempt 2 in 1.2 s",
    )
    assert not view.tunnels["web"].ready
    assert view.tunnels["web"].url == "http://web.localhost:8080"  # kept: it comes back
    view.connecting(SERVER)  # the next attempt: still reconnecting, still the reason
    assert (view.status, view.detail) == ("reconnecting", "connection lost")
    online(view)
    assert (view.status, view.detail, view.retry) == ("online", "", "")


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        (lambda v: v.rejected("web", "name_taken", "name web is taken"),
         "tunnel web rejected: name web is taken"),
        (lambda v: v.closed("idle for 60 s"), "closed by the gateway: idle for 60 s"),
    ],
)  # fmt: skip
def test_offline_with_the_reason(event: object, detail: str) -> None:
    view = online(model())
    event(view)  # type: ignore[operator]
    assert (view.status, view.detail) == ("offline", detail)


def test_errors_change_no_status() -> None:
    """They are lines (the --insecure warning is one); the fatal ones end the view."""
    view = online(model())
    changes = view.changes
    view.error("warning: --insecure: ...")
    assert (view.status, view.changes) == ("online", changes)


def test_ended_is_offline_and_keeps_the_last_reason() -> None:
    view = online(model())
    view.ended()
    assert (view.status, view.detail) == ("offline", "stopped")
    view = model()
    view.reconnecting(3, 2.0, "cannot reach the gateway")
    view.ended()
    assert (view.status, view.detail, view.retry) == ("offline", "cannot reach the gateway", "")


def test_requests_and_connections_are_rows_and_counts() -> None:
    view = online(model(WEB, DB))
    view.request("web", "GET", "/hello", 200, 1.5, 10, 20)
    view.connection("db", "tcp", "203.0.113.9:4000", "closed", 30.0, 12, 3400)
    assert (view.requests, view.connections) == (1, 1)
    assert list(view.recent) == [
        RequestRow(1000.0, "web", "GET", "/hello", 200, 1.5),
        ConnectionRow(1000.0, "db", "tcp", "203.0.113.9:4000", "closed", 30.0, 12, 3400),
    ]


def test_only_the_latest_rows_are_kept() -> None:
    view = online(model())
    for i in range(MAX_RECENT * 50):
        view.request("web", "GET", f"/{i}", 200, 1.0, 0, 0)
    assert len(view.recent) == MAX_RECENT
    assert view.recent[-1].path == f"/{MAX_RECENT * 50 - 1}"  # type: ignore[union-attr]
    assert view.requests == MAX_RECENT * 50


def test_every_change_bumps_changes_and_sampling_the_same_does_not() -> None:
    view = model()
    seen = view.changes
    events: list[Callable[[], None]] = [
        lambda: view.connecting(SERVER),
        lambda: view.tunnel_ready("web", "http://web.localhost:8080", "x"),
        lambda: view.request("web", "GET", "/", 200, 1.0, 0, 0),
        lambda: view.sample(3, 0.002),
    ]
    for event in events:
        event()
        assert view.changes > seen
        seen = view.changes
    view.sample(3, 0.002)
    assert view.changes == seen
    assert (view.open_streams, view.rtt) == (3, 0.002)


def test_a_tunnel_it_was_not_told_of_is_shown_all_the_same() -> None:
    view = model()
    view.tunnel_ready("other", "http://other.localhost:8080", "http://127.0.0.1:9")
    assert view.tunnels["other"].url == "http://other.localhost:8080"


# --- when the live view is shown --------------------------------------------------------
class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "environ", "shown"),
    [
        (Tty(), {"TERM": "xterm-256color"}, True),
        (Tty(), {}, True),
        (io.StringIO(), {"TERM": "xterm-256color"}, False),  # piped or redirected
        (Tty(), {"TERM": "dumb"}, False),
        (Tty(), {"TERM": "xterm", "NO_COLOR": "1"}, False),
        (Tty(), {"TERM": "xterm", "NO_COLOR": ""}, True),  # no-color.org: empty is unset
    ],
)
def test_wanted_on_a_terminal_that_redraws(
    stream: TextIO, environ: dict[str, str], shown: bool
) -> None:
    assert wanted(stream, environ) is shown


def test_not_wanted_on_a_closed_stream() -> None:
    stream = io.StringIO()
    stream.close()  # isatty() raises
    assert not wanted(stream, {})


def test_draining_says_so_keeps_counting_streams_then_ends_stopped() -> None:
    view = online(model())
    view.draining(1, 10.0)
    assert view.status == "draining"
    assert "up to 10 s" in view.detail
    assert not view.tunnels["web"].ready  # the name is given up already
    view.sample(1, 0.002)
    assert view.open_streams == 1  # what is still finishing stays on screen
    view.drained("timeout", 10000.0, 1)
    view.ended()
    assert (view.status, view.detail) == ("offline", "stopped, 1 cut off")
