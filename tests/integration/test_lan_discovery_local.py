"""LAN discovery on this machine's loopback only (network.md §3.7).

* A host on loopback, the default, sends no beacon and opens no multicast socket.
* What a heard beacon does, fed to a host directly (no multicast here: other test hosts may
  listen on this machine): a signed one makes it join the sender, one signed with another
  key is dropped.
* The scan's proof check, against real hosts at given loopback URLs.
The real multicast and /24 scan run in network namespaces: tests/system/test_lan_discovery.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil

from paglets.remote.beacons import beacon_key, encode_beacon, make_beacon
from paglets.runtime import lan_scan
from paglets.runtime.discovery import PORT, Discovery, discovery_addresses
from paglets.runtime.host import Host
from support.waiting import wait_until

KEY = "a-mesh-key-for-tests"


def udp_ports() -> set[int]:
    return {c.laddr.port for c in psutil.Process().net_connections(kind="udp") if c.laddr}


def members(host: Host) -> set[str]:
    return {ref.name for ref in host.list_hosts() if ref.online}


def beacon_of(host: Host, mesh_key: str | None) -> bytes:
    made = make_beacon(host.host_id, host.name, host.address, 1, host.mesh_version)
    return encode_beacon(made, beacon_key(mesh_key))


def test_a_default_loopback_host_sends_no_beacons_and_opens_no_multicast_socket(
    make_host: Callable[..., Host],
) -> None:
    before = udp_ports()
    host = make_host("alpha")
    assert host.address.startswith("http://127.0.0.1:")
    assert host.mesh is not None  # the mesh is on; only discovery is off
    assert host.mesh_multicast is False and host.mesh_lan_discovery is False
    assert host.discovery is None
    assert host.health()["discover"] == {"beacons": False, "scan": False}
    assert PORT not in udp_ports()
    assert not (udp_ports() - before)  # no UDP socket at all


def test_explicit_beacons_on_loopback_stay_on_this_machine(tmp_path: Path) -> None:
    # Built, not started: started, it would beacon on this machine's loopback.
    host = Host("beta", mesh_multicast=True, persistence_dir=tmp_path / "beta")
    try:
        assert host.mesh_multicast is True
        assert discovery_addresses(host) == ["127.0.0.1"]
    finally:
        host.stop()


def test_a_signed_beacon_makes_a_host_join_its_sender_and_a_foreign_one_is_dropped(
    make_host: Callable[..., Host],
) -> None:
    alpha = make_host("alpha", api_key=KEY)
    beta = make_host("beta", api_key=KEY)
    other = make_host("other", api_key="another-key")
    # alpha's discovery without sockets: beacons are handed to it as if heard.
    heard = Discovery(alpha, [], beacons=False, scan=False)

    alpha._on_loop(heard.on_datagram, beacon_of(other, "another-key"))
    alpha._on_loop(heard.on_datagram, beacon_of(beta, None))  # unsigned
    alpha._on_loop(heard.on_datagram, beacon_of(alpha, KEY))  # its own, looped back
    assert (heard.dropped, heard.heard) == (2, 0)

    alpha._on_loop(heard.on_datagram, beacon_of(beta, KEY))
    assert heard.heard == 1
    wait_until(lambda: members(alpha) == {"alpha", "beta"}, timeout=20)
    wait_until(lambda: members(beta) == {"alpha", "beta"}, timeout=20)
    assert "other" not in members(alpha)

    # Once beta is a live member at that URL, its beacons cost nothing more.
    alpha._on_loop(heard.on_datagram, beacon_of(beta, KEY))
    assert heard.heard == 2


def test_the_scan_reports_only_hosts_that_prove_the_key(make_host: Callable[..., Host]) -> None:
    alpha = make_host("alpha", api_key=KEY)
    beta = make_host("beta", api_key=KEY)
    other = make_host("other", api_key="another-key")
    nobody = "http://127.0.0.1:9"  # discard port: nothing answers
    found: list[tuple[str, str]] = []

    async def run() -> None:
        urls = [beta.address, other.address, nobody]
        await lan_scan.scan(urls, alpha.http.auth.proof, lambda h, u: found.append((h, u)))

    alpha._run_on_loop(run())
    assert found == [(beta.host_id, beta.address)]
