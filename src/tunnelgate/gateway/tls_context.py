"""The public listener's server-side `ssl.SSLContext`: Mozilla's "intermediate" profile.

Mozilla Server Side TLS guidelines 6.0 (ssl-config.mozilla.org/guidelines/6.0.json,
`configurations.intermediate`), as applied here:

    versions        TLS 1.2 and TLS 1.3 only
    TLS 1.2 suites  ECDHE with AES-GCM or ChaCha20-Poly1305 (no DHE since 6.0)
    TLS 1.3 suites  TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
                    TLS_CHACHA20_POLY1305_SHA256: OpenSSL's defaults, which Python
                    cannot change (tests/gateway/test_tls_context.py checks they are these)
    groups          X25519MLKEM768 where OpenSSL has it (3.5+), X25519, P-256, P-384
    cipher order    the client's (`server_preferred_order: false`): Python sets
                    OP_CIPHER_SERVER_PREFERENCE on every context, so it is cleared

and beyond the profile: ALPN `http/1.1` only (h2 comes with its own issue), no TLS
compression (Python's default, CRIME), no renegotiation, and session resumption left
on as Python leaves it: stateless tickets (OP_NO_TICKET unset; two TLS 1.3 tickets per
handshake) and OpenSSL's server session cache.

Python 3.11 has no API for a list of key-exchange groups (`set_ecdh_curve` sets one),
so `_set_groups` calls OpenSSL's SSL_CTX_set1_groups_list through ctypes on the
context's SSL_CTX, in the libssl Python's own `_ssl` module is linked with; where that
cannot be done safely the context keeps OpenSSL's default groups, which add only
X448, P-521 and (TLS 1.3) finite-field groups, and says so once in the log.
"""

from __future__ import annotations

import _ssl
import ctypes
import functools
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunnelgate.errors import CertificateError
from tunnelgate.logs import EventLog

log = EventLog("tunnelgate.gateway.tls")

ALPN_PROTOCOLS = ("http/1.1",)
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
# The first list names the post-quantum hybrid of guidelines 6.0; OpenSSL before 3.5
# refuses a list with a name it does not know, so the second is tried next.
GROUP_LISTS = ("X25519MLKEM768:X25519:P-256:P-384", "X25519:P-256:P-384")

_SSL_CTRL_SET_GROUPS_LIST = 92  # ssl.h: SSL_CTX_set1_groups_list() is this SSL_CTX_ctrl


def build_server_context(
    chain_pem: bytes, key_pem: bytes, *, chain_path: Path, key_path: Path
) -> ssl.SSLContext:
    """A server context serving this chain and key (already checked by certfile.py).

    The paths only name the files in an error; OpenSSL is given the bytes that were
    checked, so a file replaced in between cannot slip in unchecked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # not create_default_context:
    # that one would also honour SSLKEYLOGFILE, writing session keys wherever it says
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    _set_groups(context)
    try:
        with _readable(chain_pem, chain_path) as chain, _readable(key_pem, key_path) as key:
            context.load_cert_chain(chain, key, password=_no_password)
    except ssl.SSLError as exc:
        raise CertificateError(
            f"{chain_path} and {key_path}: OpenSSL refused them: {exc.reason or exc}"
        ) from exc
    except OSError as exc:
        raise CertificateError(f"{chain_path}: cannot be read: {exc.strerror or exc}") from exc
    return context


def _no_password() -> bytes:
    # An encrypted key is refused before this (certfile.py); never prompt on a terminal.
    raise CertificateError("the private key is encrypted")


@contextmanager
def _readable(data: bytes, path: Path) -> Iterator[str]:
    """A path OpenSSL can open that holds `data`: an anonymous memory file on Linux (the
    key never touches a disk), elsewhere the file itself, which OpenSSL then reads again
    (a replacement in between is caught by its own key check)."""
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        yield str(path)
        return
    fd = os.memfd_create("tunnelgate-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _set_groups(context: ssl.SSLContext) -> None:
    libssl = _libssl()
    if libssl is None:
        return
    # CPython's context object is PyObject_HEAD then `SSL_CTX *ctx` (3.11 to 3.14); the
    # options read back through the pointer prove it is the SSL_CTX before it is changed.
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ssl_ctx or libssl.SSL_CTX_get_options(ssl_ctx) != context.options:
        _log_default_groups("this Python's SSLContext is not laid out as expected")
        return
    for groups in GROUP_LISTS:
        if libssl.SSL_CTX_ctrl(ssl_ctx, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode()) == 1:
            return
    _log_default_groups("OpenSSL accepted none of " + " or ".join(GROUP_LISTS))


@functools.cache
def _libssl() -> ctypes.CDLL | None:
    """The libssl Python's `_ssl` module is linked with (looked up once), or None."""
    module_file = getattr(_ssl, "__file__", None)
    if module_file is None:
        _log_default_groups("Python's _ssl module is built in: its libssl cannot be found")
        return None
    try:
        libssl = ctypes.CDLL(module_file)  # dlsym searches the libraries it links too
        ctrl, get_options = libssl.SSL_CTX_ctrl, libssl.SSL_CTX_get_options
    except (OSError, AttributeError) as exc:
        _log_default_groups(f"libssl cannot be called: {exc}")
        return None
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ctrl.restype = ctypes.c_long
    get_options.argtypes = [ctypes.c_void_p]
    get_options.restype = ctypes.c_uint64
    return libssl


@functools.cache  # once per reason, not at every reload
def _log_default_groups(reason: str) -> None:
    log.warning("tls_default_groups", reason=reason, openssl=ssl.OPENSSL_VERSION)
