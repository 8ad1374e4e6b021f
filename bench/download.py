"""Bulk downloads: one big file, or several at once, with a time limit.

Each download is a thread with a blocking socket reading into one 1 MiB buffer (the GIL is
released while it waits in recv_into), so the downloader costs about what curl does. Over
HTTPS the socket is an `ssl.SSLSocket` (it verifies the certificate against the run's CA; the
handshake is done before the clock starts), whose recv_into returns one TLS record, at most
16 KiB, per call: a few thousand calls per 100 MiB, still small beside the decryption. A download
that is still going at the deadline stops there and counts what it got; the result then says
it was truncated (PageKite moves ~4 MB/s: 100 MiB would take half a minute).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Final

from .probe import Target

BUFFER: Final = 1024 * 1024
MAX_HEAD: Final = 64 * 1024
CONNECT_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True)
class DownloadResult:
    parallel: int
    bytes: int
    seconds: float
    mb_per_s: float  # 10^6 bytes per second, all downloads together
    truncated: bool  # the time limit cut at least one download short
    errors: int
    sha256: str | None = None  # of the first download's body, when asked for


class _Fetch:
    """One download on its own thread."""

    def __init__(self, target: Target, path: str, deadline: float, digest: bool) -> None:
        self.target = target
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {target.host_header}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.deadline = deadline
        self.hash = hashlib.sha256() if digest else None
        self.received = 0
        self.complete = False
        self.error: str | None = None

    def run(self, start: threading.Barrier) -> None:
        try:
            with self.target.connect(CONNECT_TIMEOUT) as sock:
                start.wait()
                sock.sendall(self.request)
                self._receive(sock)
        except (OSError, ValueError, threading.BrokenBarrierError) as exc:  # ssl.SSLError too
            self.error = f"{type(exc).__name__}: {exc}"

    def _receive(self, sock: socket.socket) -> None:
        head, body = self._read_head(sock)
        status, length = _parse_head(head)
        if status != 200:
            raise ValueError(f"status {status}")
        self._count(body)
        buffer = bytearray(BUFFER)
        view = memoryview(buffer)
        while self.received < length:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            try:
                n = sock.recv_into(buffer)
            except TimeoutError:
                return
            if n == 0:
                raise ValueError(f"connection closed after {self.received} of {length} bytes")
            self._count(view[:n])
        self.complete = True

    def _read_head(self, sock: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            sock.settimeout(max(0.001, self.deadline - time.monotonic()))
            chunk = sock.recv(MAX_HEAD)
            if not chunk or len(data) > MAX_HEAD:
                raise ValueError("no response head")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return head, body

    def _count(self, data: bytes | memoryview) -> None:
        self.received += len(data)
        if self.hash is not None:
            self.hash.update(data)


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise ValueError("no Content-Length")


def download(
    target: Target, path: str, *, parallel: int = 1, limit: float = 20.0, digest: bool = False
) -> DownloadResult:
    """`parallel` simultaneous GETs of `path`; throughput over the wall time of them all."""
    start = threading.Barrier(parallel + 1)
    deadline = time.monotonic() + limit
    fetches = [_Fetch(target, path, deadline, digest) for _ in range(parallel)]
    threads = [threading.Thread(target=f.run, args=(start,), daemon=True) for f in fetches]
    for thread in threads:
        thread.start()
    try:
        start.wait(CONNECT_TIMEOUT)
    except threading.BrokenBarrierError:
        pass  # a connection failed; its fetch says so
    began = time.monotonic()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + CONNECT_TIMEOUT)
    seconds = max(time.monotonic() - began, 1e-9)
    total = sum(f.received for f in fetches)
    first = fetches[0]
    return DownloadResult(
        parallel=parallel,
        bytes=total,
        seconds=round(seconds, 4),
        mb_per_s=round(total / seconds / 1e6, 1),
        truncated=any(f.error is None and not f.complete for f in fetches),
        errors=sum(f.error is not None for f in fetches),
        sha256=first.hash.hexdigest() if first.hash is not None and first.complete else None,
    )
