"""Which addresses a host binds and publishes (cli.md §1.1 `--host`, `--bind-public`;
network.md §1.1 "one listener per bound address, same port").

`auto` means this machine's LAN address: the IPv4 addresses of the interface that carries the
default route, else of the first other interface that is up. Loopback, link-local
(169.254/16) and interfaces that are down are never chosen; bridges of container and VM
managers (docker0, virbr0, ...) only when nothing else is there, since other machines rarely
reach them. The choice itself (`choose_lan`) is a pure function of what psutil reports, so it
is tested without touching the machine's network.

Finding the default route's source address connects a UDP socket to a TEST-NET address
(RFC 5737): that asks the routing table and sends no packet.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from paglets.core.errors import HostError

__all__ = [
    "LanAddress",
    "advertised_host",
    "bind_listeners",
    "choose_lan",
    "lan_addresses",
    "resolve_auto",
    "resolve_bind_public",
]

_ROUTE_PROBE = ("192.0.2.1", 9)  # TEST-NET-1: never sent to, only routed
_UNLIKELY = ("docker", "virbr", "br-", "veth", "cni", "flannel", "vmnet", "vboxnet", "lxc")
WILDCARDS = ("0.0.0.0", "::", "")

NO_LAN_ADDRESS = (
    "--bind-public auto: this machine has no LAN address (no IPv4 address other than "
    "loopback or link-local on an interface that is up)"
)
NO_LAN_HINT = "connect to a network, or give the address: --bind-public 192.168.1.20"


@dataclass(frozen=True, slots=True)
class LanAddress:
    """One candidate: the interface, its IPv4 address, and whether it carries the default
    route (preferred)."""

    interface: str
    address: str
    default_route: bool = False


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def choose_lan(
    interfaces: Mapping[str, Iterable[Any]],
    up: Mapping[str, bool],
    route_source: str | None,
) -> list[LanAddress]:
    """Every usable IPv4 address, best first: the default route's interface, then ordinary
    interfaces, then container/VM bridges, each group in interface-name order.

    `interfaces` maps a name to psutil-like entries (`family`, `address`); `up` maps a name
    to its link state (missing = down); `route_source` is the default route's source address.
    """
    route_interface = None
    found: list[LanAddress] = []
    for name in sorted(interfaces):
        if not up.get(name, False):
            continue
        for entry in interfaces[name]:
            if entry.family != socket.AF_INET or not _usable(entry.address):
                continue
            if entry.address == route_source:
                route_interface = name
            found.append(LanAddress(name, entry.address))
    result = [
        LanAddress(a.interface, a.address, default_route=a.interface == route_interface)
        for a in found
    ]

    def rank(a: LanAddress) -> tuple[int, str]:
        unlikely = a.interface.lower().startswith(_UNLIKELY)
        return (0 if a.default_route else 2 if unlikely else 1, a.interface)

    return sorted(result, key=rank)  # stable: an interface keeps its own address order


def _route_source() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(_ROUTE_PROBE)
        return str(probe.getsockname()[0])
    except OSError:
        return None  # no default route (an isolated network, a namespace)
    finally:
        probe.close()


def lan_addresses() -> list[LanAddress]:
    """This machine's LAN addresses now, best first (see `choose_lan`)."""
    import psutil

    stats = psutil.net_if_stats()
    up = {name: s.isup for name, s in stats.items()}
    return choose_lan(psutil.net_if_addrs(), up, _route_source())


def resolve_auto() -> list[str]:
    """The addresses `auto` stands for: those of the best interface (usually one)."""
    found = lan_addresses()
    if not found:
        raise HostError(f"{NO_LAN_ADDRESS}; {NO_LAN_HINT}")
    best = found[0].interface
    return [a.address for a in found if a.interface == best]


def resolve_bind_public(values: Sequence[str]) -> list[str]:
    """`--bind-public` values with `auto` expanded, duplicates dropped, order kept."""
    out: list[str] = []
    for value in values:
        text = value.strip()
        expanded = resolve_auto() if text.lower() == "auto" else [text.strip("[]")]
        out.extend(a for a in expanded if a not in out)
    return out


def advertised_host(bind_host: str) -> str:
    """The address to publish for a bind address: a wildcard (`0.0.0.0`, `::`) publishes the
    detected LAN address (cli.md §1.1), or stays as it is when there is none."""
    if bind_host not in WILDCARDS:
        return bind_host
    found = lan_addresses()
    return found[0].address if found else bind_host


def _covered(address: str, main: str) -> bool:
    """True when the main listener already serves `address` (same address, or a wildcard of
    its family), so binding it again on the same port would fail."""
    if address == main:
        return True
    if main in ("0.0.0.0", ""):
        return ":" not in address
    return main == "::" and ":" in address


def bind_listeners(addresses: Sequence[str], port: int, main: str) -> list[socket.socket]:
    """Listening sockets for `addresses` on `port`, besides the main one on `main` (skipped
    when it covers them). All or nothing: on a failure the ones made are closed."""
    made: list[socket.socket] = []
    try:
        for address in addresses:
            if _covered(address, main):
                continue
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise HostError(
                    f"cannot listen on {address}:{port} (--bind-public {address}): "
                    f"{exc.strerror or exc}; is it an address of this machine?"
                ) from None
            sock.listen(512)
    except BaseException:
        for sock in made:
            sock.close()
        raise
    return made
