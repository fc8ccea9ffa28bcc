"""SingleFileTransferPaglet between two in-process hosts on loopback, each with its own
directories (the 'source' lives beside alpha, the destination beside beta)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from paglets import Host
from paglets.patterns.file_mobility import (
    FileTransferMode,
    FileTransferRequest,
    FileTransferResult,
    SingleFileTransferPaglet,
)
from paglets.patterns.tasks import TaskClient, TaskStatus
from support.waiting import wait_until


@pytest.fixture
def hosts(make_host: Callable[..., Host]) -> tuple[Host, Host]:
    alpha = make_host("alpha")
    beta = make_host("beta", peers=[alpha.address])
    wait_until(lambda: "beta" in {h.name for h in alpha.list_hosts(online_only=True)})
    return alpha, beta


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "on-alpha" / "data.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(300_000))
    return path


def transfer(alpha: Host) -> TaskClient[FileTransferRequest, FileTransferResult]:
    return TaskClient.for_paglet(alpha.create(SingleFileTransferPaglet), SingleFileTransferPaglet)


def test_copy_to_the_other_host(hosts: tuple[Host, Host], source: Path, tmp_path: Path) -> None:
    alpha, beta = hosts
    client = transfer(alpha)
    destination = tmp_path / "on-beta" / "incoming" / "copy.bin"
    snapshot = client.start(
        FileTransferRequest(
            source_path=str(source), target="beta", destination_path=str(destination)
        )
    )
    assert snapshot.status is TaskStatus.COMPLETED, snapshot.error
    assert destination.read_bytes() == source.read_bytes()
    assert source.exists()  # COPY keeps the source
    result = snapshot.result
    assert isinstance(result, FileTransferResult)
    assert result.destination.host_name == "beta" and result.destination.path == str(destination)
    assert result.source.host_name == "alpha" and result.source.path == str(source)
    assert result.size_bytes == 300_000 and result.size_text == "293.0 KiB"
    assert len(result.sha256) == 64 and not result.dry_run
    # The task moved: the client follows it to beta, where its state says where the file is.
    assert client.proxy.host_url == beta.address
    state = beta.get_state(client.proxy.agent_id)
    assert state.arrival.host_name == "beta" and state.plan.file_name == "data.bin"
    assert not [p for p in destination.parent.iterdir() if p.name != "copy.bin"]  # no temp


def test_move_into_a_directory_deletes_the_source_after_commit(
    hosts: tuple[Host, Host], source: Path, tmp_path: Path
) -> None:
    alpha, beta = hosts
    content = source.read_bytes()
    inbox = tmp_path / "on-beta" / "inbox"
    inbox.mkdir(parents=True)
    snapshot = transfer(alpha).start(
        FileTransferRequest(
            source_path=str(source),
            target=beta.address,
            destination_path=str(inbox),  # an existing directory: keeps the source's name
            mode=FileTransferMode.MOVE,
        )
    )
    assert snapshot.status is TaskStatus.COMPLETED, snapshot.error
    assert (inbox / "data.bin").read_bytes() == content
    wait_until(lambda: not source.exists())


def test_dry_run_plans_and_completes_without_moving(
    hosts: tuple[Host, Host], source: Path, tmp_path: Path
) -> None:
    alpha, _ = hosts
    client = transfer(alpha)
    snapshot = client.start(
        FileTransferRequest(
            source_path=str(source),
            target="beta",
            destination_path=str(tmp_path / "on-beta") + "/",
            dry_run=True,
        )
    )
    assert snapshot.status is TaskStatus.COMPLETED
    assert snapshot.result.dry_run
    assert snapshot.result.destination.path == str(tmp_path / "on-beta" / "data.bin")
    assert snapshot.result.destination.host_name == "beta"
    assert not (tmp_path / "on-beta").exists()
    assert client.proxy.host_url == alpha.address
    assert client.proxy.agent_id in alpha.registry.live
    assert alpha.registered_files_for(client.proxy.agent_id) == []


def test_refusal_to_overwrite_fails_on_arrival_and_keeps_the_source(
    hosts: tuple[Host, Host], source: Path, tmp_path: Path
) -> None:
    alpha, beta = hosts
    destination = tmp_path / "on-beta" / "data.bin"
    destination.parent.mkdir()
    destination.write_text("precious")
    client = transfer(alpha)
    snapshot = client.start(
        FileTransferRequest(
            source_path=str(source),
            target="beta",
            destination_path=str(destination),
            mode=FileTransferMode.MOVE,
        )
    )
    assert snapshot.status is TaskStatus.FAILED and snapshot.done
    assert "already exists" in snapshot.error and "overwrite=True" in snapshot.error
    assert destination.read_text() == "precious"
    # The move aborted: the paglet stayed on alpha, and so did the (MOVE mode) source.
    assert snapshot.host_name == "alpha" and client.proxy.host_url == alpha.address
    agent_id = client.proxy.agent_id
    assert agent_id in alpha.registry.live and agent_id not in beta.registry.live
    assert source.exists()
    assert alpha.registered_files_for(agent_id) == []  # it will not ride along later
    assert sorted(p.name for p in destination.parent.iterdir()) == ["data.bin"]


def test_overwrite_replaces_the_destination(
    hosts: tuple[Host, Host], source: Path, tmp_path: Path
) -> None:
    alpha, _ = hosts
    destination = tmp_path / "on-beta" / "data.bin"
    destination.parent.mkdir()
    destination.write_text("old")
    snapshot = transfer(alpha).start(
        FileTransferRequest(
            source_path=str(source),
            target="beta",
            destination_path=str(destination),
            overwrite=True,
        )
    )
    assert snapshot.status is TaskStatus.COMPLETED, snapshot.error
    assert destination.read_bytes() == source.read_bytes()


def test_missing_destination_directory_without_create_parents_fails(
    hosts: tuple[Host, Host], source: Path, tmp_path: Path
) -> None:
    alpha, _ = hosts
    client = transfer(alpha)
    snapshot = client.start(
        FileTransferRequest(
            source_path=str(source),
            target="beta",
            destination_path=str(tmp_path / "nowhere" / "x.bin"),
            create_parents=False,
        )
    )
    assert snapshot.status is TaskStatus.FAILED
    assert "does not exist" in snapshot.error and "create_parents=True" in snapshot.error
    assert client.proxy.host_url == alpha.address


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "nowhere"}, "unknown target host 'nowhere'"),
        ({"source_path": "/does/not/exist.bin"}, "does not exist on host 'alpha'"),
        ({"destination_path": "relative/x.bin"}, "must be absolute"),
    ],
)
def test_bad_requests_fail_while_planning(
    hosts: tuple[Host, Host],
    source: Path,
    tmp_path: Path,
    change: dict[str, str],
    message: str,
) -> None:
    alpha, _ = hosts
    request = {
        "source_path": str(source),
        "target": "beta",
        "destination_path": str(tmp_path / "x.bin"),
        **change,
    }
    snapshot = transfer(alpha).start(FileTransferRequest(**request))
    assert snapshot.status is TaskStatus.FAILED and message in snapshot.error
