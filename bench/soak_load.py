"""The soak's public side: N keep-alive connections, each a paced loop of checked requests.

Connection i binds to source address ``sources[i % len(sources)]`` (127.0.0.x, so the
per-address cap is not what is measured) and talks to tunnel ``i % tunnels`` through the
gateway. It sends a request, reads the whole answer, checks it (:mod:`bench.soak_verdict`
says what counts as what), waits a random think time (exponential, so the whole is a Poisson
stream at ``rate`` requests a second), and goes on, on the same connection while the gateway
keeps it alive; otherwise it opens a new one. A connection the gateway closes while it is
idle (a drain) is noticed at once, as any HTTP client's pool does, and is not a failure: the
next request, a few seconds later, opens a new one.

Request mix (each connection has its own seeded generator): 30 % GET without a body, 50 %
POST with a Content-Length, 20 % POST chunked; body sizes each way: 73 % up to 4 KiB, 25 %
4-64 KiB, 2 % 1-2 MiB; 30 % of the answers chunked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from dataclasses import dataclass
from typing import Final

from tunnelgate.testing.http_client import MAX_HEAD, RawConnection, ResponseFormatError
from tunnelgate.testing.local_app import expected_bytes_sha256, stream_blocks

from .soak_verdict import Tally

KiB: Final = 1024
MiB: Final = 1024 * KiB
ANSWER_TIMEOUT: Final = 120.0  # seconds for a head (or the next body piece): more is lost
CONNECT_TIMEOUT: Final = 10.0
THINK_MAX: Final = 60.0  # seconds; under the gateway's 75 s keep-alive idle time
RECONNECT_PAUSE: Final = (0.2, 1.0)  # seconds after a failed connect, a random point between
REOPEN_PAUSE: Final = (0.2, 5.0)  # seconds before reopening a connection the gateway closed
SEND_TIMEOUT: Final = 120.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    port: int
    hosts: tuple[str, ...]  # the tunnels' Host values
    sources: tuple[str, ...]
    connections: int
    rate: float  # requests a second over all connections
    ramp: float  # seconds over which the connections start
    started: float  # time.monotonic() of the run's t = 0
    ends: float  # seconds after `started`: no request starts after it
    seed: int


def body_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.02:
        return rng.randint(1 * MiB, 2 * MiB)
    if r < 0.27:
        return rng.randint(4 * KiB, 64 * KiB)
    return rng.randint(0, 4 * KiB)


@dataclass(frozen=True, slots=True)
class SoakRequest:
    ident: int
    method: str
    chunked: bool
    qlen: int
    qseed: int
    rlen: int
    rseed: int
    rchunked: bool

    @classmethod
    def draw(cls, ident: int, rng: random.Random) -> SoakRequest:
        kind = rng.random()
        method, chunked = ("GET", False) if kind < 0.3 else ("POST", kind >= 0.8)
        qlen = 0 if method == "GET" else body_size(rng)
        return cls(
            ident,
            method,
            chunked,
            qlen,
            rng.getrandbits(48),
            body_size(rng),
            rng.getrandbits(48),
            rng.random() < 0.3,
        )

    def head(self, host: str) -> bytes:
        target = (
            f"/soak?id={self.ident}&qlen={self.qlen}&qseed={self.qseed}"
            f"&rlen={self.rlen}&rseed={self.rseed}&rchunked={int(self.rchunked)}"
        )
        lines = [f"{self.method} {target} HTTP/1.1", f"Host: {host}"]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        elif self.method == "POST":
            lines.append(f"Content-Length: {self.qlen}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_request(conn: RawConnection, req: SoakRequest, host: str) -> None:
    """The head, then the body block by block, each drained (backpressure, bounded)."""
    conn.writer.write(req.head(host))
    for block in stream_blocks(req.qlen, req.qseed):
        if req.chunked:
            conn.writer.writelines([b"%x\r\n" % len(block), block, b"\r\n"])
        else:
            conn.writer.write(block)
        async with asyncio.timeout(SEND_TIMEOUT):
            await conn.writer.drain()
    if req.chunked:
        conn.writer.write(b"0\r\n\r\n")
    async with asyncio.timeout(SEND_TIMEOUT):
        await conn.writer.drain()


class Connection:
    """One public keep-alive connection's life, reopened as needed, until the plan ends."""

    def __init__(self, index: int, plan: LoadPlan, tally: Tally) -> None:
        self.index = index
        self.plan = plan
        self.tally = tally
        self.tunnel = index % len(plan.hosts)
        self.host = plan.hosts[self.tunnel]
        self.source = plan.sources[index % len(plan.sources)]
        self.rng = random.Random(plan.seed * 1_000_003 + index)
        self.conn: RawConnection | None = None
        self.sent = 0

    def now(self) -> float:
        return time.monotonic() - self.plan.started

    async def run(self) -> None:
        try:
            await asyncio.sleep(self.rng.uniform(0, self.plan.ramp))  # pacing: a staggered start
            while self.now() < self.plan.ends:
                if await self.ensure_open():
                    await self.one_request()
                    think = self.rng.expovariate(self.plan.rate / self.plan.connections)
                else:
                    think = self.rng.uniform(*RECONNECT_PAUSE)
                await self.idle(min(think, THINK_MAX, max(0.0, self.plan.ends - self.now())))
        finally:
            await self.close()

    async def idle(self, seconds: float) -> None:
        """Think for `seconds`, watching the connection: if the gateway closes it meanwhile (a
        drain), the think is cut to a short random pause, so that the next request opens a new
        one soon and the gateway holds about N connections throughout, not fewer until each
        one's next request. (A new connection left idle would meet the head timeout.)"""
        conn = self.conn
        deadline = time.monotonic() + seconds
        if conn is None:
            await asyncio.sleep(seconds)  # pacing
            return
        try:
            async with asyncio.timeout(seconds):
                await conn.reader.read(1)  # b"": closed; a byte: unasked for, drop it too
        except TimeoutError:
            return
        except OSError:
            pass
        await self.close()
        left = max(0.0, deadline - time.monotonic())
        await asyncio.sleep(min(left, self.rng.uniform(*REOPEN_PAUSE)))  # pacing

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.aclose()

    async def ensure_open(self) -> bool:
        """A usable connection: the current one unless the gateway closed it meanwhile, else
        a new one. A connect that fails is a request refused (recorded)."""
        conn = self.conn
        if conn is not None and not (
            conn.reader.at_eof() or conn.reader.exception() or conn.writer.is_closing()
        ):
            return True
        await self.close()
        started = self.now()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.plan.port, limit=MAX_HEAD, local_addr=(self.source, 0)
                )
        except ConnectionRefusedError:
            self.tally.failed("connect_refused", started, self.now(), self.tunnel)
            return False
        except TimeoutError:
            self.tally.failed("connect_timeout", started, self.now(), self.tunnel)
            return False
        except OSError:
            self.tally.failed("connect_reset", started, self.now(), self.tunnel)
            return False
        self.conn = RawConnection(reader, writer, ANSWER_TIMEOUT)
        return True

    async def one_request(self) -> None:
        assert self.conn is not None
        conn = self.conn
        self.sent += 1
        req = SoakRequest.draw(self.index * 1_000_000 + self.sent, self.rng)
        started = self.now()
        sending = asyncio.create_task(send_request(conn, req, self.host))
        reusable = False
        try:
            reusable = await self.read_answer(conn, req, started)
        finally:
            if not sending.done():
                sending.cancel()  # answered (or failed) before the body went: drop the rest
                reusable = False
            with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
                await sending
            if sending.cancelled() or sending.exception() is not None:
                reusable = False
            if not reusable:
                await self.close()

    async def read_answer(self, conn: RawConnection, req: SoakRequest, started: float) -> bool:
        """Read and judge the answer; whether the connection may carry another request."""

        def failed(kind: str) -> bool:
            self.tally.failed(kind, started, self.now(), self.tunnel, req.ident)
            return False

        try:
            head = await conn.read_head(method=req.method)
        except TimeoutError:
            return failed("timeout")
        except asyncio.IncompleteReadError:
            return failed("closed_before_answer")
        except OSError:
            return failed("reset")
        except ResponseFormatError as exc:
            self.tally.corrupt(f"request {req.ident}: bad head: {exc}")
            return False
        digest, length = hashlib.sha256(), 0
        try:
            async for piece in conn.iter_body(head):
                digest.update(piece)
                length += len(piece)
        except TimeoutError:
            return failed("stalled")
        except (asyncio.IncompleteReadError, OSError):
            return failed("cut_off")
        except ResponseFormatError as exc:
            if "missing" in str(exc):
                return failed("cut_off")
            self.tally.corrupt(f"request {req.ident}: bad body framing: {exc}")
            return False
        keep = (head.header("Connection") or "").lower() != "close" and head.framing != "close"
        code = head.header("X-Tunnelgate-Error")
        if code is not None:
            self.tally.refused_by_gateway(code, started, self.now(), self.tunnel)
            return keep
        problem = self.check(head.status, head.header("X-Soak-Id"), req, length, digest.hexdigest())
        if problem:
            self.tally.corrupt(
                f"request {req.ident} ({req.method} {req.qlen} B up, {req.rlen} B down): {problem}"
            )
            return False
        self.tally.answered(req.qlen, req.rlen)
        return keep

    @staticmethod
    def check(status: int, ident: str | None, req: SoakRequest, length: int, digest: str) -> str:
        """What is wrong with an answer that claims to be the app's, or ""."""
        if status == 422:
            return "the app got a damaged request body"
        if status != 200:
            return f"status {status} without X-Tunnelgate-Error"
        if ident != str(req.ident):
            return f"the answer to request {ident}"
        if length != req.rlen:
            return f"{length} body bytes, expected {req.rlen}"
        if digest != expected_bytes_sha256(req.rlen, req.rseed):
            return "body digest differs"
        return ""


async def run_load(plan: LoadPlan, tally: Tally) -> None:
    """Every connection's loop, to the end of the plan (and its last answers)."""
    async with asyncio.TaskGroup() as group:
        for index in range(plan.connections):
            group.create_task(Connection(index, plan, tally).run())
