"""LAN discovery for a host: signed UDP multicast beacons and the opt-in /24 scan
(network.md §3.5 timers, §3.7; cli.md §1.1 `--discover`, `--discover-scan`).

Everything runs on the host's event loop, beside its membership node. Beacons go to
239.42.74.53:48765 (TTL 1, so they never leave the LAN) from every IPv4 address the host
binds: at start, 1 s and 2 s later, then every 5 s. A beacon heard from another host id
whose URL is not already a live member makes the node send one join sync there
(`MeshSync.contact`, the seeds' exchange); nothing else is ever taken from a beacon, so a
forged or replayed one can at most make us sync with a true URL. At most one such sync per
host id every `CONTACT_EVERY` seconds, however many copies of its beacons arrive.

The scan (`lan_scan`, only with `--discover-scan`) runs at start, once more 15 s later
(hosts started together miss each other in the first), then every 300 s; the hosts it finds
go through `found` like a beacon's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from paglets.remote.beacons import BeaconError, beacon_key, encode_beacon, make_beacon, read_beacon
from paglets.remote.mesh_sync import normalise_url
from paglets.remote.mesh_wire import ALIVE, SUSPECT
from paglets.runtime import addresses as addrs
from paglets.runtime import lan_scan

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["GROUP", "PORT", "Discovery", "discovery_addresses", "start_discovery"]

GROUP, PORT, TTL = "239.42.74.53", 48765, 1
EARLY = (0.0, 1.0, 1.0)  # the first three beacons: 3 in the first 2 s
BEACON_EVERY = 5.0
SCAN_FIRST, SCAN_AGAIN, SCAN_EVERY = 1.0, 15.0, 300.0
CONTACT_EVERY = 2.0
_MAX_CONTACTED = 4096

_log = logging.getLogger("paglets.discovery")


def discovery_addresses(host: Host) -> list[str]:
    """The IPv4 addresses to beacon and scan from: the bound ones (a wildcard stands for the
    LAN addresses) minus loopback; only loopback bound means 127.0.0.1 (this machine)."""
    bound = [host.bind_host, *getattr(host, "bind_public", ())]
    out: list[str] = []
    for address in bound:
        expanded = (
            [a.address for a in addrs.lan_addresses()] if address in addrs.WILDCARDS else [address]
        )
        out.extend(a for a in expanded if a not in out and _ipv4(a) and not a.startswith("127."))
    if not out and any(a.startswith("127.") or a == "localhost" for a in bound):
        out.append("127.0.0.1")
    return out


def _ipv4(address: str) -> bool:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return True


def _listen_socket(addresses: list[str]) -> socket.socket:
    """Bound to the group's port, member of the group on each address's interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):  # several hosts on one machine share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((GROUP, PORT))  # only the group's datagrams (Linux, macOS)
        except OSError:
            sock.bind(("", PORT))
        group = socket.inet_aton(GROUP)
        for address in addresses:
            mreq = struct.pack("4s4s", group, socket.inet_aton(address))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError:
        sock.close()
        raise
    return sock


def _send_socket(address: str) -> socket.socket:
    """Sends to the group from `address`, one hop, heard by this machine's hosts too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
        sock.bind((address, 0))
    except OSError:
        sock.close()
        raise
    return sock


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.discovery.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        _log.debug("beacon socket error: %s", exc)


class Discovery:
    """Beacons and scan of one host. `open()`/`close()` are called from any thread."""

    def __init__(self, host: Host, addresses: list[str], *, beacons: bool, scan: bool) -> None:
        self.host = host
        self.addresses = addresses
        self.beacons = beacons and bool(addresses)
        self.scan = scan and bool(addresses)
        self.key = beacon_key(host.api_key)
        self.heard = self.dropped = self.sent = self.scanned = 0
        self._transports: list[asyncio.BaseTransport] = []
        self._senders: list[asyncio.DatagramTransport] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._scan_task: asyncio.Task[None] | None = None
        self._contacted: OrderedDict[str, float] = OrderedDict()
        self._closed = False

    # -- life --------------------------------------------------------------------------

    def open(self) -> None:
        """Open the sockets and start the timers on the host's loop (waits for it)."""
        loop = self.host._loop
        assert loop is not None, "start the host's loop before its discovery"
        asyncio.run_coroutine_threadsafe(self._open(), loop).result(10)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.beacons:
            try:
                await self._open_sockets(loop)
            except OSError as exc:
                _log.warning("LAN beacons off: cannot use multicast %s:%d: %s", GROUP, PORT, exc)
                self._close_transports()
                self.beacons = False
            else:
                self._later("beacon", EARLY[0], self._beacon, 0)
        if self.scan:
            self._later("scan", SCAN_FIRST, self._start_scan)

    async def _open_sockets(self, loop: asyncio.AbstractEventLoop) -> None:
        made = [_listen_socket(self.addresses)]
        try:
            made += [_send_socket(address) for address in self.addresses]
        except OSError:
            for sock in made:
                sock.close()
            raise
        receiver, *senders = made
        try:
            made_receiver = await loop.create_datagram_endpoint(
                lambda: _Receiver(self), sock=receiver
            )
            self._transports.append(made_receiver[0])
            for sock in senders:
                sender, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
                self._transports.append(sender)
                self._senders.append(sender)
        except BaseException:
            for sock in made:  # the ones no transport owns yet (closing twice is harmless)
                sock.close()
            raise

    def close(self) -> None:
        """Stop beacons and scans and close the sockets (idempotent)."""
        if not self._closed:
            with contextlib.suppress(Exception):
                self.host._on_loop(self._close)

    def _close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._scan_task is not None:
            self._scan_task.cancel()
        self._close_transports()

    def _close_transports(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self._senders.clear()

    def _later(self, name: str, delay: float, fn: Any, *args: Any) -> None:
        if not self._closed:
            self._timers[name] = asyncio.get_running_loop().call_later(delay, fn, *args)

    # -- beacons -----------------------------------------------------------------------

    def _beacon(self, count: int) -> None:
        node = self.host.mesh
        if node is not None and node.running:
            r = node.record
            beacon = make_beacon(r.host_id, r.name, r.url, r.incarnation, r.code_version)
            data = encode_beacon(beacon, self.key)
            for sender in self._senders:
                sender.sendto(data, (GROUP, PORT))
            self.sent += 1
        count += 1
        delay = EARLY[count] if count < len(EARLY) else BEACON_EVERY * node_jitter(node)
        self._later("beacon", delay, self._beacon, count)

    def on_datagram(self, data: bytes) -> None:
        try:
            beacon = read_beacon(data, self.key)
        except BeaconError as exc:
            self.dropped += 1
            _log.debug("beacon dropped: %s", exc)
            return
        node = self.host.mesh
        if node is not None and beacon.host_id == node.host_id:
            return  # our own, looped back (so hosts on this machine hear each other)
        self.heard += 1
        self.found(beacon.host_id, beacon.url)

    def found(self, host_id: str, url: str) -> None:
        """Another host says it is at `url`: sync with it unless it is a live member there
        already or was contacted a moment ago."""
        node = self.host.mesh
        if node is None or not node.running or host_id == node.host_id:
            return
        member = node.table.get(host_id)
        live = member is not None and member.liveness in (ALIVE, SUSPECT)
        if live and normalise_url(member.url) == normalise_url(url):  # type: ignore[union-attr]
            return
        now = asyncio.get_running_loop().time()
        last = self._contacted.get(host_id)
        if last is not None and now - last < CONTACT_EVERY:
            return
        self._contacted[host_id] = now
        self._contacted.move_to_end(host_id)
        if len(self._contacted) > _MAX_CONTACTED:
            self._contacted.popitem(last=False)
        _log.debug("discovered host %s at %s: joining", host_id, url)
        node.sync.contact(url)

    # -- the /24 scan ------------------------------------------------------------------

    def _start_scan(self) -> None:
        self._scan_task = asyncio.get_running_loop().create_task(self._scan())
        self._later("scan", SCAN_AGAIN if self.scanned == 0 else SCAN_EVERY, self._start_scan)

    async def _scan(self) -> None:
        scheme = "https" if self.host.tls[0] else "http"
        urls = lan_scan.scan_urls(self.addresses, self.host.port, scheme)
        try:
            await lan_scan.scan(urls, self.host.http.auth.proof, self.found)
        except Exception as exc:  # best effort: the next scan comes anyway
            _log.warning("LAN scan failed: %s", exc)
        self.scanned += 1

    # -- reporting ---------------------------------------------------------------------

    def describe(self) -> str:
        """One line for the host's start-up output (cli.md §1.2)."""
        parts = []
        if self.beacons:
            signed = "signed" if self.key is not None else "unsigned (no mesh key)"
            where = ", ".join(self.addresses)
            parts.append(f"beacons on {where} to {GROUP}:{PORT}, {signed}")
        if self.scan:
            parts.append(f"scan of the local /24 every {SCAN_EVERY:g}s")
        return "; ".join(parts) or "off"

    def stats(self) -> dict[str, Any]:
        return {
            "beacons": self.beacons,
            "scan": self.scan,
            "addresses": list(self.addresses),
            "sent": self.sent,
            "heard": self.heard,
            "dropped": self.dropped,
            "scans": self.scanned,
        }


def node_jitter(node: Any) -> float:
    """±10% on the beacon period, so hosts started together do not beacon in lockstep."""
    rng = getattr(node, "rng", None)
    return rng.uniform(0.9, 1.1) if rng is not None else 1.0


def start_discovery(host: Host) -> Discovery | None:
    """The host's discovery, started; None when beacons and scan are both off or the
    host has no mesh."""
    beacons, scan = bool(host.mesh_multicast), bool(host.mesh_lan_discovery)
    if host.mesh is None or not (beacons or scan):
        return None
    where = discovery_addresses(host)
    if not where:
        _log.warning("LAN discovery off: host %r binds no IPv4 address", host.name)
    discovery = Discovery(host, where, beacons=beacons, scan=scan)
    discovery.open()
    return discovery
