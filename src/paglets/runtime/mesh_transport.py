"""The host's side of mesh membership: frames over HTTP, and the `SwimNode` built from the host.

`MeshTransport.send` encodes a frame and writes it to the peer's socket (`/peer/ws`, a `mesh`
frame; a POST to its `/mesh/frame` where there is no socket) on the host's worker pool,
fire-and-forget: SWIM tolerates lost frames, and the event loop (where the node
lives) must never wait on the network. A refused connection is reported to the node at once
(`on_unreachable`), so a killed host goes indirect without waiting out the probe timeout.

`start_mesh(host)` raises and persists the host's incarnation (a restarted host must outrank
what the mesh remembers of its previous run), builds its `MemberRecord` and starts the node
on the host's loop thread, where all its methods run.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import paglets
from paglets.core.errors import RemoteHostError
from paglets.remote.mesh_types import MemberEvent, MeshConfig
from paglets.remote.mesh_wire import Frame, MemberRecord, encode_frame
from paglets.remote.swim import SwimNode

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["FRAME_PATH", "MeshTransport", "start_mesh"]

FRAME_PATH = "/mesh/frame"
FRAME_TYPE = "application/msgpack"
SEND_TIMEOUT = 2.0  # a frame older than a couple of probe periods is worthless anyway

_log = logging.getLogger("paglets.mesh")


class MeshTransport:
    """Carries frames to peers as HTTP POSTs through the host's client (it carries the key)."""

    __slots__ = ("host", "node")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.node: SwimNode | None = None

    def send(self, frame: Frame, to: str) -> None:
        data = encode_frame(frame)
        try:
            self.host.pool.submit(self._post, to, data)
        except RuntimeError:
            pass  # the pool is closed: the host is stopping and says nothing more

    def _post(self, to: str, data: bytes) -> None:
        url = to.rstrip("/") + FRAME_PATH
        try:
            if self.host.peer_client.push_mesh_frame(to, data):
                return
            self.host.peer_client.request(
                "POST", url, body=data, content_type=FRAME_TYPE, timeout=SEND_TIMEOUT
            )
        except RemoteHostError as exc:
            if "connection refused" in str(exc):
                self._unreachable(to)
        except Exception as exc:  # best effort: a lost frame is just not delivered
            _log.debug("mesh frame to %s lost: %s", to, exc)

    def _unreachable(self, to: str) -> None:
        node, loop = self.node, self.host._loop
        if node is None or loop is None:
            return
        try:
            loop.call_soon_threadsafe(node.on_unreachable, to)
        except RuntimeError:
            pass  # the loop is closed


def _raise_incarnation(host: Host) -> int:
    stored = host.store.get_meta("incarnation")
    incarnation = (int(stored) if stored and stored.isdigit() else 0) + 1
    host.store.set_meta("incarnation", str(incarnation))
    return incarnation


def _member_event(host: Host, event: MemberEvent) -> None:
    member = event.member
    host.events.emit(
        event.kind,
        data={
            "host_id": member.host_id,
            "name": member.name,
            "url": member.url,
            "status": member.status,
            "previous": event.previous,
            "incarnation": member.incarnation,
        },
    )


def _persist_incarnation(host: Host, incarnation: int) -> None:
    try:
        host.store.set_meta("incarnation", str(incarnation))
    except Exception as exc:  # the store is closing: the next start raises it anyway
        _log.debug("incarnation %d not persisted: %s", incarnation, exc)


def _fatal(host: Host, code: str, message: str) -> None:
    """The mesh refuses this host (its name is taken, its id copied): stop, loudly. On another
    thread, since stopping joins the loop thread this runs on."""
    _log.error(
        "host %r leaves the mesh and stops (%s): %s",
        host.name,
        code,
        message,
    )
    threading.Thread(target=host.stop, name=f"paglets-mesh-fatal-{host.name}", daemon=True).start()


def start_mesh(host: Host) -> SwimNode:
    """Build this host's membership node and start it on the host's loop."""
    loop = host._loop
    assert loop is not None, "start the host's loop before its mesh node"
    record = MemberRecord(
        host_id=host.host_id,
        name=host.name,
        url=host.address,
        incarnation=_raise_incarnation(host),
        code_version=host.mesh_version,
        paglets_version=paglets.__version__,
        tags=tuple(host.tags),
        properties={str(k): str(v) for k, v in host.properties.items()},
        capabilities=("events:stream", *(() if host.git_update is None else ("admin:git-update",))),
        auto_update_from_git=host.git_update is not None,  # network.md §5: spreading
        git_head=host.git_update.start_head if host.git_update is not None else None,
    )
    transport = MeshTransport(host)
    config = MeshConfig(
        probe_interval=host.mesh_gossip_interval,
        suspicion_timeout=host.mesh_offline_after,
    )

    def on_fatal(code: str, message: str) -> None:
        _fatal(host, code, message)

    def on_incarnation(incarnation: int) -> None:
        _persist_incarnation(host, incarnation)

    def listener(event: MemberEvent) -> None:
        _member_event(host, event)

    node = SwimNode(
        record,
        scheduler=loop,
        transport=transport,
        config=config,
        seeds=[url for url in host.peers if url.rstrip("/") != host.address.rstrip("/")],
        listener=listener,
        on_fatal=on_fatal,
        on_incarnation=on_incarnation,
    )
    transport.node = node
    loop.call_soon_threadsafe(node.start)
    return node
