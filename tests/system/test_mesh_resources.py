"""Names, tags, properties and resources between real `paglets host` processes
(network.md §3.1-3.2, jobs.md §1.1-1.4).

A second host with a name the mesh already holds is refused (exit 2, holder named); tags
and properties given with `--tag`/`--property` and each host's resource summary reach the
other hosts through membership; a ticket's `required_tags` lets a dispatch by name go only
to a host that has them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from paglets import Message
from paglets.core.errors import TransferError
from paglets.remote.client import HostClient
from paglets.remote.transfer import TransferTicket
from support.processes import HostProcess, run_paglets
from support.waiting import wait_until

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"
JOIN = 30.0


def hosts_of(client: HostClient, host: HostProcess) -> dict[str, dict[str, Any]]:
    """`name → HostRef` (wire form) as `host` lists the mesh (`GET /hosts`)."""
    return {h["name"]: h for h in client.get_json(f"{host.url}/hosts")["hosts"]}


def test_a_taken_name_is_refused(host_process: Callable[..., HostProcess], tmp_path: Path) -> None:
    alpha = host_process("alpha")
    twin = host_process(
        "alpha",
        persistence_dir=tmp_path / "twin",  # another host id
        log_dir=tmp_path / "twin-logs",
        args=["--peer", alpha.url],
    )

    assert twin.wait(30) == 2  # cli.md 1.2: a name already used in the mesh
    assert "already taken by" in twin.stderr and alpha.url in twin.stderr
    assert "Traceback" not in twin.stderr
    client = HostClient(timeout=10.0)
    members = client.get_json(f"{alpha.url}/mesh/members")["members"]
    assert [m["url"] for m in members if m["name"] == "alpha"] == [alpha.url]
    client.close()


def test_tags_properties_and_resources_reach_other_hosts(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = host_process("alpha")
    beta = host_process(
        "beta",
        args=[
            *("--peer", alpha.url, "--tag", "GPU", "--tag", "gpu", "--tag", "linux"),
            *("--property", "python=3.12", "--property", "rack=r7"),
        ],
    )
    gamma = host_process("gamma", args=["--peer", alpha.url])
    client = HostClient(timeout=10.0)

    def beta_seen() -> dict[str, Any] | None:
        listed = hosts_of(client, alpha)
        ref = listed.get("beta")
        ready = (
            ref is not None
            and ref["status"] == "alive"
            and (ref["resources"] or {}).get("free_memory_bytes") is not None
            and (listed.get("gamma") or {}).get("status") == "alive"
        )
        return ref if ready else None

    ref = wait_until(beta_seen, timeout=JOIN)
    assert ref["tags"] == ["gpu", "linux"]  # trimmed, lower-cased, de-duplicated
    assert ref["properties"]["python"] == "3.12"  # --property wins over the automatic one
    assert ref["properties"]["rack"] == "r7"
    assert {"paglets", "os", "arch"} <= ref["properties"].keys()
    resources = ref["resources"]
    assert resources["logical_cpus"] == psutil.cpu_count(logical=True)
    assert resources["memory_total_bytes"] == psutil.virtual_memory().total
    assert 0 < resources["free_memory_bytes"] <= resources["memory_total_bytes"]
    assert 0 <= resources["free_cpu_cores"] <= resources["job_cores"]
    assert resources["load_age_s"] < 60

    # The same through the CLI's machine output.
    done = run_paglets("mesh", "hosts", "--entry", alpha.url, "--json", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    listed = {h["name"]: h for h in json.loads(done.stdout)["hosts"]}
    assert listed["beta"]["tags"] == ["gpu", "linux"]
    assert listed["beta"]["properties"]["python"] == "3.12"
    assert listed["beta"]["resources"]["spec"]["logical_cpus"] == psutil.cpu_count(logical=True)

    # required_tags: by name, only to a host that has them.
    proxy = client.create_agent(alpha.url, COUNTER, COUNTER_STATE, {"name": "x", "count": 1})
    with pytest.raises(TransferError, match=r"lacks the required tags \['gpu'\]") as refused:
        client.dispatch(alpha.url, proxy.agent_id, TransferTicket("gamma", required_tags=("GPU",)))
    assert refused.value.code == "preflight"
    assert client.send_message(alpha.url, proxy.agent_id, Message("add")) == 2  # still here
    moved = client.dispatch(
        alpha.url, proxy.agent_id, TransferTicket("beta", required_tags=("gpu", "linux"))
    )
    assert moved.host_url.rstrip("/") == beta.url.rstrip("/")
    assert client.send_message(beta.url, proxy.agent_id, Message("add")) == 3
    assert gamma.alive
    client.close()
