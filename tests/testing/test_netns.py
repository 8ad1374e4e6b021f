"""The network namespace helper: what it says where it cannot work, and that it cleans up."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tunnelgate.testing.netns import NetNamespace, NetnsError, netns_problem


def test_not_root_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert netns_problem() == "network namespaces need root (CAP_NET_ADMIN)"


def test_missing_nft_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda cmd: None if cmd == "nft" else cmd)
    assert netns_problem() == "'nft' not found (apt-get install nftables)"


def _namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(netns_problem() is not None, reason="no network namespaces here")
def test_namespace_is_deleted_even_when_the_body_fails() -> None:
    ns = NetNamespace()
    failed = False
    try:
        with ns:
            assert ns.name in _namespaces()
            assert "lo" in ns.run("ip", "-brief", "link", "show", "up")
            ns.nft("this is not an nftables script")
    except NetnsError as exc:
        failed = "nft -f -" in str(exc)
    assert failed
    assert ns.name not in _namespaces()
    ns.delete()  # idempotent
