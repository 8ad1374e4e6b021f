"""The self-signed default: made once, kept private, reused, and made anew only when it
cannot serve (another domain, expired or about to, damaged)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tunnelgate.errors import CertificateError
from tunnelgate.gateway.selfsigned import default_state_dir, ensure_self_signed

NOW = datetime.now(UTC)
DOMAIN = "example.test"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_made_once_then_reused_with_the_same_fingerprint(tmp_path: Path) -> None:
    first = ensure_self_signed(tmp_path, DOMAIN, NOW)
    again = ensure_self_signed(tmp_path, DOMAIN, NOW + timedelta(days=1))  # a restart
    assert first.made
    assert not again.made
    assert again.why == "reused"
    assert again.file.info.fingerprint == first.file.info.fingerprint
    info = first.file.info
    assert info.chain_path == tmp_path / "self-signed" / "cert.pem"
    assert info.names == (DOMAIN, f"*.{DOMAIN}")
    assert info.warnings == ()
    certificate = x509.load_pem_x509_certificate(first.file.chain_pem)
    assert certificate.issuer == certificate.subject
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    assert info.not_after == (NOW + timedelta(days=365)).replace(microsecond=0)
    assert info.not_before == (NOW - timedelta(hours=1)).replace(microsecond=0)


def test_files_are_owner_only_and_written_whole(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ensure_self_signed(state, DOMAIN, NOW)
    folder = state / "self-signed"
    assert mode(state) == mode(folder) == 0o700
    for name in ("cert.pem", "key.pem"):
        assert mode(folder / name) == 0o600
    assert sorted(os.listdir(folder)) == [".lock", "cert.pem", "key.pem"]  # no temporaries


def test_loosened_modes_are_tightened_on_reuse(tmp_path: Path) -> None:
    ensure_self_signed(tmp_path, DOMAIN, NOW)
    key = tmp_path / "self-signed" / "key.pem"
    key.chmod(0o644)
    tmp_path.chmod(0o755)
    assert not ensure_self_signed(tmp_path, DOMAIN, NOW).made
    assert mode(key) == 0o600
    assert mode(tmp_path) == 0o700


@pytest.mark.parametrize(
    ("domain", "days_later", "why"),
    [
        ("other.test", 0, "it was made for example.test, *.example.test"),
        (DOMAIN, 366, "expired on"),
        (DOMAIN, 352, "it expires on"),  # 13 days left
    ],
    ids=["another-domain", "expired", "expiring"],
)
def test_made_anew_for_another_domain_or_near_its_end(
    tmp_path: Path, domain: str, days_later: int, why: str
) -> None:
    first = ensure_self_signed(tmp_path, DOMAIN, NOW)
    now = NOW + timedelta(days=days_later)
    renewed = ensure_self_signed(tmp_path, domain, now)
    assert renewed.made
    assert why in renewed.why
    assert renewed.file.info.fingerprint != first.file.info.fingerprint
    assert renewed.file.info.names == (domain, f"*.{domain}")
    assert not ensure_self_signed(tmp_path, domain, now).made  # and kept from then on


@pytest.mark.parametrize("damaged", ["cert.pem", "key.pem"])
def test_a_damaged_file_is_made_anew(tmp_path: Path, damaged: str) -> None:
    first = ensure_self_signed(tmp_path, DOMAIN, NOW)
    (tmp_path / "self-signed" / damaged).write_text("truncated")
    renewed = ensure_self_signed(tmp_path, DOMAIN, NOW)
    assert renewed.made
    assert renewed.file.info.fingerprint != first.file.info.fingerprint


def test_a_state_dir_that_cannot_be_made_is_a_certificate_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CertificateError, match=rf"^--state-dir {blocker}"):
        ensure_self_signed(blocker / "state", DOMAIN, NOW)


def test_default_state_dir_follows_xdg() -> None:
    home = Path.home()
    assert default_state_dir({}) == home / ".local/share/tunnelgate"
    assert default_state_dir({"XDG_DATA_HOME": "/srv/data"}) == Path("/srv/data/tunnelgate")
    # A relative XDG_DATA_HOME is invalid and ignored (XDG Base Directory spec).
    assert default_state_dir({"XDG_DATA_HOME": "data"}) == home / ".local/share/tunnelgate"
