"""A scripted ACME server on loopback (plain HTTP, a thread): what pebble never says, such
as 429 `rateLimited` with a Retry-After, a 5xx, an answer that is not JSON, or none."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the request until the server stops


def problem(status: int, code: str, detail: str, **headers: str) -> Answer:
    body = {"type": f"urn:ietf:params:acme:error:{code}", "detail": detail, "status": status}
    return Answer(
        status,
        json.dumps(body).encode(),
        {"Content-Type": "application/problem+json", **headers},
    )


@dataclass
class FakeAcme:
    port: int
    answers: dict[str, Answer]  # POST path -> answer
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def directory(self) -> str:
        return f"http://127.0.0.1:{self.port}/dir"

    def posts(self, path: str) -> int:
        return self.requests.count(("POST", path))

    def directory_json(self) -> bytes:
        base = f"http://127.0.0.1:{self.port}"
        return json.dumps(
            {
                "newNonce": f"{base}/nonce",
                "newAccount": f"{base}/new-account",
                "newOrder": f"{base}/new-order",
                "revokeCert": f"{base}/revoke",
                "keyChange": f"{base}/key-change",
                "meta": {"termsOfService": f"{base}/terms"},
            }
        ).encode()


@contextmanager
def fake_acme(answers: dict[str, Answer]) -> Iterator[FakeAcme]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    fake = FakeAcme(server.server_address[1], answers)
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-acme", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet

    @property
    def fake(self) -> FakeAcme:
        fake: FakeAcme = self.server.fake  # type: ignore[attr-defined]
        return fake

    def do_GET(self) -> None:
        self.fake.requests.append(("GET", self.path))
        answer = self.fake.answers.get(self.path)
        if answer is None and self.path == "/dir":
            answer = Answer(200, self.fake.directory_json(), {"Content-Type": "application/json"})
        self._send(answer or Answer(404))

    def do_HEAD(self) -> None:
        self.fake.requests.append(("HEAD", self.path))
        self._send(Answer(200), body=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.fake.requests.append(("POST", self.path))
        answer = self.fake.answers.get(self.path, Answer(404))
        if answer.hang:
            self.fake.released.wait(10)
        self._send(answer)

    def _send(self, answer: Answer, *, body: bool = True) -> None:
        self.send_response(answer.status)
        self.send_header("Replay-Nonce", "bm9uY2U")  # base64url, as acme checks
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body and answer.body:
            self.wfile.write(answer.body)
