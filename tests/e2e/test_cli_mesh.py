"""`paglets mesh hosts` against real `paglets host` processes joined with --peer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from support.processes import HostProcess, run_paglets
from support.waiting import wait_until


def test_mesh_hosts_lists_every_member(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = host_process("alpha")
    host_process("beta", args=["--peer", alpha.url])
    home = tmp_path / "home"

    def both() -> dict[str, object] | None:
        done = run_paglets("mesh", "hosts", "--entry", alpha.url, "--json", home=home)
        if done.returncode != 0:
            return None
        doc = json.loads(done.stdout)
        names = {m["name"]: m for m in doc["hosts"]}
        return (
            names
            if {"alpha", "beta"} <= set(names) and names["beta"]["status"] == "alive"
            else None
        )

    members = wait_until(both, timeout=30)
    assert members["alpha"]["self"] is True  # type: ignore[index]
    table = run_paglets("mesh", "members", "--entry", alpha.url, home=home)
    assert table.returncode == 0
    assert table.stdout.startswith("name") and "beta" in table.stdout and "alive" in table.stdout


def test_a_bad_status_filter_is_a_usage_error(tmp_path: Path) -> None:
    done = run_paglets("mesh", "hosts", "--status", "sleepy", home=tmp_path)
    assert done.returncode == 2
    assert "--status" in done.stderr and "Traceback" not in done.stderr
