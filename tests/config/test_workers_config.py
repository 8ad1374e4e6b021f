"""--workers: `auto`, the shared namespace it needs, and each worker's own ports."""

from __future__ import annotations

import os

import pytest
from config_support import gateway

from tunnelgate.config import for_worker
from tunnelgate.config.gateway import usable_cores
from tunnelgate.errors import ConfigError

CLUSTER = {"redis": "redis://r", "cluster_secret": "s" * 32, "advertise": "127.0.0.1:7000"}


def test_one_worker_by_default_and_without_redis() -> None:
    assert gateway().workers == 1
    assert gateway({"workers": "1"}).workers == 1


def test_auto_is_the_usable_cores() -> None:
    cfg = gateway({"workers": "auto", **CLUSTER})
    assert cfg.workers == usable_cores() == len(os.sched_getaffinity(0))


def test_several_workers_need_the_shared_namespace() -> None:
    with pytest.raises(ConfigError) as info:
        gateway({"workers": "2"})
    assert str(info.value) == (
        "--workers: 2 processes share one namespace through --redis (with --cluster-secret "
        "and --advertise); give those, or --workers 1"
    )
    assert gateway({"workers": "2", **CLUSTER}).workers == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            {"https": "127.0.0.1:8443", "acme_email": "ops@example.com"},
            "--acme-email: not supported with --workers above 1 yet",
        ),
        (
            {"advertise": "127.0.0.1:65535"},
            "--workers: worker 2's --advertise port would be 65537, past 65535",
        ),
        (
            {"admin": "127.0.0.1:7001"},
            "--workers: worker 0's --admin address 127.0.0.1:7001 is another listener's "
            "address (worker i's is the given port + i)",
        ),
        (
            {"advertise": "127.0.0.1:8078"},
            "--workers: worker 2's --advertise address 127.0.0.1:8080 is another listener's "
            "address (worker i's is the given port + i)",
        ),
    ],
)
def test_each_workers_ports_must_be_free_of_the_others(
    argv: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        gateway({"workers": "3", **CLUSTER, **argv})
    assert str(info.value) == message


def test_worker_i_has_the_advertise_and_admin_ports_plus_i() -> None:
    cfg = gateway({"workers": "3", **CLUSTER, "admin": "127.0.0.1:9000"})
    third = for_worker(cfg, 2)
    assert (third.advertise, third.admin) == (("127.0.0.1", 7002), ("127.0.0.1", 9002))
    assert (third.http, third.workers, third.redis) == (cfg.http, 3, cfg.redis)
    assert for_worker(cfg, 0) == cfg
