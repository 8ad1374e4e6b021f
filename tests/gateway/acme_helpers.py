"""Helpers of the ACME tests: an HTTP-01 responder (what the edge will route to the
manager), waiting for a condition, fast bounds, and a pre-filled state directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from tunnelgate.gateway.acme_schedule import AcmeBounds
from tunnelgate.gateway.acme_store import AcmeStore

DOMAIN = "example.test"
EMAIL = "ops@example.test"
CHALLENGE_PATH = "/.well-known/acme-challenge/"
# Fast enough for a test, slow enough to count: back-off in tenths of a second.
FAST = AcmeBounds(
    request_timeout=2.0,
    order_timeout=8.0,
    poll_interval=0.05,
    max_poll_interval=0.2,
    retry_initial=0.2,
    retry_max=1.0,
    unavailable_initial=0.1,
    unavailable_max=0.4,
    rate_limit_hold=5.0,
)


@dataclass
class Responder:
    """What the HTTP-01 responder was asked: (Host, path, status) per request."""

    port: int
    hits: list[tuple[str, str, int]] = field(default_factory=list)


@asynccontextmanager
async def http01_responder(
    port: int, answer: Callable[[str], bytes | None]
) -> AsyncIterator[Responder]:
    """A small real HTTP/1.1 server on 127.0.0.1:`port` answering
    GET /.well-known/acme-challenge/<token> with `answer(token)` (404 when None)."""
    responder = Responder(port)
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            host = next((line[5:].strip() for line in lines if line.lower()[:5] == "host:"), "")
            body = answer(path[len(CHALLENGE_PATH) :]) if path.startswith(CHALLENGE_PATH) else None
            status = 200 if body is not None else 404
            responder.hits.append((host, path, status))
            reason = b"OK" if body is not None else b"Not Found"
            payload = body or b""
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, reason, len(payload), payload)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass  # a client that went away or sent nonsense: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    try:
        yield responder
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await server.wait_closed()


class Clock:
    """A wall clock a test can move forward (certificate validity, renewal times)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def keep_certificates(
    store: AcmeStore, ca: trustme.CA, hosts: list[str], now: datetime
) -> dict[str, str]:
    """Put a trustme certificate for each host in the store, as if the CA had issued it
    (the last one most recently); their fingerprints."""
    found = {}
    for host in hosts:
        leaf = ca.issue_cert(host)
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        stored = store.save(host, chain, leaf.private_key_pem.bytes(), now)
        found[host] = stored.fingerprint
        _touch_later(stored.chain_path, len(found))
    return found


def _touch_later(path: Path, step: int) -> None:
    """Order the files by issue time even when they were written in the same tick."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + step))
