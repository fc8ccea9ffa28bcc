"""`paglets host --launch-config/--sync-launch-config/--yes` (cli.md §1.1, api.md §16.4)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from support.processes import run_paglets
from support.waiting import wait_until

TESTS = Path(__file__).resolve().parents[1]
PYTHONPATH = {"PYTHONPATH": str(TESTS)}


def _get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def test_first_start_writes_the_bundled_config(host_process: Any, tmp_path: Path) -> None:
    alpha = host_process("alpha")
    written = tmp_path / "home" / ".paglets" / "launch.toml"
    assert written.exists()
    assert 'demo_config_id = "paglets-default"' in written.read_text()
    wait_until(lambda: f"wrote the bundled default to {written}" in alpha.stdout)


def test_a_launch_config_runs_its_resident_services(host_process: Any, tmp_path: Path) -> None:
    config = tmp_path / "services.toml"
    config.write_text(
        '[[resident_services]]\nclass = "support.service_models:EagerEcho"\nagent_id = "eager"\n'
    )
    alpha = host_process("alpha", args=["--launch-config", str(config)], env=PYTHONPATH)
    (record,) = _get(f"{alpha.url}/services?name=echo")["services"]
    assert record["proxy"]["agent_id"] == "eager"
    (status,) = [
        s for s in _get(f"{alpha.url}/services/resident")["services"] if s["agent_id"] == "eager"
    ]
    assert status["live"] is True and status["lifecycle"] == "eager"
    assert not (tmp_path / "home" / ".paglets" / "launch.toml").exists()  # not the default


def test_a_bad_launch_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[resident_services]]\nclass = "a:B"\nlifecycle = "sometimes"\n')
    result = run_paglets(
        "host", "--name", "alpha", "--port", "0", "--persistence-dir", str(tmp_path / "a"),
        "--launch-config", str(config), home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2
    assert f"{config}: [[resident_services]] #1, key 'lifecycle'" in lines[0]


def test_an_outdated_copy_is_kept_without_a_terminal(host_process: Any, tmp_path: Path) -> None:
    default = tmp_path / "home" / ".paglets" / "launch.toml"
    default.parent.mkdir(parents=True)
    default.write_text('[launch]\ndemo_config_id = "paglets-default"\ndemo_config_version = 0\n')
    alpha = host_process("alpha")
    wait_until(lambda: "warning: launch config" in alpha.stdout and "--yes" in alpha.stdout)
    assert "demo_config_version = 0" in default.read_text()
    alpha.terminate()
    host_process("beta", args=["--yes"])
    assert "demo_config_version = 0" not in default.read_text()
    assert default.with_name("launch.toml.old").exists()
