"""Paglets upload, download and delete artifacts on their host and on other hosts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from paglets import Host, HostClient, Message, PagletProxy
from support import move_models as mm


def test_upload_to_another_host_and_download_into_the_work_dir(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    source = tmp_path / "result.bin"
    source.write_bytes(b"x" * 100_000)
    courier = alpha.create(mm.Courier)
    ref = courier.send(Message("upload", {"path": str(source), "host_url": beta.address}))
    assert ref["host_url"] == beta.address and ref["owner_agent_id"] == courier.agent_id
    assert ref["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    landed = Path(courier.send(Message("download", {"ref": ref, "target": "copy.bin"})))
    assert landed == alpha.work_dir_for(courier.agent_id) / "copy.bin"
    assert landed.read_bytes() == source.read_bytes()
    assert courier.send(Message("delete", {"ref": ref})) is True
    assert beta.artifacts.list() == []


def test_disposing_the_owner_schedules_its_artifacts_for_deletion(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    alpha = make_host("alpha")
    source = tmp_path / "a.txt"
    source.write_text("hello")
    courier = alpha.create(mm.Courier)
    ref = courier.send(Message("upload", {"path": str(source)}))
    courier.dispose()
    (kept,) = alpha.artifacts.list()
    assert kept.artifact_id == ref["artifact_id"]
    assert kept.expires_at > 0  # expires after the grace period, not at once


def test_send_artifact_carries_a_file_to_a_paglet_on_another_host(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    beta = make_host("beta")
    receiver = beta.create(mm.Courier)
    proxy = PagletProxy(beta.address, receiver.agent_id, HostClient(in_process=False))  # over HTTP
    report = tmp_path / "report.txt"
    report.write_text("42 results")
    saved = proxy.send_artifact(
        Message("download", {"target": "got.txt"}), report, arg_name="ref", move=True
    )
    assert Path(saved).read_text() == "42 results"
    assert not report.exists()  # move=True: deleted once delivered
    (stored,) = beta.artifacts.list()
    assert stored.owner_agent_id == receiver.agent_id
