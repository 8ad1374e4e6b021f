"""``make tls-scan``: testssl.sh against a gateway's ``--https`` listener on loopback.

    python -m bench.tls_scan [--results DIR] [--workdir DIR] [--timeout S]

Starts ``tunnelgate server --https 127.0.0.1:PORT`` as shipped (no ``--tls-cert``: the
self-signed ECDSA P-256 default, made in a fresh ``--state-dir``) and runs testssl.sh
(Debian's ``testssl.sh`` package; ``make tls-scan`` installs it) against it with SNI
``localhost``: protocols, cipher categories, forward secrecy and groups, the server's
preferences and defaults (extensions, session resumption, certificate), HTTP headers,
known vulnerabilities, every cipher per protocol, implementation bugs (GREASE, sizes) and
client simulations. Then, on a second gateway serving an RSA certificate from a test CA
(trustme), only the ciphers per protocol: the TLS 1.2 suite list depends on the key type.

Writes ``tls-scan.json`` (every finding of both scans, with the versions of testssl.sh,
OpenSSL and tunnelgate) and ``tls-scan.md`` (what was flagged first, then the rest) to the
results directory; testssl.sh's own text output stays in the work directory. docs/tls.md
explains the findings. Bounded: each scan is stopped after ``--timeout`` seconds, and every
process started is stopped by PID on the way out. Exit status 0 when both scans completed
(findings are reported, not failed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .procs import ROOT, BenchError, Interrupted, Processes, free_port, raise_on_signals
from .run import software
from .systems import DOMAIN, start_gateway

RESULTS: Final = ROOT / "bench" / "results"
WORKDIR: Final = ROOT / "bench" / ".work" / "tls-scan"
TIMEOUT: Final = 300.0  # seconds per scan (the full one takes ~70 s on the 2-core machine)
SOCKET_TIMEOUT: Final = 5  # seconds testssl.sh waits for a connect or an openssl call
FULL: Final = ("-p", "-s", "-f", "-P", "-S", "-h", "-U", "-c", "-E", "-g")
CIPHERS_ONLY: Final = ("-E",)
# testssl.sh's severities, worst first; OK and INFO are not flagged.
SEVERITIES: Final = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "OK", "INFO", "DEBUG")
FLAGGED: Final = frozenset(("CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN"))


@dataclass(frozen=True, slots=True)
class Scan:
    name: str
    certificate: str
    options: tuple[str, ...]


SCANS: Final = (
    Scan("self-signed", "the gateway's self-signed default (ECDSA P-256)", FULL),
    Scan("rsa", "an RSA 2048 certificate from a test CA (trustme)", CIPHERS_ONLY),
)


def testssl() -> str:
    found = shutil.which("testssl") or shutil.which("testssl.sh")
    if found is None:
        raise BenchError("testssl.sh is not installed (make tls-scan installs it with apt)")
    return found


def testssl_version(path: str) -> str | None:
    """ "testssl.sh 3.0.8" (from its banner, which is coloured whatever it is told)."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    plain = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    found = re.search(r"testssl(?:\.sh)?\s+(\d[\w.+~-]*)", plain)
    return f"testssl.sh {found.group(1)}" if found else None


def _rsa_certificate(folder: Path) -> list[str]:
    import trustme  # the dev extra

    rsa = trustme.KeyType.RSA  # 2048 bits; trustme's default is ECDSA
    leaf = trustme.CA(key_type=rsa).issue_cert(DOMAIN, f"*.{DOMAIN}", key_type=rsa)
    chain, key = folder / "rsa-chain.pem", folder / "rsa-key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.touch(mode=0o600)
    leaf.private_key_pem.write_to_path(str(key))
    return ["--tls-cert", str(chain), "--tls-key", str(key)]


def run_scan(scan: Scan, procs: Processes, workdir: Path, timeout: float) -> dict[str, Any]:
    """One gateway, one testssl.sh run against it; its findings (the flat JSON's objects)."""
    folder = workdir / scan.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    certificate = _rsa_certificate(folder) if scan.name == "rsa" else []
    port = 0

    def https() -> list[str]:
        nonlocal port
        port = free_port()
        return ["--https", f"127.0.0.1:{port}", "--state-dir", str(folder / "state"),
                *certificate]  # fmt: skip

    gateway, _ = start_gateway(procs, f"gateway-{scan.name}", https=https)
    findings_file = folder / "testssl.json"
    argv = [
        testssl(), "--quiet", "--color", "0", "--warnings", "batch", "--ip", "127.0.0.1",
        "--connect-timeout", str(SOCKET_TIMEOUT), "--openssl-timeout", str(SOCKET_TIMEOUT),
        "--jsonfile", str(findings_file), *scan.options, f"{DOMAIN}:{port}",
    ]  # fmt: skip
    started = time.monotonic()
    log = folder / "testssl.txt"
    try:
        with log.open("w") as out:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{scan.name}: testssl.sh did not finish within {timeout:g} s") from exc
    finally:
        procs.stop(gateway)
    try:
        findings = json.loads(findings_file.read_text())
    except (OSError, ValueError) as exc:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        raise BenchError(f"{scan.name}: no findings from testssl.sh: {exc}\n{tail}") from exc
    return {
        "name": scan.name,
        "certificate": scan.certificate,
        "options": list(scan.options),
        "exit_status": done.returncode,  # testssl.sh: 0, or the count of some failures
        "seconds": round(time.monotonic() - started, 1),
        "text_output": str(log.relative_to(ROOT)) if log.is_relative_to(ROOT) else str(log),
        "findings": [_finding(f) for f in findings if isinstance(f, Mapping)],
    }


def _finding(raw: Mapping[str, Any]) -> dict[str, str]:
    kept = {key: str(raw.get(key, "")) for key in ("id", "severity", "finding")}
    for extra in ("cve", "cwe"):
        if raw.get(extra):
            kept[extra] = str(raw[extra])
    return kept


# --- the report ------------------------------------------------------------------
def flagged(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, str]]]:
    """(scan name, finding) for every finding at LOW or worse, or a warning, worst first."""
    found = [
        (scan["name"], f)
        for scan in result.get("scans", [])
        for f in scan.get("findings", [])
        if f.get("severity") in FLAGGED
    ]
    return sorted(found, key=lambda item: SEVERITIES.index(item[1]["severity"]))


MAX_CELL: Final = 160  # characters of a finding shown in the report (the PEM is longer)


def _cell(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > MAX_CELL:
        flat = flat[: MAX_CELL - 1] + "…"
    return flat.replace("|", "\\|")


def markdown(result: Mapping[str, Any]) -> str:
    versions = result.get("versions", {})
    out = [
        "# TLS scan of the gateway's --https listener",
        "",
        f"- date: {result.get('date')}; tunnelgate {versions.get('commit')}; "
        f"{versions.get('testssl')}; {versions.get('openssl')}",
        "- target: `tunnelgate server --https 127.0.0.1:PORT` on loopback, SNI `localhost` "
        "(the domain), testssl.sh from Debian; `make tls-scan` reproduces it",
        "- what each finding means for tunnelgate, and what is left to the operator: docs/tls.md",
        "",
    ]
    for scan in result.get("scans", []):
        out.append(
            f"- scan `{scan['name']}`: {scan['certificate']}; testssl.sh "
            f"{' '.join(scan['options'])}; {len(scan['findings'])} findings in "
            f"{scan['seconds']} s"
        )
    out += ["", "## Flagged (LOW or worse, and warnings)", ""]
    rows = flagged(result)
    if rows:
        out += ["| scan | severity | id | finding |", "|---|---|---|---|"]
        out += [f"| {name} | {f['severity']} | {f['id']} | {_cell(f['finding'])} |"
                for name, f in rows]  # fmt: skip
    else:
        out.append("Nothing.")
    for scan in result.get("scans", []):
        out += ["", f"## Every finding: {scan['name']}", "", "| severity | id | finding |",
                "|---|---|---|"]  # fmt: skip
        out += [f"| {f['severity']} | {f['id']} | {_cell(f['finding'])} |"
                for f in scan["findings"]]  # fmt: skip
    for error in result.get("errors", []):
        out += ["", f"error: {error}"]
    return "\n".join(out) + "\n"


def _openssl_version() -> str | None:
    try:
        done = subprocess.run(["openssl", "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_scan", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per scan")
    args = parser.parse_args(argv)
    raise_on_signals()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {},
        "scans": [],
        "errors": [],
    }
    workdir = args.workdir.resolve()
    try:
        path = testssl()
        result["versions"] = {
            "testssl": testssl_version(path),
            "openssl": _openssl_version(),
            "commit": software().get("commit"),
        }
        with Processes(workdir) as procs:
            for scan in SCANS:
                print(f"tls-scan: {scan.name} ({' '.join(scan.options)})", file=sys.stderr)
                result["scans"].append(run_scan(scan, procs, workdir, args.timeout))
    except BenchError as exc:
        result["errors"].append(str(exc))
    except (KeyboardInterrupt, Interrupted):
        print("tls-scan: interrupted; every process started was stopped", file=sys.stderr)
        return 130
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "tls-scan.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.results / "tls-scan.md").write_text(report)
    print(report.split("\n## Every finding")[0])
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
