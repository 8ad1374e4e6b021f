"""Let's Encrypt's test CA, pebble (Debian's `pebble` package), on loopback for the tests.

    with run_pebble(tmp_path) as pebble:
        pebble.directory        https://127.0.0.1:<port>/dir
        pebble.ca_bundle        trusts pebble's own TLS (its directory and management API)
        pebble.http_port        where pebble's validator fetches HTTP-01 answers
        pebble.issuing_root()   the root its certificates chain to (PEM, from the
                                management API; made anew at every start)
        pebble.stop(); pebble.start()   down and up again on the same ports

Two processes: `pebble-challtestsrv` as the DNS server, answering every A query with
127.0.0.1 (and no AAAA), so any host name's HTTP-01 check comes to 127.0.0.1:http_port;
and `pebble -dnsserver` on it, with PEBBLE_VA_NOSLEEP=1 (validate at once, not after up
to 15 s) and PEBBLE_WFE_NONCEREJECT=0 (no deliberately rejected nonces). Its TLS
certificate comes from a trustme CA. Every port is a free loopback port. The binaries
come from apt: `make test` installs them (bench/bootstrap.py, the `tests` set).
"""

from __future__ import annotations

import json
import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trustme

from tunnelgate.testing.proc import Proc
from tunnelgate.testing.processes import free_port

START_TIMEOUT: Final = 10.0  # seconds for each process to say it listens
READY_LINE: Final = "ACME directory available at"
DNS_READY_LINE: Final = "Starting management server"


class PebbleMissing(RuntimeError):
    """pebble is not installed: `make test` installs it (python3 -m bench.bootstrap tests)."""


@dataclass
class Pebble:
    workdir: Path
    ca_bundle: Path
    config: Path
    dns_port: int
    acme_port: int
    management_port: int
    http_port: int
    _procs: list[Proc] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def running(self) -> bool:
        return bool(self._procs)

    def start(self) -> None:
        """Start the DNS server and pebble, once each says it listens."""
        if self._procs:
            return
        try:
            dns = Proc([_binary("pebble-challtestsrv"), *self._dns_args()])
            self._procs.append(dns)
            dns.wait_for_line(DNS_READY_LINE, START_TIMEOUT)
            env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
            argv = [_binary("pebble"), "-config", str(self.config)]
            ca = Proc([*argv, "-dnsserver", f"127.0.0.1:{self.dns_port}"], env=env)
            self._procs.append(ca)
            ca.wait_for_line(READY_LINE, START_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        while self._procs:
            self._procs.pop().terminate()

    def issuing_root(self) -> bytes:
        """Pebble's root certificate (PEM): what its issued chains verify against."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(url, context=context, timeout=START_TIMEOUT) as answer:
            data: bytes = answer.read()
            return data

    def _dns_args(self) -> list[str]:
        return [
            "-dns01",
            f"127.0.0.1:{self.dns_port}",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            f"127.0.0.1:{free_port()}",
        ]


@contextmanager
def run_pebble(workdir: Path, *, start: bool = True) -> Iterator[Pebble]:
    """A pebble of its own in `workdir` (started unless `start` is False), stopped after."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_bundle, cert, key = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_bundle))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    pebble = Pebble(
        workdir=workdir,
        ca_bundle=ca_bundle,
        config=workdir / "pebble-config.json",
        dns_port=free_port(),
        acme_port=free_port(),
        management_port=free_port(),
        http_port=free_port(),
    )
    settings = {
        "listenAddress": f"127.0.0.1:{pebble.acme_port}",
        "managementListenAddress": f"127.0.0.1:{pebble.management_port}",
        "certificate": str(cert),
        "privateKey": str(key),
        "httpPort": pebble.http_port,
        "tlsPort": free_port(),  # TLS-ALPN-01: not used
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    pebble.config.write_text(json.dumps({"pebble": settings}))
    try:
        if start:
            pebble.start()
        yield pebble
    finally:
        pebble.stop()


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PebbleMissing(f"{name} is not installed: run `python3 -m bench.bootstrap tests`")
    return path
