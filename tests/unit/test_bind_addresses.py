"""Which addresses `--bind-public auto` picks, and how the discovery flags combine
(cli.md §1.1; network.md §3.7)."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from paglets.cli.bind_addresses import beacons_switch, scan_switch
from paglets.cli.errors import CliError
from paglets.cli.host_options import HostOptions
from paglets.cli.host_run import check_options
from paglets.runtime import addresses
from paglets.runtime.addresses import LanAddress, bind_listeners, choose_lan


def v4(address: str) -> Any:
    return SimpleNamespace(family=socket.AF_INET, address=address)


def v6(address: str) -> Any:
    return SimpleNamespace(family=socket.AF_INET6, address=address)


def mac() -> Any:
    return SimpleNamespace(family=getattr(socket, "AF_PACKET", 17), address="aa:bb:cc:dd:ee:ff")


LAPTOP = {
    "lo": [v4("127.0.0.1"), v6("::1")],
    "docker0": [v4("172.17.0.1")],
    "eth0": [v4("169.254.7.7"), mac()],  # link-local only: no DHCP answer
    "wlan0": [v4("192.168.1.20"), v6("fe80::1"), mac()],
    "wg0": [v4("10.8.0.2")],
}
ALL_UP = dict.fromkeys(LAPTOP, True)


def test_the_default_route_interface_comes_first() -> None:
    found = choose_lan(LAPTOP, ALL_UP, route_source="192.168.1.20")
    assert found[0] == LanAddress("wlan0", "192.168.1.20", default_route=True)
    assert [a.address for a in found] == ["192.168.1.20", "10.8.0.2", "172.17.0.1"]


def test_loopback_link_local_ipv6_and_down_interfaces_are_never_chosen() -> None:
    up = {**ALL_UP, "wg0": False}
    chosen = {a.address for a in choose_lan(LAPTOP, up, route_source=None)}
    assert chosen == {"192.168.1.20", "172.17.0.1"}


def test_without_a_default_route_ordinary_interfaces_beat_container_bridges() -> None:
    found = choose_lan(LAPTOP, ALL_UP, route_source=None)
    assert found[0].interface in ("wg0", "wlan0")
    assert found[-1].interface == "docker0"
    assert not any(a.default_route for a in found)


def test_a_machine_with_only_loopback_has_no_lan_address() -> None:
    assert choose_lan({"lo": [v4("127.0.0.1")]}, {"lo": True}, route_source="127.0.0.1") == []


def test_auto_expands_to_the_best_interface_and_keeps_explicit_addresses(monkeypatch: Any) -> None:
    eth = [LanAddress("eth0", "10.1.0.5", True), LanAddress("eth0", "10.1.0.6", True)]
    monkeypatch.setattr(addresses, "lan_addresses", lambda: [*eth, LanAddress("wg0", "10.8.0.2")])
    assert addresses.resolve_auto() == ["10.1.0.5", "10.1.0.6"]
    assert addresses.resolve_bind_public(["192.168.9.9", "auto", "10.1.0.5", "[::1]"]) == [
        "192.168.9.9",
        "10.1.0.5",
        "10.1.0.6",
        "::1",
    ]


def test_auto_without_a_lan_address_says_so_and_keeps_the_key_refusal_first(
    monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.setattr(addresses, "lan_addresses", list)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PAGLETS_API_KEY", raising=False)
    seed = HostOptions(name="linux-a", bind_public=("auto",), mesh_version="ds-dia-dev")
    with pytest.raises(CliError, match="needs the mesh key"):
        check_options(seed)
    monkeypatch.setenv("PAGLETS_API_KEY", "k")
    with pytest.raises(CliError, match="no LAN address") as refused:
        check_options(seed)
    assert refused.value.hint is not None and "--bind-public 192.168.1.20" in refused.value.hint


def test_check_options_resolves_auto(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setattr(addresses, "lan_addresses", lambda: [LanAddress("eth0", "10.1.0.5", True)])
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PAGLETS_API_KEY", "k")
    plan = check_options(HostOptions(name="linux-a", bind_public=("auto",)))
    assert plan.bind_public == ("10.1.0.5",)
    assert plan.beacons is None and plan.scan is False


def test_the_wildcard_publishes_the_lan_address(monkeypatch: Any) -> None:
    monkeypatch.setattr(addresses, "lan_addresses", lambda: [LanAddress("eth0", "10.1.0.5", True)])
    assert addresses.advertised_host("0.0.0.0") == "10.1.0.5"
    assert addresses.advertised_host("127.0.0.1") == "127.0.0.1"
    monkeypatch.setattr(addresses, "lan_addresses", list)
    assert addresses.advertised_host("0.0.0.0") == "0.0.0.0"


def test_extra_listeners_share_the_port_and_skip_what_the_main_one_covers() -> None:
    with socket.socket() as main:
        main.bind(("127.0.0.1", 0))
        port = main.getsockname()[1]
        made = bind_listeners(["127.0.0.2", "127.0.0.1"], port, "127.0.0.1")
        try:
            assert [s.getsockname() for s in made] == [("127.0.0.2", port)]
        finally:
            for sock in made:
                sock.close()
    assert bind_listeners(["10.1.0.5"], 8765, "0.0.0.0") == []


def test_a_foreign_address_is_a_clear_error() -> None:
    from paglets.core.errors import HostError

    with pytest.raises(HostError, match=r"--bind-public 192\.0\.2\.77"):
        bind_listeners(["192.0.2.77"], 0, "127.0.0.1")


@pytest.mark.parametrize(
    ("discover", "multicast", "expected"),
    [(None, None, None), (True, None, True), (None, False, False), (False, False, False)],
)
def test_mesh_multicast_is_discover(
    discover: bool | None, multicast: bool | None, expected: bool | None
) -> None:
    o = HostOptions(name="a", discover=discover, mesh_multicast=multicast)
    assert beacons_switch(o) is expected


def test_discover_and_mesh_multicast_must_agree() -> None:
    with pytest.raises(CliError, match="disagree"):
        beacons_switch(HostOptions(name="a", discover=True, mesh_multicast=False))


def test_mesh_lan_discovery_positive_is_the_scan_negative_is_a_no_op() -> None:
    assert scan_switch(HostOptions(name="a", mesh_lan_discovery=True)) is True
    assert scan_switch(HostOptions(name="a", mesh_lan_discovery=False)) is False
    assert scan_switch(HostOptions(name="a", discover_scan=True)) is True
    assert scan_switch(HostOptions(name="a")) is False
