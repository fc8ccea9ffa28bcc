"""The re-exec command and environment of a graceful restart (network.md §5, step 5)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from paglets.tooling.restart import child_environment, reexec_command

ARGV = ["/venv/bin/paglets", "--debug", "host", "--name", "alpha", "--port", "8765"]


def test_without_uv_lock_the_host_runs_again_with_python(tmp_path: Path) -> None:
    assert reexec_command(ARGV, tmp_path) == [sys.executable, "-m", "paglets", *ARGV[1:]]
    assert reexec_command(ARGV, None)[:3] == [sys.executable, "-m", "paglets"]


def test_with_uv_lock_the_host_runs_again_through_uv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "uv.lock").write_text("version = 1\n")
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}")
    assert reexec_command(ARGV, tmp_path) == ["/opt/bin/uv", "run", "paglets", *ARGV[1:]]


def test_with_uv_lock_but_no_uv_python_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "uv.lock").write_text("version = 1\n")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert reexec_command(ARGV, tmp_path)[:3] == [sys.executable, "-m", "paglets"]


def test_the_key_goes_to_the_child_environment_only() -> None:
    base = {"PATH": "/bin"}
    env = child_environment("s3cret", None, base)
    assert env == {"PATH": "/bin", "PAGLETS_API_KEY": "s3cret"}
    assert base == {"PATH": "/bin"}  # this process's environment is not touched
    assert child_environment("s3cret", "MESH_KEY", base)["MESH_KEY"] == "s3cret"
    assert child_environment(None, "MESH_KEY", base) == base
