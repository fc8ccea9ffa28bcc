"""`paglets doctor import` (cli.md section 10, check 4; the seed's "Diagnosing Import
Failures"): two real host processes, one of which has an application module on its
`PYTHONPATH` and one which lacks it. The failing host is named with its ImportError and
code version; the command exits 1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from paglets import Host
from paglets.cli.main import run
from support.processes import HostProcess, run_paglets

MODULE = """
from dataclasses import dataclass

from paglets import Paglet, PagletState


@dataclass
class ProbeState(PagletState):
    n: int = 0


class Probe(Paglet[ProbeState]):
    State = ProbeState
"""
PROBE = "doctor_probe_app:Probe"
PROBE_STATE = "doctor_probe_app:ProbeState"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "doctor_probe_app.py").write_text(MODULE)
    return folder


def one_line_failure(err: str, prefix: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith(prefix), lines
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: ")), lines
    return lines[0]


def test_the_host_that_lacks_the_module_is_named_with_its_import_error(
    host_process: Any, app_dir: Path, tmp_path: Path
) -> None:
    path = os.pathsep.join(p for p in (str(app_dir), os.environ.get("PYTHONPATH", "")) if p)
    alpha: HostProcess = host_process("alpha", env={"PYTHONPATH": path})
    beta: HostProcess = host_process("beta")
    home = tmp_path / "home"

    result = run_paglets(
        "doctor", "import", PROBE, "--entry", alpha.url, "--host", beta.url, home=home
    )
    assert result.returncode == 1, result.stderr
    line = one_line_failure(result.stderr, "paglets doctor import: ")
    assert line == f"paglets doctor import: 1 of 2 host(s) failed: beta cannot import {PROBE}"
    assert 'python -c "from doctor_probe_app import Probe; print(Probe)"' in result.stderr
    report = result.stdout
    alpha_part, beta_part = report.split(f"beta  {beta.url}")
    assert alpha_part.startswith(f"alpha  {alpha.url}  (code version test, python ")
    assert f"  ok    {PROBE}  <class 'doctor_probe_app.Probe'>  (paglet, state class " in alpha_part
    assert f"  ok    {PROBE_STATE}  <class 'doctor_probe_app.ProbeState'>  (state)" in alpha_part
    assert str(app_dir / "doctor_probe_app.py") in alpha_part
    assert "(code version test, python " in beta_part
    assert (
        f"  FAIL  {PROBE}  ClassImportError: cannot import {PROBE} on host 'beta' "
        "(code version test): ModuleNotFoundError: No module named 'doctor_probe_app'"
    ) in beta_part
    assert "sys.path head: " in beta_part

    as_json = run_paglets(
        "doctor", "import", PROBE, "--entry", alpha.url, "--host", beta.url, "--json", home=home
    )
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["alpha"]["ok"] is True
    assert [r["name"] for r in hosts["alpha"]["results"]] == [PROBE, PROBE_STATE]
    failed = hosts["beta"]["results"][0]
    assert (failed["ok"], failed["error_type"]) == (False, "ClassImportError")
    assert "No module named 'doctor_probe_app'" in failed["error"]
    assert hosts["beta"]["code_version"] == "test" and hosts["beta"]["sys_path_head"]

    # Only the host that has it: all good.
    fine = run_paglets("doctor", "import", PROBE, "--entry", alpha.url, home=home)
    assert (fine.returncode, fine.stderr) == (0, "")


def test_unreachable_hosts_and_bad_names(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    counter = "paglets.examples.counter:Counter"
    code = run(
        ["doctor", "import", counter, "--entry", host.address, "--host", "http://127.0.0.1:9"]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "  ok    paglets.examples.counter:Counter" in out
    assert "  FAIL  no paglets host at http://127.0.0.1:9" in out
    assert "http://127.0.0.1:9 could not be asked" in one_line_failure(err, "paglets doctor import")

    code = run(["doctor", "import", counter, "--entry", "http://127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert one_line_failure(err, "paglets doctor import: no paglets host at http://127.0.0.1:9")

    code = run(["doctor", "import", "not-a-class-name", "--entry", host.address])
    _, err = capsys.readouterr()
    assert code == 2 and "module:QualName" in one_line_failure(err, "paglets doctor import: ")

    # A name the host refuses to import before trying (a nested class) is a failure too.
    code = run(
        ["doctor", "import", "paglets.examples.counter:Counter.nope", "--entry", host.address]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "FAIL  paglets.examples.counter:Counter.nope" in out
