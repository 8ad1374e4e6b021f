"""The ACME state on disk: the account key made once, certificates kept per host (private
files, whole writes), what is refused when loaded, the per-host lock."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from acme_helpers import keep_certificates

from tunnelgate.gateway.acme_store import AcmeStore, ca_folder_name

DIRECTORY = "https://acme.example.test/directory"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_account_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = AcmeStore(state, DIRECTORY)
    key = store.account_key()
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert AcmeStore(state, DIRECTORY).account_key() == key
    assert mode(store.root / "account.key") == 0o600
    for folder in (state, state / "acme", store.root):
        assert mode(folder) == 0o700, folder


def test_each_ca_has_its_own_folder() -> None:
    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    production = "https://acme-v02.api.letsencrypt.org/directory"
    assert ca_folder_name(staging) != ca_folder_name(production)
    assert ca_folder_name(production).startswith("acme-v02.api.letsencrypt.org-")


def test_a_saved_certificate_loads_back(tmp_path: Path, ca: trustme.CA) -> None:
    store = AcmeStore(tmp_path, DIRECTORY)
    fingerprints = keep_certificates(store, ca, ["app.example.test"], NOW)
    loaded = store.load("app.example.test", NOW)
    assert loaded is not None
    assert loaded.fingerprint == fingerprints["app.example.test"]
    assert mode(loaded.chain_path) == mode(loaded.key_path) == 0o600
    assert mode(loaded.chain_path.parent) == 0o700
    assert store.load("other.example.test", NOW) is None


def test_what_cannot_be_served_is_not_loaded(tmp_path: Path, ca: trustme.CA) -> None:
    store = AcmeStore(tmp_path, DIRECTORY)
    keep_certificates(store, ca, ["app.example.test", "torn.example.test"], NOW)
    app = store.load("app.example.test", NOW)
    assert app is not None
    expired = app.not_after + timedelta(seconds=1)
    assert store.load("app.example.test", expired) is None
    other_key = ca.issue_cert("x.example.test").private_key_pem.bytes()
    (store.root / "certs" / "torn.example.test" / "key.pem").write_bytes(other_key)
    assert store.load("torn.example.test", NOW) is None  # a crash between the two writes
    moved = store.root / "certs" / "moved.example.test"
    moved.mkdir()
    (moved / "cert.pem").write_bytes(app.chain_pem)
    (moved / "key.pem").write_bytes(app.key_pem)
    assert store.load("moved.example.test", NOW) is None  # not for this host


def test_recent_lists_the_latest_first_up_to_a_limit(tmp_path: Path, ca: trustme.CA) -> None:
    store = AcmeStore(tmp_path, DIRECTORY)
    keep_certificates(store, ca, ["a.example.test", "b.example.test", "c.example.test"], NOW)
    assert [kept.host for kept in store.recent(2, NOW)] == ["c.example.test", "b.example.test"]
    assert AcmeStore(tmp_path / "empty", DIRECTORY).recent(5, NOW) == []


def test_one_order_per_host_across_processes(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path, DIRECTORY)
    lock = store.try_lock("app.example.test")
    assert lock is not None
    assert AcmeStore(tmp_path, DIRECTORY).try_lock("app.example.test") is None
    other = store.try_lock("other.example.test")
    assert other is not None
    lock.release()
    again = store.try_lock("app.example.test")
    assert again is not None
    again.release()
    other.release()


@pytest.mark.parametrize("host", ["../escape", "a/b", "", "UPPER.example.test", ".."])
def test_a_host_that_is_not_a_name_is_a_bug(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        AcmeStore(tmp_path, DIRECTORY).load(host, NOW)
