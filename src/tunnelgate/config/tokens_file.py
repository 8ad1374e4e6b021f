"""`--tokens-file`: accepted tokens, one a line, each either the token itself or its SHA-256.

    # comments and blank lines are skipped; a trailing "# ..." is a comment too
    s3cret-token-for-ci
    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

A `sha256:` line is `printf %s TOKEN | sha256sum` (64 hex digits, either case): the token
itself need not be on the gateway's disk at all. Both kinds are kept as their digest (a
token's stand-in in gateway/auth.py), so the file's form of a token does not change who
owns its tunnels. The gateway reads the file at start-up (a bad line stops it) and again
on SIGHUP (a bad line keeps the set it had: gateway/app.py).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from tunnelgate.errors import ConfigError

from .parsers import Invalid, secret

HASH_PREFIX: Final = "sha256:"
_HEX_DIGEST: Final = re.compile(r"[0-9a-fA-F]{64}")


def token_digest(token: str) -> str:
    """The SHA-256 of `token` in lower-case hex: what the gateway keeps of it."""
    return hashlib.sha256(token.encode()).hexdigest()


def read_tokens_file(path: str) -> tuple[str, ...]:
    """The digests of the tokens in the file at `path`, in file order, each once.

    Raises ConfigError naming the file and the line (never echoing a token)."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tokens-file: cannot read {path!r}: {exc}") from None
    digests: list[str] = []
    for number, line in enumerate(lines, 1):
        parts = line.split(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        where = f"--tokens-file: {path!r} line {number}"
        if len(parts) == 2 and not parts[1].startswith("#"):
            raise ConfigError(f"{where}: one token a line")
        digests.append(_digest_of_line(parts[0], where))
    return tuple(dict.fromkeys(digests))


def _digest_of_line(entry: str, where: str) -> str:
    if entry.startswith(HASH_PREFIX):
        digest = entry[len(HASH_PREFIX) :]
        if not _HEX_DIGEST.fullmatch(digest):
            raise ConfigError(
                f"{where}: {HASH_PREFIX} must be followed by the token's SHA-256, 64 hex "
                f"digits (got {len(digest)} characters): printf %s TOKEN | sha256sum"
            )
        return digest.lower()
    try:
        return token_digest(secret(entry))
    except Invalid as exc:
        raise ConfigError(f"{where}: token {exc}") from None
