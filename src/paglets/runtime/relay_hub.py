"""The hub side of the relay (network.md §3.8): `GET /relay/ws`, the registry of connected
nodes, `GET /relay/diagnostics`, and the requests nodes send through the hub.

A node names itself in the upgrade (`X-Paglets-Relay-Name`, `X-Paglets-Host-Id`), so a name
held by another host id is refused with a plain `409 name-taken` before any WebSocket
exists; the `hello` frame that follows must agree. The same host id replaces its old socket
(a node that reconnects after a network change). A name stays bound to its host id while
the node is connected and not yet offline; then another host may take it.

The node's URL, `HUB_URL/relay/hosts/<name>`, is built here from this host's own address and
sent in `welcome`; the node publishes it in the mesh, whose probes reach the node through the
proxy route (`relay_proxy`) like any other request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from aiohttp import WSMsgType, web

from paglets.remote.relay_frames import (
    MAX_FRAME_BYTES,
    PING_SECONDS,
    PROTOCOL,
    SUBPROTOCOL,
    Cancel,
    Hello,
    RelaySettings,
    Req,
    Welcome,
    decode,
)
from paglets.runtime.http_wire import refuse, reply
from paglets.runtime.relay_http import error_body, perform
from paglets.runtime.relay_link import Incoming, RelayLink

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["NodeEntry", "RelayHub", "mount"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOST_ID_RE = re.compile(r"^[0-9a-f]{32}$")
HELLO_SECONDS = 10.0


class NodeEntry:
    """A relay node this hub knows: its binding (name → host id) and its current link."""

    __slots__ = (
        "cancelled",
        "delivered",
        "hello",
        "host_id",
        "last_error",
        "last_frame",
        "link",
        "name",
        "timeouts",
    )

    def __init__(self, name: str, host_id: str) -> None:
        self.name = name
        self.host_id = host_id
        self.link: RelayLink | None = None
        self.hello: Hello | None = None
        self.last_frame = time.monotonic()
        self.last_error: str | None = None
        self.delivered = 0
        self.timeouts = 0
        self.cancelled = 0

    def seen(self) -> float:
        link = self.link
        return link.last_frame if link is not None else self.last_frame

    def online(self, offline_after: float) -> bool:
        link = self.link
        if link is None or link.closed:
            return False
        return time.monotonic() - link.last_frame <= offline_after


class RelayHub:
    """This host's relay nodes. All methods run on the host's event loop."""

    def __init__(self, host: Host, settings: RelaySettings) -> None:
        self.host = host
        self.settings = settings
        self.nodes: dict[str, NodeEntry] = {}
        self._session: aiohttp.ClientSession | None = None
        self._forwards: dict[tuple[int, int], asyncio.Task[Any]] = {}

    def relay_url(self, name: str) -> str:
        return f"{self.host.address.rstrip('/')}/relay/hosts/{name}"

    # -- the registry ----------------------------------------------------------------------

    def _check_name(self, name: str, host_id: str) -> None:
        """409 `name-taken` when another host id holds `name` here or in the mesh."""
        entry = self.nodes.get(name)
        offline_after = self.settings.offline_after
        if entry is not None and entry.host_id != host_id and entry.online(offline_after):
            refuse(
                f"relay name {name!r} is taken on hub {self.host.name!r} by host id "
                f"{entry.host_id} (connected); start this node with another --name",
                code="name-taken",
                detail={"name": name, "holder_host_id": entry.host_id},
            )
        if name == self.host.name and host_id != self.host.host_id:
            refuse(
                f"relay name {name!r} is the hub's own name; start the node with another --name",
                code="name-taken",
                detail={"name": name, "holder_url": self.host.address},
            )
        node = self.host.mesh
        member = node.member(name) if node is not None else None
        if (
            member is not None
            and member.host_id != host_id
            and member.status == "alive"
            and not member.url.startswith(self.relay_url(name))
        ):
            refuse(
                f"name {name!r} is used in the mesh by host id {member.host_id} at {member.url}; "
                "start this node with another --name",
                code="name-taken",
                detail={"name": name, "holder_url": member.url},
            )

    def _register(self, hello: Hello, link: RelayLink) -> NodeEntry:
        entry = self.nodes.get(hello.name)
        if entry is None or entry.host_id != hello.host_id:
            entry = self.nodes[hello.name] = NodeEntry(hello.name, hello.host_id)
        old = entry.link
        if old is not None and old is not link:
            old.close("replaced by a newer connection of the same node")
        entry.link = link
        entry.hello = hello
        entry.last_error = None
        return entry

    def _unregister(self, entry: NodeEntry, link: RelayLink) -> None:
        if entry.link is link:
            entry.last_frame = link.last_frame
            entry.last_error = link.error
            entry.link = None

    def entry_for(self, name: str) -> NodeEntry:
        """The node called `name` if it is online, else the 404/503 refusal."""
        entry = self.nodes.get(name)
        if entry is None:
            refuse(
                f"no relay node named {name!r} is connected to hub {self.host.name!r}",
                code="no-route",
                status=404,
            )
        if not entry.online(self.settings.offline_after):
            age = time.monotonic() - entry.seen()
            refuse(
                f"relay node {name!r} is offline: nothing heard from it for {age:.0f}s "
                f"(hub {self.host.name!r})",
                code="relay-node-offline",
                error_type="RemoteHostError",
                headers={"Retry-After": "5"},
                detail={"last_frame_age_s": round(age, 1), "last_error": entry.last_error},
            )
        return entry

    # -- GET /relay/ws ---------------------------------------------------------------------

    async def connect(self, request: web.Request) -> web.StreamResponse:
        if not self.settings.hub:
            refuse(
                f"host {self.host.name!r} does not accept relay nodes (--no-relay-hub)",
                code="no-route",
                status=404,
            )
        name = request.headers.get("X-Paglets-Relay-Name", "")
        host_id = request.headers.get("X-Paglets-Host-Id", "")
        if not NAME_RE.match(name) or not HOST_ID_RE.match(host_id):
            refuse(
                "GET /relay/ws needs X-Paglets-Relay-Name (a host name) and X-Paglets-Host-Id "
                "(32 hex) headers; start the node with paglets host --connect-to HUB_URL",
                code="bad-relay-hello",
                status=400,
            )
        self._check_name(name, host_id)
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,), max_msg_size=MAX_FRAME_BYTES, compress=False
        )
        if not ws.can_prepare(request).ok:
            refuse("GET /relay/ws is a WebSocket upgrade", code="bad-relay-hello", status=400)
        await ws.prepare(request)
        hello = await self._hello(ws, name, host_id)
        if hello is None:
            return ws
        link = RelayLink(ws, parity=0, serve=self._serve, on_cancel=self._cancelled)
        entry = self._register(hello, link)
        members = self._members()
        await link.send(
            Welcome(PROTOCOL, self.host.host_id, self.host.name, self.relay_url(name), members)
        )
        events = self.host.events
        events.emit("relay-node-connected", data={"name": name, "host_id": host_id})
        pinger = asyncio.get_running_loop().create_task(self._pings(link))
        try:
            await link.run()
        finally:
            pinger.cancel()
            self._unregister(entry, link)
            events.emit(
                "relay-node-disconnected",
                data={"name": name, "host_id": host_id},
                error=f"relay node {name!r} disconnected: {link.error}",
            )
        return ws

    async def _hello(self, ws: web.WebSocketResponse, name: str, host_id: str) -> Hello | None:
        try:
            msg = await ws.receive(timeout=HELLO_SECONDS)
        except TimeoutError:
            await ws.close(code=4408, message=b"no hello")
            return None
        hello: Any = None
        if msg.type == WSMsgType.BINARY:
            with contextlib.suppress(msgspec.MsgspecError, ValueError):
                hello = decode(msg.data)
        if not isinstance(hello, Hello) or hello.name != name or hello.host_id != host_id:
            await ws.close(code=4400, message=b"the first frame must be a matching hello")
            return None
        if hello.protocol != PROTOCOL:
            await ws.close(code=4426, message=f"relay protocol {PROTOCOL} only".encode())
            return None
        try:
            self._check_name(name, host_id)  # another node may have taken it meanwhile
        except Exception:
            await ws.close(code=4409, message=b"name-taken")
            return None
        return hello

    def _members(self) -> list[dict[str, str]]:
        node = self.host.mesh
        if node is None:
            return []
        return [
            {"name": m.name, "url": m.url, "host_id": m.host_id}
            for m in node.members()
            if m.status == "alive"
        ]

    async def _pings(self, link: RelayLink) -> None:
        """Ping every 15 s (more often when --relay-offline-after is short, so that a
        healthy node's pongs keep it online); drop a link silent for 4 offline periods."""
        offline_after = self.settings.offline_after
        every = min(PING_SECONDS, offline_after / 3)
        limit = offline_after * 4
        while not link.closed:
            link.ping()  # the first one at once: the round-trip time is known from the start
            await asyncio.sleep(every)
            if time.monotonic() - link.last_frame > limit:
                link.close(f"nothing heard for {limit:g}s")
                return

    # -- requests from nodes (node → hub, when the node cannot reach a host itself) ---------

    def _serve(self, link: RelayLink, req: Req, body: Incoming | None) -> None:
        task = link.spawn(self._forward(link, req, body))
        key = (id(link), req.sid)
        self._forwards[key] = task
        task.add_done_callback(lambda _t: self._forwards.pop(key, None))

    def _cancelled(self, link: RelayLink, frame: Cancel) -> None:
        task = self._forwards.pop((id(link), frame.sid), None)
        if task is not None:
            task.cancel()

    async def _forward(self, link: RelayLink, req: Req, body: Incoming | None) -> None:
        name = self.host.name
        if not req.target or not req.target.startswith(("http://", "https://")):
            data = error_body(
                "a relayed request from a node needs a target URL",
                code="bad-relay-request",
                status=400,
                error_type="HostError",
                host_name=name,
            )
            await link.respond(req.sid, 400, [("Content-Type", "application/json")], data)
            return
        timeout = req.deadline_ms / 1000 if req.deadline_ms > 0 else None
        try:
            status, headers, answer = await perform(
                self._client(), req.target, req, body, self._auth(), timeout=timeout
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            data = error_body(
                f"hub {name!r} could not reach {req.target} for a relay node either: {exc}",
                code="relay-unreachable",
                status=502,
                error_type="RemoteHostError",
                host_name=name,
            )
            with contextlib.suppress(ConnectionError):
                await link.respond(req.sid, 502, [("Content-Type", "application/json")], data)
            return
        with contextlib.suppress(ConnectionError):
            await link.respond(req.sid, status, headers, answer)

    def _auth(self) -> dict[str, str]:
        key = self.host.api_key
        headers = {"X-Paglets-Host-Id": self.host.host_id}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            import ssl

            cert, key, ca = self.host.tls
            context: Any = True
            if ca or cert:
                context = ssl.create_default_context(cafile=ca)
                if cert:
                    context.load_cert_chain(cert, key)
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=256), auto_decompress=False
            )
        return session

    # -- GET /relay/diagnostics ------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        listed = []
        for entry in self.nodes.values():
            link = entry.link
            listed.append(
                {
                    "name": entry.name,
                    "host_id": entry.host_id,
                    "url": self.relay_url(entry.name),
                    "online": entry.online(self.settings.offline_after),
                    "connected": link is not None and not link.closed,
                    "last_frame_age_s": round(now - entry.seen(), 3),
                    "in_flight": link.in_flight if link is not None else 0,
                    "queue_depth": 0,  # the hub never queues: it refuses past the limit
                    "rtt_ms": None if link is None or link.rtt_ms is None else link.rtt_ms,
                    "delivered": entry.delivered,
                    "timeouts": entry.timeouts,
                    "cancelled": entry.cancelled,
                    "last_error": entry.last_error,
                }
            )
        return listed

    async def diagnostics(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"hub": self.settings.hub, "nodes": self.describe()}
        node = getattr(self.host, "relay_node", None)
        if node is not None:
            body["connected_to"] = node.describe()
        return reply(request, body)

    async def close(self, app: web.Application | None = None) -> None:
        for entry in list(self.nodes.values()):
            if entry.link is not None:
                with contextlib.suppress(Exception):
                    await entry.link.ws.close(code=1001, message=b"hub stopping")
                entry.link.close("the hub is stopping")
        if self._session is not None:
            await self._session.close()
            self._session = None


def mount(app: web.Application, host: Host) -> RelayHub:
    """Serve the relay routes on `app`: `/relay/ws`, `/relay/diagnostics` and the proxy
    `/relay/hosts/{name}/...`. The hub is `host.relay_hub`."""
    from paglets.runtime.relay_proxy import proxy_handler

    settings = getattr(host, "relay_settings", None) or RelaySettings()
    hub = RelayHub(host, settings)
    host.relay_hub = hub  # type: ignore[attr-defined]
    proxy = proxy_handler(hub)
    app.router.add_get("/relay/ws", hub.connect)
    app.router.add_get("/relay/diagnostics", hub.diagnostics)
    app.router.add_route("*", "/relay/hosts/{name}", proxy)
    app.router.add_route("*", "/relay/hosts/{name}/{tail:.*}", proxy)
    app.on_shutdown.append(hub.close)
    return hub
