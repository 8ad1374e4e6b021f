"""The picows listener of a tunnel: an interpreted shim in front of TunnelConnection.

picows calls a `WSListener` subclass (a Cython class); mypyc cannot compile a subclass of
it, so the listener only forwards each callback to the compiled TunnelConnection.
"""

from __future__ import annotations

from picows import WSFrame, WSListener, WSTransport

from tunnelgate.transport.tunnel import TunnelConnection


class TunnelListener(WSListener):
    __slots__ = ("connection",)

    def __init__(self, connection: TunnelConnection) -> None:
        self.connection = connection

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.connection.on_ws_connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.connection.on_ws_frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.connection.on_ws_disconnected(transport)

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()
