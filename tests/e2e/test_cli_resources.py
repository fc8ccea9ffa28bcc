"""`paglets mesh summary`, `paglets agents restart` and `paglets agents resolve` (cli.md §2,
§3) as a user runs them: real `paglets` processes against real hosts.

`resolve` needs a transfer whose other host is gone for good: the other host is a real
`paglets host` that SIGKILLs itself at a chosen step of the move (`PAGLETS_FAULT`)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from paglets import Host, Message
from paglets.cli.main import run
from paglets.core.errors import PagletCrashedError, PagletError
from paglets.remote.client import HostClient
from paglets.remote.transfer import TransferTicket
from support.isolation_models import Worker
from support.processes import HostProcess, run_paglets
from support.waiting import wait_until

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- mesh summary ---------------------------------------------------------------------------


def test_mesh_summary_shows_every_member_with_its_resources(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = host_process("alpha")
    host_process("beta", args=["--peer", alpha.url, "--tag", "gpu"])
    home = tmp_path / "home"

    def both() -> dict[str, Any] | None:
        done = run_paglets("mesh", "summary", "--entry", alpha.url, "--json", home=home)
        if done.returncode != 0:
            return None
        rows = {h["name"]: h for h in json.loads(done.stdout)["hosts"]}
        if {"alpha", "beta"} <= rows.keys() and all(
            rows[n]["resources"].get("free_memory_bytes") for n in ("alpha", "beta")
        ):
            return rows
        return None

    rows = wait_until(both, timeout=30)
    beta = rows["beta"]
    assert beta["status"] == "alive" and beta["tags"] == ["gpu"] and beta["code_version"] == "test"
    assert beta["resources"]["logical_cpus"] == psutil.cpu_count(logical=True)
    assert beta["resources"]["memory_total_bytes"] == psutil.virtual_memory().total
    assert beta["age_s"] is not None and beta["age_s"] <= 20
    assert rows["alpha"]["self"] is True and rows["alpha"]["age_s"] == 0

    table = run_paglets("mesh", "summary", "--entry", alpha.url, "--long", home=home)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:4] == ["host", "status", "age", "cores"]
    assert "ram free" in header and "gpus" in header and "version" in header
    assert any(line.startswith("beta") and "alive" in line and "gpu" in line for line in lines)

    limited = run_paglets(
        "mesh", "summary", "--entry", alpha.url, "--json", "--limit", "1", home=home
    )
    assert [h["name"] for h in json.loads(limited.stdout)["hosts"]] == ["alpha"]


def test_mesh_summary_refuses_a_bad_max_age(tmp_path: Path) -> None:
    done = run_paglets("mesh", "summary", "--max-age", "soon", home=tmp_path)
    assert done.returncode == 2
    assert "--max-age" in done.stderr and "Traceback" not in done.stderr


# -- agents restart -------------------------------------------------------------------------


def test_agents_restart_brings_back_a_crashed_paglet(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = host.create(Worker)
    proxy.send(Message("add_then_checkpoint", {"n": 4}))
    with pytest.raises(PagletCrashedError):
        proxy.send(Message("os_exit", {"code": 1}))

    code, out, err = cli(capsys, "agents", "restart", proxy.agent_id[:8], "--entry", host.address)

    assert (code, err) == (0, "")
    assert out.strip() == f"restarted {proxy.agent_id} on {host.address}"
    assert proxy.send(Message("add")) == 5
    code, out, err = cli(capsys, "agents", "restart", proxy.agent_id, "--entry", host.address)
    assert code == 1 and out == ""
    assert err.startswith("paglets agents restart: ") and "not crashed" in err
    code, out, _ = cli(
        capsys, "agents", "restart", proxy.agent_id, "--entry", host.address, "--json"
    )
    assert code == 1 and json.loads(out)["error"]["code"] == "not-crashed"


# -- agents resolve -------------------------------------------------------------------------


def dies_mid_move(
    host_process: Callable[..., HostProcess], name: str, step: str, target: HostProcess
) -> str:
    """Start `name` with a fault at `step`, create a counter there and dispatch it to
    `target`; the host dies at that step. Returns the paglet's id."""
    source = host_process(name, env={"PAGLETS_FAULT": step})
    client = HostClient(timeout=10.0)
    proxy = client.create_agent(source.url, COUNTER, COUNTER_STATE, {"name": name, "count": 10})
    try:
        client.dispatch(source.url, proxy.agent_id, TransferTicket(target.url, timeout=3.0))
    except PagletError:
        pass  # a connection error: the source died at the step
    assert source.wait(30) == -signal.SIGKILL
    client.close()
    return proxy.agent_id


def open_transfer(home: Path, entry: str, agent_id: str) -> dict[str, Any]:
    done = run_paglets("agents", "transfers", "--open", "--json", "--entry", entry, home=home)
    assert done.returncode == 0, done.stderr
    found = [t for t in json.loads(done.stdout)["transfers"] if t["agent_id"] == agent_id]
    assert len(found) == 1, found
    return found[0]


def test_agents_resolve_ends_prepared_arrivals_from_a_dead_source(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    target = host_process("target")
    kept = dies_mid_move(host_process, "s1", "source-after-prepared", target)
    dropped = dies_mid_move(host_process, "s2", "source-after-prepared", target)
    keep = open_transfer(home, target.url, kept)
    drop = open_transfer(home, target.url, dropped)
    assert (keep["role"], keep["status"], keep["hooks_done"]) == ("target", "PREPARED", True)

    done = run_paglets(
        "agents", "resolve", keep["transfer_id"][:12], "--keep-here", "--entry", target.url,
        home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"kept {kept} here: live on {target.url}"
    client = HostClient(timeout=10.0)
    assert client.send_message(target.url, kept, Message("add")) == 11

    done = run_paglets(
        "agents", "resolve", drop["transfer_id"], "--give-up", "--entry", target.url, "--json",
        home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["status"], answer["agent_id"]) == ("ABORTED", dropped)
    with pytest.raises(PagletError):
        client.agent_info(target.url, dropped)

    # Decided now: a second resolve is refused (exit 1), naming the state.
    again = run_paglets(
        "agents", "resolve", drop["transfer_id"], "--give-up", "--entry", target.url, home=home
    )
    assert again.returncode == 1 and "already ABORTED" in again.stderr
    client.close()


def test_agents_resolve_gives_up_a_commit_the_dead_target_never_acknowledged(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    target = host_process("target", env={"PAGLETS_FAULT": "target-after-commit-persisted"})
    source = host_process("source")
    client = HostClient(timeout=10.0)
    proxy = client.create_agent(source.url, COUNTER, COUNTER_STATE, {"name": "x", "count": 1})
    try:
        client.dispatch(source.url, proxy.agent_id, TransferTicket(target.url, timeout=3.0))
    except PagletError:
        pass
    assert target.wait(30) == -signal.SIGKILL
    record = open_transfer(home, source.url, proxy.agent_id)
    assert (record["role"], record["status"]) == ("source", "COMMITTED")
    tid = record["transfer_id"]

    kept = run_paglets("agents", "resolve", tid, "--keep-here", "--entry", source.url, home=home)
    assert kept.returncode == 1
    assert "cannot be kept here" in kept.stderr and "Traceback" not in kept.stderr

    done = run_paglets("agents", "resolve", tid, "--give-up", "--entry", source.url, home=home)
    assert done.returncode == 0, done.stderr
    assert "no longer resent" in done.stdout
    listing = client.get_json(f"{source.url}/transfers?agent_id={proxy.agent_id}")["transfers"]
    assert [t["status"] for t in listing] == ["ACKED"]
    # The target comes back: it had committed, so the paglet lives there.
    target.env.pop("PAGLETS_FAULT")
    target.restart(same_port=True)
    assert client.send_message(target.url, proxy.agent_id, Message("add")) == 2
    client.close()


@pytest.mark.parametrize("flags", [[], ["--keep-here", "--give-up"]], ids=["neither", "both"])
def test_agents_resolve_needs_exactly_one_decision(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "agents", "resolve", "ab" * 16, *flags)
    assert code == 2 and out == ""
    assert err.startswith("paglets agents resolve: give exactly one of --keep-here or --give-up")


def test_agents_resolve_refuses_a_bad_transfer_id(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "agents", "resolve", "not-hex", "--give-up", "--entry", host.address)
    assert code == 2 and "not a transfer id" in err
    code, _, err = cli(capsys, "agents", "resolve", "abcdef", "--give-up", "--entry", host.address)
    assert code == 2 and "too short" in err
    code, _, err = cli(
        capsys, "agents", "resolve", "abcdef12", "--give-up", "--entry", host.address
    )
    assert code == 1 and "no transfer starting with" in err


def test_a_bad_gpus_value_is_a_usage_error(tmp_path: Path) -> None:
    done = run_paglets(
        "host", "--name", "alpha", "--port", "0", "--gpus", "0;1",
        "--persistence-dir", str(tmp_path / "alpha"), home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("paglets host: ") and "--gpus" in lines[0], lines
    assert "Traceback" not in done.stderr
