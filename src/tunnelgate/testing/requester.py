"""One HTTP request from wherever this process runs (e.g. inside a test's network namespace,
which the test process itself cannot enter), its outcome printed as one JSON line:

    python -m tunnelgate.testing.requester --port 8080 --host web.localhost:8080 --path /

prints ``{"event": "response", "status": 502, "error": "tunnel_offline", "elapsed": 0.004}``
(``error``: the gateway's ``X-Tunnelgate-Error``, or null), or ``{"event": "failed",
"error": "...", "elapsed": ...}`` when no response came within ``--timeout``. ``elapsed`` is
in seconds from the connect to the end of the response, measured here (start-up excluded).

With ``--stream`` the body is read and dropped as it comes, for downloads of any size: first
``{"event": "head", "status": 200}``, then ``{"event": "ended", "bytes": N, "error": ...,
"elapsed": ...}`` when the connection ends (EOF, a reset, or ``--timeout`` with nothing read),
``elapsed`` counted from the head.

With ``--upload N`` it POSTs N bytes (zeros) and reads the response meanwhile: ``{"event":
"sending", "bytes": ...}`` once 1 MiB is out, then ``{"event": "ended", "status": ...,
"bytes": sent, "error": ..., "elapsed": ...}`` once a response head came or the connection
failed, ``elapsed`` counted from the request head.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

from tunnelgate.testing.http_client import (
    RawConnection,
    ResponseFormatError,
    build_request,
    http_request,
    open_connection,
)

_FAILURES = (OSError, TimeoutError, ResponseFormatError, asyncio.IncompleteReadError)
UPLOAD_BLOCK = 64 * 1024


def _say(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


async def _stream(args: argparse.Namespace) -> dict[str, object]:
    raw = build_request("GET", args.path, host=args.host)
    received, error, started = 0, None, None
    try:
        conn = await open_connection(args.port, host=args.address, timeout=args.timeout)
        async with conn:
            await conn.send(raw)
            head = await conn.read_head()
            started = time.monotonic()
            _say({"event": "head", "status": head.status})
            while piece := await conn.read_some():
                received += len(piece)
    except _FAILURES as exc:
        error = f"{type(exc).__name__}: {exc}"
    if started is None:
        return {"event": "failed", "error": error, "elapsed": 0.0}
    elapsed = time.monotonic() - started
    return {"event": "ended", "bytes": received, "error": error, "elapsed": elapsed}


async def _upload(args: argparse.Namespace) -> dict[str, object]:
    """POST ``--upload`` bytes to ``--path``, reading the response as it comes (a gateway may
    answer before the body is all sent)."""
    head = f"POST {args.path} HTTP/1.1\r\nHost: {args.host}\r\n"
    head += f"Content-Length: {args.upload}\r\n\r\n"
    sent, status, error, started = 0, None, None, None

    async def pump(conn: RawConnection) -> None:
        nonlocal sent
        block = bytes(UPLOAD_BLOCK)
        while sent < args.upload:
            piece = block[: min(UPLOAD_BLOCK, args.upload - sent)]
            await conn.send(piece)
            sent += len(piece)
            if sent >= UPLOAD_BLOCK * 16 and sent - len(piece) < UPLOAD_BLOCK * 16:
                _say({"event": "sending", "bytes": sent})

    try:
        conn = await open_connection(args.port, host=args.address, timeout=args.timeout)
        async with conn:
            await conn.send(head.encode("latin-1"))
            started = time.monotonic()
            pumping = asyncio.get_running_loop().create_task(pump(conn))
            try:
                status = (await conn.read_head(method="POST")).status
            finally:
                pumping.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_FAILURES):
                    await pumping
    except _FAILURES as exc:
        error = f"{type(exc).__name__}: {exc}"
    elapsed = 0.0 if started is None else time.monotonic() - started
    return {"event": "ended", "status": status, "bytes": sent, "error": error, "elapsed": elapsed}


async def _request(args: argparse.Namespace) -> dict[str, object]:
    raw = build_request("GET", args.path, host=args.host)
    started = time.monotonic()
    try:
        response = await http_request(args.port, raw, host=args.address, timeout=args.timeout)
    except _FAILURES as exc:
        error = f"{type(exc).__name__}: {exc}"
        return {"event": "failed", "error": error, "elapsed": time.monotonic() - started}
    return {
        "event": "response",
        "status": response.status,
        "error": response.header("X-Tunnelgate-Error"),
        "elapsed": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunnelgate.testing.requester")
    parser.add_argument("--address", default="127.0.0.1", help="where to connect")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", required=True, help="the Host header")
    parser.add_argument("--path", default="/")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for it all")
    parser.add_argument("--stream", action="store_true", help="read the body and drop it")
    parser.add_argument("--upload", type=int, default=0, help="POST this many bytes")
    args = parser.parse_args(argv)
    if args.upload:
        _say(asyncio.run(_upload(args)))
    else:
        _say(asyncio.run(_stream(args) if args.stream else _request(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
