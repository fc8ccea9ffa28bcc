"""`paglets demo` end to end (cli.md §11): real host processes, a job group, the laptop
away and back; exit 0 when every job reported, and nothing left running."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import psutil

from support.processes import run_paglets


def test_demo_runs_four_jobs_and_stops_its_hosts(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    done = run_paglets(
        "demo", "--jobs", "4", "--json", "--dir", str(data), home=tmp_path, timeout=150
    )
    assert done.returncode == 0, done.stderr + done.stdout
    doc = json.loads(done.stdout)
    assert doc["done"] == doc["expected"] == 4 and doc["failed"] == 0
    assert doc["status"] == "COMPLETE" and doc["at_home"] is True
    assert {m["state"] for m in doc["members"]} == {"result"}
    assert all(r["host_name"] == "alpha" for m in doc["members"] for r in m["artifacts"])
    # Every host it started was stopped (by PID) before it exited.
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(data) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_demo_rejects_a_bad_host_count(tmp_path: Path) -> None:
    done = run_paglets("demo", "--hosts", "1", home=tmp_path, timeout=60)
    assert done.returncode == 2


def test_group_commands_on_the_kept_demo_mesh(tmp_path: Path) -> None:
    """`jobs groups`, `results --download --move`, `retry` and `submit` against the mesh
    `paglets demo --keep` leaves running (stopped here by PID)."""
    import os
    import signal

    data = tmp_path / "demo"
    done = run_paglets(
        "demo", "--jobs", "2", "--json", "--keep", "--dir", str(data), home=tmp_path, timeout=150
    )
    doc = json.loads(done.stdout)
    pids = [h["pid"] for h in doc.get("hosts", []) if h.get("pid")]
    try:
        assert done.returncode == 0, done.stderr
        env = {"PAGLETS_ENTRY": doc["hosts"][0]["url"]}
        key = doc["api_key"]
        group = doc["group_id"]

        listed = run_paglets("jobs", "groups", "--json", home=tmp_path, api_key=key, env=env)
        assert listed.returncode == 0, listed.stderr
        (row,) = json.loads(listed.stdout)["groups"]
        assert row["group_id"] == group and row["status"] == "COMPLETE" and row["done"] == 2

        out = tmp_path / "results"
        res = run_paglets(
            *("jobs", "results", group, "--download", str(out), "--move", "--json"),
            home=tmp_path,
            api_key=key,
            env=env,
        )
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout)
        assert len(got["downloaded"]) == 2 and not got["errors"]
        for member in got["members"]:
            (ref,) = member["artifacts"]
            assert (out / member["job_key"] / ref["name"]).stat().st_size == ref["size_bytes"]

        again = run_paglets("jobs", "retry", group, "--json", home=tmp_path, api_key=key, env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["recreated"] == []

        sub = run_paglets(
            *("jobs", "submit", "paglets.examples.demo_jobs:DemoJobPaglet"),
            "--state",
            '{"bundle": "x", "seconds": 0.1, "estimated_runtime_seconds": 1}',
            *("--count", "2", "--tag", "linux"),
            *("--mem", "16M", "--json", "--wait"),
            home=tmp_path,
            api_key=key,
            env=env,
            timeout=120,
        )
        assert sub.returncode == 0, sub.stderr + sub.stdout
        assert len(json.loads(sub.stdout)["jobs"]) == 2
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(30)
