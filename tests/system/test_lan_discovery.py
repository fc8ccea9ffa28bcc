"""LAN discovery between real `paglets host` processes on a private network (network.md §3.7,
cli.md §1: the seed's `paglets host --name linux-a --bind-public auto --mesh-version
ds-dia-dev`).

Each host runs in its own network namespace; the namespaces hang off one bridge (in a
namespace of its own), addresses 10.231.0.0/24, so nothing here can reach or be reached
from any real network: beacons, syncs and scans stay between these namespaces. Every host
runs the seed's command exactly (no --peer, no --port), with its own HOME holding the same
~/.paglets/mesh.key. Queries run inside the namespaces (`ip netns exec NS python -c ...`).
Processes are killed by PID and the namespaces deleted at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.processes import HostProcess, run_paglets
from support.waiting import wait_until

SUBNET = "10.231.0"
DEADLINE = 30.0  # beacons every 5 s (three in the first 2 s); polled, usually a few seconds

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="needs root to make network namespaces (ip netns add)",
    ),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs the ip command (iproute2)"),
]

QUERY = """
import json, sys, urllib.request
url, key = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + key})
with urllib.request.urlopen(request, timeout=10) as answer:
    print(answer.read().decode())
"""


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def paglets_command() -> list[str]:
    script = Path(sys.executable).parent / "paglets"  # what `uv run paglets` runs
    return [str(script)] if script.exists() else [sys.executable, "-m", "paglets"]


class Lan:
    """A bridge namespace and host namespaces plugged into it, each with one address."""

    def __init__(self) -> None:
        self.prefix = f"plg{secrets.token_hex(3)}"
        self.bridge = f"{self.prefix}-br"
        self.made: list[str] = []

    def open(self) -> Lan:
        self._add(self.bridge)
        ip("-n", self.bridge, "link", "set", "lo", "up")
        # No IGMP querier on this bridge: without snooping it floods multicast to every port.
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        return self

    def _add(self, ns: str) -> None:
        ip("netns", "add", ns)
        self.made.append(ns)

    def host_ns(self, index: int) -> tuple[str, str]:
        """A namespace with `eth0` at 10.231.0.(10+index)/24 on the bridge: (name, address)."""
        ns, address, port = f"{self.prefix}-h{index}", f"{SUBNET}.{10 + index}", f"p{index}"
        self._add(ns)
        ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", ns)  # fmt: skip
        ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        return ns, address

    def close(self) -> None:
        for ns in reversed(self.made):  # deleting a namespace deletes its veth ends
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()


class NsHost(HostProcess):
    """The seed's command, run in a namespace with its own HOME (key in ~/.paglets)."""

    def __init__(self, ns: str, name: str, home: Path, log_dir: Path, args: list[str]) -> None:
        persistence = home / ".paglets" / "hosts" / name  # where the seed's command keeps it
        super().__init__(name, persistence, home, args=args, log_dir=log_dir)
        self.ns = ns

    @property
    def command(self) -> list[str]:
        seed = ["host", "--name", self.name, "--bind-public", "auto", "--mesh-version",
                "ds-dia-dev"]  # fmt: skip
        return ["ip", "netns", "exec", self.ns, *paglets_command(), *seed, *self.args]

    def key(self) -> str:
        return (self.home / ".paglets" / "mesh.key").read_text().strip()

    def get(self, path: str, *, base: str | None = None) -> Any:
        url = (base or self.url) + path
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", QUERY, url, self.key()],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"GET {url} in {self.ns}: {done.stderr[-2000:]}")
        return json.loads(done.stdout)

    def view(self) -> dict[str, str]:
        """name → status as this host sees the mesh (itself included)."""
        return {m["name"]: m["status"] for m in self.get("/mesh/members")["members"]}

    def discover(self) -> dict[str, Any]:
        return self.get("/health")["discover"]


def write_key(home: Path, key_file: Path | None) -> Path:
    """`paglets certs key --write` for the first host; the others get a copy (mode 0600),
    as the recipe says."""
    target = home / ".paglets" / "mesh.key"
    if key_file is None:
        done = run_paglets("certs", "key", "--write", home=home)
        assert done.returncode == 0, done.stderr
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(key_file.read_text())
        target.chmod(0o600)
    return target


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Callable[..., NsHost]]:
    """`lan(name, key=key_file_or_None, args=[...], start=True)` → a host in a new
    namespace on the shared bridge."""
    network = Lan()
    started: list[NsHost] = []
    try:
        try:
            network.open()
        except RuntimeError as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")

        def factory(
            name: str, *, key: Path | None = None, args: tuple[str, ...] = (), start: bool = True
        ) -> NsHost:
            ns, _ = network.host_ns(len(started) + 1)
            home = tmp_path / name
            home.mkdir()
            write_key(home, key)
            host = NsHost(ns, name, home, tmp_path / "logs", list(args))
            started.append(host)
            return host.start(timeout=60) if start else host

        yield factory
    finally:
        for host in started:
            host.close()
        network.close()


def key_of(host: NsHost) -> Path:
    return host.home / ".paglets" / "mesh.key"


def sees(hosts: list[NsHost], names: set[str]) -> bool:
    return all({n for n, s in h.view().items() if s == "alive"} >= names for h in hosts)


def test_the_seed_command_on_three_machines_forms_one_mesh(lan: Callable[..., NsHost]) -> None:
    a = lan("linux-a")
    b = lan("linux-b", key=key_of(a))
    c = lan("linux-c", key=key_of(a))
    hosts, names = [a, b, c], {"linux-a", "linux-b", "linux-c"}
    for i, host in enumerate(hosts, 1):
        assert host.url == f"http://{SUBNET}.{10 + i}:8765"  # the LAN address is published
        assert "mesh key from" in host.stdout
        assert f"discovery: beacons on {SUBNET}.{10 + i}" in host.stdout
        assert "signed" in host.stdout

    wait_until(lambda: sees(hosts, names), timeout=DEADLINE, interval=0.2)
    stats = a.discover()
    assert stats["beacons"] is True and stats["scan"] is False
    assert stats["heard"] >= 2 and stats["dropped"] == 0
    # --bind-public binds in addition to loopback: local tools still reach the host there.
    assert a.get("/health", base="http://127.0.0.1:8765")["name"] == "linux-a"

    # A graceful stop leaves the mesh and stops its beacons: the others list it `left`.
    assert c.terminate() == 0
    wait_until(lambda: a.view().get("linux-c") == "left", timeout=DEADLINE, interval=0.2)
    wait_until(lambda: b.view().get("linux-c") == "left", timeout=DEADLINE, interval=0.2)


def test_a_host_with_another_key_ignores_beacons_and_is_ignored(
    lan: Callable[..., NsHost],
) -> None:
    a = lan("linux-a")
    b = lan("linux-b", key=key_of(a))
    odd = lan("linux-x")  # a key of its own
    assert key_of(odd).read_text() != key_of(a).read_text()

    wait_until(lambda: sees([a, b], {"linux-a", "linux-b"}), timeout=DEADLINE, interval=0.2)
    # Each side has heard (and dropped) the other's beacons: the absence below is a refusal,
    # not a beacon still on its way.
    wait_until(lambda: odd.discover()["dropped"] >= 2, timeout=DEADLINE, interval=0.2)
    wait_until(lambda: a.discover()["dropped"] >= 1, timeout=DEADLINE, interval=0.2)
    wait_until(lambda: b.discover()["dropped"] >= 1, timeout=DEADLINE, interval=0.2)
    assert set(odd.view()) == {"linux-x"}
    assert "linux-x" not in a.view()
    assert "linux-x" not in b.view()


def test_the_scan_joins_only_hosts_that_prove_the_key(lan: Callable[..., NsHost]) -> None:
    b = lan("linux-b", args=("--no-discover",))
    odd = lan("linux-x", args=("--no-discover",))  # answers the hello, cannot prove the key
    a = lan("linux-a", key=key_of(b), args=("--no-discover", "--discover-scan"))
    assert "scan of the local /24" in a.stdout
    assert "beacons" not in a.stdout.split("discovery:", 1)[1].splitlines()[0]

    wait_until(lambda: a.discover()["scans"] >= 1, timeout=DEADLINE, interval=0.2)
    wait_until(lambda: sees([a, b], {"linux-a", "linux-b"}), timeout=DEADLINE, interval=0.2)
    assert "linux-x" not in a.view()
    assert set(odd.view()) == {"linux-x"}  # never contacted: it never got a's key either
    assert a.discover()["sent"] == 0  # --no-discover: no beacons
