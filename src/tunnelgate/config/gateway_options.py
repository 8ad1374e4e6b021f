"""The gateway's option table: every option of `tunnelgate server` (SPEC), declared once.

Each entry states whether a reload may change it (`RELOAD`: credentials, policy, and the
timeouts and limits of connections accepted from then on) or only a restart (`RESTART`:
listeners, the domain, anything start-up builds once). Options this version cannot serve
yet are declared too, with `_todo`, so the user hears "not implemented in this version"
rather than "unknown option"; each moves to a real field when its feature lands.
"""

from __future__ import annotations

from typing import Any, Final

from tunnelgate import limits

from . import parsers as p  # short: the table below names a parser on every line
from .options import Option

RELOAD: Final = True
RESTART: Final = False


def _gw(
    key: str, parse: p.Parser, metavar: str | None, help: str, reload: bool, **kw: Any
) -> Option:
    field = "tokens" if key == "token" else key.replace("-", "_")
    return Option(key, field, parse, metavar, help, reload=reload, **kw)


def _todo(
    key: str, parse: p.Parser, metavar: str | None, help: str, reload: bool, **kw: Any
) -> Option:
    """An option SPEC lists that this version refuses (any value but `default`)."""
    return _gw(key, parse, metavar, help, reload, implemented=False, **kw)


GATEWAY_OPTIONS: Final[tuple[Option, ...]] = (
    # --- the gateway
    _gw("domain", p.domain, "D", "public hosts are <name>.D", RESTART),
    _gw("http", p.listen, "ADDR",
        "public HTTP listener: HOST:PORT, :PORT (all interfaces), PORT (loopback) or off",
        RESTART, unset="off"),
    _gw("https", p.listen, "ADDR", "public HTTPS listener, as --http", RESTART, unset="off"),
    # Certificates are credentials: rotating them is what a reload is for.
    _gw("tls-cert", p.string, "F",
        "PEM certificate chain for --https (a wildcard *.D certificate); none: a self-signed "
        "one for D and *.D is made once and kept in --state-dir", RELOAD, path=True),
    _gw("tls-key", p.string, "F", "PEM private key of --tls-cert", RELOAD, path=True),
    _gw("tcp-ports", p.port_range, "LO-HI", "ports that TCP tunnels may be given", RESTART,
        unset="off"),
    _gw("tcp-bind", p.host, "HOST", "address the TCP tunnel ports listen on", RESTART),
    _gw("token", p.tokens, "T", "an accepted token (repeatable)", RELOAD, repeatable=True),
    _gw("tokens-file", p.string, "F",
        "file of accepted tokens: one a line, the token or sha256:<its SHA-256 in hex>, "
        "# comments; read again on SIGHUP", RELOAD, path=True),
    _gw("jwt-secret", p.secret, "S",
        "accept HS256 JWTs signed with this secret (at least 32 bytes)", RELOAD),
    _gw("jwt-public-key", p.string, "F",
        "accept RS256/ES256/EdDSA JWTs checked with this key: a PEM public key or "
        "certificate, or a JWKS (JSON) file; the key's type decides the algorithm", RELOAD,
        path=True),
    # SPEC checks aud/iss "when configured": these configure them.
    _gw("jwt-audience", p.string, "AUD",
        "JWTs must name this audience in aud (unset: a JWT with an aud is refused)", RELOAD),
    _gw("jwt-issuer", p.string, "ISS", "JWTs must have been issued by this iss", RELOAD),
    _gw("controller", p.url("http", "https"), "URL",
        "ask this controller (POST URL/v1/authorize) to authorize each tunnel registration "
        "whose token no local check (--token, --jwt-*) accepts", RELOAD),
    # Policy, checked against the listeners each time a config is loaded.
    _gw("allow-anonymous", p.boolean, None,
        "allow tunnels without auth on a non-loopback listener (without it, anonymous "
        "tunnels are allowed only while every listener is on loopback)", RELOAD),
    _gw("reserved", p.names, "NAMES", "comma-separated subdomains no tunnel may take", RELOAD),
    _gw("admin", p.listen, "ADDR", "admin API and metrics listener, as --http", RESTART,
          unset="off"),
    _gw("admin-token", p.secret, "T", "required by the admin API off loopback", RELOAD),
    # Beyond SPEC (issue 10): a series per live tunnel is opt-in, so the label set stays
    # bounded by what the operator chose to expose; the collector is built at start-up.
    _gw("metrics-per-tunnel", p.boolean, None,
        "/metrics also gives requests and bytes per live tunnel (label tunnel=NAME, or the "
        "port of a TCP tunnel); a tunnel's series go when it does", RESTART),
    _gw("log-format", p.log_format, "text|json", "log lines as text, or one JSON object a line",
        RELOAD),
    _gw("redis", p.url("redis", "rediss", "unix"), "URL",
        "cluster mode: share routing with other gateways through this Redis (needs "
        "--cluster-secret and --advertise)", RESTART, unset="off"),
    _gw("cluster-secret", p.secret, "S",
        "secret of the internal link between gateways (at least 32 bytes)", RESTART),
    _gw("advertise", p.address, "ADDR",
        "HOST:PORT other gateways use to reach this one; the internal link listens there",
        RESTART),
    _gw("workers", p.workers, "N|auto",
        "processes sharing the listeners (SO_REUSEPORT) and one namespace (auto = the "
        "usable cores; N > 1 needs --redis): worker i's --advertise and --admin ports "
        "are the given ones + i", RESTART),
    _gw("state-dir", p.string, "DIR", "self-signed and ACME certificates, kept across restarts",
        RESTART, path=True, unset="the user's data dir"),
    _gw("acme-email", p.email, "E",
        "per-host certificates from an ACME CA (HTTP-01 on the HTTP listener) when no "
        "wildcard certificate is given", RESTART, unset="off"),
    _gw("acme-directory", p.url("https", "http"), "URL", "the ACME CA's directory URL",
        RESTART, unset="Let's Encrypt"),
    _gw("redirect-http", p.boolean, None,
        "plain-HTTP requests to tunnel hosts get 308 to https (/connect and ACME challenges "
        "excepted)", RELOAD),
    _gw("controller-timeout", p.seconds(True), "S",
        "seconds a controller call may take (then fail closed)", RELOAD),
    _gw("controller-cache-ttl", p.seconds(False), "S",
        "seconds a controller's allow is reused, 0 = ask every time", RELOAD),
    # --- timeouts and limits: each applies to connections accepted after a reload
    _gw("heartbeat-interval", p.seconds(True), "S", "ping period in seconds", RELOAD,
        group="limits"),
    _gw("heartbeat-timeout", p.seconds(True), "S",
        "a peer silent this many seconds is dead", RELOAD, group="limits"),
    _gw("idle-timeout", p.seconds(False), "S",
        "close a tunnel with no traffic for this many seconds, 0 = never", RELOAD, group="limits"),
    _gw("reconnect-grace", p.seconds(False), "S",
        "seconds a dropped tunnel's name or port waits for its owner", RELOAD, group="limits"),
    _gw("head-timeout", p.seconds(True), "S",
        "seconds a public client has to send a complete request head", RELOAD, group="limits"),
    _gw("response-timeout", p.seconds(True), "S",
        "seconds the local app has to start its response before 504", RELOAD, group="limits"),
    _gw("max-header-bytes", p.count, "N", "request heads larger than N bytes get 431",
        RELOAD, group="limits"),
    _gw("max-streams", p.count, "N", "concurrent streams per tunnel connection", RELOAD,
        group="limits"),
    _gw("max-tunnels-per-token", p.count, "N", "tunnels one token may hold at once", RELOAD,
        group="limits"),
    _gw("auth-fail-rate", p.count, "N",
        "failed authentications per minute allowed from one address", RELOAD, group="limits"),
    _gw("max-connections", p.count, "N",
        "public connections held at once; past it new ones are closed at once", RELOAD,
        unset=f"the open-file limit less a reserve of a tenth, at least "
              f"{limits.FD_RESERVE_MIN}", group="limits"),
    _gw("max-connections-per-address", p.count, "N",
        "public connections one address (IPv6: one /64) may hold at once", RELOAD, group="limits"),
    _gw("handshake-timeout", p.seconds(True), "S",
        "seconds a TLS ClientHello and handshake may take, counted from accept", RELOAD,
        group="limits"),
    _gw("drain-timeout", p.seconds(False), "S",
        "on SIGTERM: stop accepting, tell tunnel clients to reconnect, give in-flight "
        "requests and open connections this long, then cut them off and exit 0 (a second "
        "signal cuts off at once; 0 = at once)", RELOAD, group="limits"),
    _gw("grace-hold", p.seconds(False), "S",
        "seconds a request to a name held for its owner (in its reconnect grace) waits for "
        "the owner to come back, 0 = 502 at once", RELOAD, group="limits"),
)  # fmt: skip
