"""`paglets artifacts` (cli.md §6) against a real host: `typer.testing.CliRunner` on the
group's `app`, plus the root `run()` for the one-line error format and exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from paglets import Host
from paglets.cli.artifacts import app
from paglets.cli.errors import CliError
from paglets.cli.main import run

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    path = tmp_path / "files"
    path.mkdir()
    return path


def cli(host: Host, *args: str) -> Result:
    return runner.invoke(app, [*args, "--entry", host.address])


def test_put_list_info_get_rm(host: Host, files: Path) -> None:
    src = files / "weights.bin"
    src.write_bytes(b"\x00\x01" * 5000)
    put = cli(host, "put", str(src), "--owner", "trainer-1", "--expires-in", "1h")
    assert put.exit_code == 0, put.output
    artifact_id = put.stdout.strip()
    assert len(artifact_id) == 32
    ref = host.artifacts.get(artifact_id)
    assert (ref.name, ref.owner_agent_id) == ("weights.bin", "trainer-1")
    assert time.time() + 3000 < ref.expires_at < time.time() + 3700

    listed = cli(host, "list")
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["artifact", "host", "size", "owner", "name", "expires"]
    assert row.split()[:6] == [artifact_id[:12], "alpha", "9.8", "KiB", "trainer-1", "weights.bin"]
    assert artifact_id not in listed.stdout and artifact_id in cli(host, "list", "--long").stdout
    as_json = json.loads(cli(host, "list", "--json", "--owner", "trainer-1").stdout)
    assert [a["artifact_id"] for a in as_json["artifacts"]] == [artifact_id]

    info = cli(host, "info", artifact_id[:8])
    assert info.exit_code == 0
    assert f"artifact_id     {artifact_id}" in info.stdout
    assert (
        json.loads(cli(host, "info", artifact_id[:12], "--json").stdout)["artifact"]["sha256"]
        == ref.sha256
    )

    out = files / "copy.bin"
    got = cli(host, "get", artifact_id[:12], str(out))
    assert (got.exit_code, got.stdout.strip()) == (0, str(out))
    assert out.read_bytes() == src.read_bytes()
    again = cli(host, "get", artifact_id[:12], str(out))
    assert isinstance(again.exception, CliError) and again.exception.code == 2
    assert "--force" in (again.exception.hint or "")
    assert cli(host, "get", artifact_id[:12], str(out), "--force").exit_code == 0

    refused = cli(host, "rm", artifact_id[:8])  # not a terminal, no --force
    assert isinstance(refused.exception, CliError) and refused.exception.code == 2
    assert host.artifacts.list() == [ref]
    removed = cli(host, "rm", artifact_id[:8], "-f")
    assert (removed.exit_code, removed.stdout.strip()) == (0, f"Deleted {artifact_id}")

    empty = cli(host, "list")
    assert (empty.exit_code, empty.stdout.strip()) == (1, "No artifacts.")
    assert json.loads(cli(host, "list", "--json").stdout) == {"artifacts": []}


def test_get_into_the_current_directory_and_move(
    host: Host, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = host.artifacts.put_bytes(b"result", name="run-42/result.json")
    monkeypatch.chdir(files)
    got = cli(host, "get", ref.artifact_id[:8], "--move", "--json")
    assert got.exit_code == 0, got.output
    doc = json.loads(got.stdout)
    assert doc["path"] == str(files / "result.json") and doc["moved"] is True
    assert (files / "result.json").read_bytes() == b"result"
    assert host.artifacts.list() == []


def test_bad_ids_and_unreachable_entry(host: Host) -> None:
    missing = cli(host, "info", "0123456789ab")
    assert isinstance(missing.exception, CliError) and missing.exception.code == 1
    bad = cli(host, "info", "xyz")
    assert isinstance(bad.exception, CliError) and bad.exception.code == 2
    failed_json = cli(host, "info", "0123456789ab", "--json")
    assert json.loads(failed_json.stdout)["error"]["code"] == "artifact-not-found"
    nobody = runner.invoke(app, ["list", "--entry", "http://127.0.0.1:9", "--timeout", "2s"])
    assert isinstance(nobody.exception, CliError) and nobody.exception.code == 2
    assert "no paglets host at http://127.0.0.1:9" in nobody.exception.message


def test_errors_are_one_line_through_the_root(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["artifacts", "info", "0123456789ab", "--entry", host.address])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err[0].startswith("paglets artifacts info: no artifact '0123456789ab'")
    assert len([line for line in err if not line.startswith("hint:")]) == 1
    code = run(["artifacts", "put", "/no/such/file", "--entry", host.address])
    assert code == 2
    assert capsys.readouterr().err.startswith("paglets artifacts put: /no/such/file is not a file")
