"""Shared fixtures: every host gets a temporary persistence dir and is stopped after use."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paglets import Host


@pytest.fixture(autouse=True)
def _no_real_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing a test starts may write to the real home directory.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PAGLETS_API_KEY", raising=False)


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[Callable[..., Host]]:
    """Start hosts on loopback with their own persistence dirs; all are stopped at the end.

    `make_host("alpha")` starts one; `make_host("alpha", persistence_dir=same_dir)` restarts
    on an existing dir. Hosts start without the built-in system services unless given
    `system_services=True`.
    """
    hosts: list[Host] = []

    def factory(name: str = "alpha", **kwargs: object) -> Host:
        kwargs.setdefault("persistence_dir", tmp_path / name)
        kwargs.setdefault("mesh_version", "test")
        # The built-in system services are paglets with events of their own; a test that
        # counts its paglets or events asks for them with system_services=True.
        kwargs.setdefault("system_services", False)
        host = Host(name, **kwargs).start_background()  # type: ignore[arg-type]
        hosts.append(host)
        return host

    yield factory
    for host in hosts:
        if not host.stopped:
            host.stop()


@pytest.fixture
def host(make_host: Callable[..., Host]) -> Host:
    return make_host("alpha")


os.environ.setdefault("PAGLETS_MESH_VERSION", "test")


@pytest.fixture
def host_process(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start real `paglets host` processes (tests/support/processes.py): `host_process("alpha")`
    returns a started `HostProcess`; all are killed by PID at the end of the test."""
    from support.processes import host_processes

    with host_processes(tmp_path) as factory:
        yield factory
