"""The benchmark harness must not rot: a tiny quick run exits 0 and writes valid JSON.

No timing is asserted (targets are checked by `python -m bench`, not by the test suite).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quick_subset_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "a1,e3", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    files = list(out.glob("*.json"))
    assert len(files) == 1, files
    record = json.loads(files[0].read_text("utf-8"))

    assert record["mode"] == "quick"
    assert record["groups"] == ["a1", "e3"]
    assert record["errors"] == []
    assert record["machine"]["cpu_count"] >= 1
    assert record["machine"]["memory_total"] > 0
    assert "commit" in record["git"]
    keys = {r["key"] for r in record["results"]}
    assert keys == {"a1", "e3.deactivate", "e3.activate"}
    for result in record["results"]:
        assert result["unit"] == "ms"
        assert result["n"] > 0
        assert result["median"] > 0
        assert result["p95"] >= result["median"]
        assert result["target"]["op"] == "<="
        assert isinstance(result["met"], bool)
    # The table names every figure with a verdict.
    for key in keys:
        assert key in done.stdout
    assert "PASS" in done.stdout or "MISS" in done.stdout


def test_quick_network_subset_runs_against_host_processes(tmp_path: Path) -> None:
    """b1 and d1 start real `paglets host` processes; the run must leave none behind."""
    out = tmp_path / "results"
    scratch = tmp_path / "tmp"  # the hosts' temporary dirs land here, so we can find them
    scratch.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["TMPDIR"] = str(scratch)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "b1,d1", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    files = list(out.glob("*.json"))
    assert len(files) == 1, files
    record = json.loads(files[0].read_text("utf-8"))
    assert record["groups"] == ["b1", "d1"]
    assert record["errors"] == []
    by_key = {r["key"]: r for r in record["results"]}
    assert set(by_key) == {"b1", "d1"}
    for result in by_key.values():
        assert result["unit"] == "ms"
        assert result["n"] > 0
        assert 0 < result["median"] <= result["p95"]
        assert isinstance(result["met"], bool)
    assert by_key["d1"]["extra"]["hops"] == by_key["d1"]["n"]
    for key in by_key:
        assert key in done.stdout
    # Every host process was killed and its temporary tree removed.
    leftovers = [
        proc.info["pid"]
        for proc in psutil.process_iter(["pid", "cmdline"])
        if str(scratch) in " ".join(proc.info["cmdline"] or [])
    ]
    assert leftovers == [], f"host processes left running: {leftovers}"
    assert list(scratch.iterdir()) == []


def test_unknown_group_is_refused_clearly(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "zz9", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "zz9" in done.stderr and "a1" in done.stderr
    assert not list(tmp_path.glob("*.json"))
