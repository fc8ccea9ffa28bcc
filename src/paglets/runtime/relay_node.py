"""The node side of the relay (network.md §3.8): `paglets host --connect-to HUB_URL`.

The node keeps one WebSocket to `HUB_URL/relay/ws` (reconnecting 1 s doubling to 30 s,
jittered), introduces itself (`hello`) and takes the URL the hub built for it (`welcome`) as
its address: proxies, events and its mesh record name `HUB_URL/relay/hosts/<name>`. It still
serves its routes on loopback, and carries out each relayed `req` as an HTTP request to that
loopback port: every check of a direct request (key, media type, limits, idempotency) runs
unchanged.

What happens to each relayed request, and why a timed-out one never runs twice, is in
`relay_deliveries`.

Outbound calls go direct; one that cannot reach its host at all (refused, unreachable) is
sent as a `req` through the hub (`RelayFallbackPool`). Paglets on this node talk to each
other locally (the relay URL is this host's own address): no hairpin through the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from typing import TYPE_CHECKING, Any

import aiohttp

import paglets
from paglets.core.errors import HostError
from paglets.remote.relay_frames import (
    MAX_FRAME_BYTES,
    PING_SECONDS,
    PROTOCOL,
    SUBPROTOCOL,
    Hello,
    Welcome,
    decode,
)
from paglets.runtime import local_hosts
from paglets.runtime.relay_deliveries import Deliveries
from paglets.runtime.relay_fallback import RelayFallbackPool
from paglets.runtime.relay_link import RelayLink

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["RelayNode", "start_relay_node"]

log = logging.getLogger("paglets.relay")

START_WAIT = 10.0  # start() waits this long for the first welcome before going on without
HANDSHAKE_SECONDS = 10.0
SILENT_HUB = 3 * PING_SECONDS  # a hub heard from for this long is reconnected to
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0


class HandshakeRefused(HostError):
    """The hub refused this node for good (name taken, wrong key): no point retrying."""


class RelayNode:
    """This host's connection to its hub. Its coroutines run on the host's loop."""

    def __init__(self, host: Host) -> None:
        assert host.connect_to is not None
        self.host = host
        self.hub_url = host.connect_to.rstrip("/")
        self.local_url = _local_url(host)  # where relayed requests are carried out
        self.local_ssl: Any = True
        self.relay_url = f"{self.hub_url}/relay/hosts/{host.name}"
        self.hub_id = ""
        self.hub_name = ""
        self.link: RelayLink | None = None
        self.deliveries = Deliveries(self)
        self.connects = 0
        self.last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        """Connect (waiting up to START_WAIT for the first welcome), keep connecting."""
        loop = self.host._loop
        assert loop is not None

        async def begin() -> asyncio.Future[None]:
            self._first = loop.create_future()
            # Read its outcome even when start() stopped waiting (no "never retrieved").
            self._first.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._task = loop.create_task(self._run_forever())
            return self._first

        first = asyncio.run_coroutine_threadsafe(begin(), loop).result(5)
        waiter = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(asyncio.shield(first), START_WAIT), loop
        )
        try:
            waiter.result(START_WAIT + 1)
        except HandshakeRefused:
            self.stop()
            raise
        except Exception:  # the hub is not reachable yet: go on, the loop keeps trying
            log.warning(
                "host %r: hub %s not reachable yet (%s); retrying in the background",
                self.host.name,
                self.hub_url,
                self.last_error,
            )
            self._adopt(self.relay_url)

    def stop(self) -> None:
        loop = self.host._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(3)

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        link = self.link
        if link is not None:
            with contextlib.suppress(Exception):
                await link.ws.close(code=1001, message=b"node stopping")
            link.close("the node is stopping")
        if self._session is not None:
            await self._session.close()

    # -- the connection ----------------------------------------------------------------

    def client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            cert, key, ca = self.host.tls
            context: Any = True
            if ca or cert:
                context = ssl.create_default_context(cafile=ca)
                if cert:
                    context.load_cert_chain(cert, key)
            if cert:  # our own port: present the certificate, the name need not match
                local = ssl.create_default_context()
                local.check_hostname = False
                local.verify_mode = ssl.CERT_NONE
                local.load_cert_chain(cert, key)
                self.local_ssl = local
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=256), auto_decompress=False
            )
        return self._session

    def credentials(self) -> dict[str, str]:
        headers = {"X-Paglets-Protocol": str(PROTOCOL)}
        if self.host.api_key:
            headers["Authorization"] = f"Bearer {self.host.api_key}"
        return headers

    async def _run_forever(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                await self._connect_once()
                delay = BACKOFF_FIRST  # it was up: start over
            except HandshakeRefused as exc:
                self.last_error = str(exc)
                log.error("host %r: %s", self.host.name, exc)
                if self._first is not None and not self._first.done():
                    self._first.set_exception(exc)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("host %r: relay to %s: %s", self.host.name, self.hub_url, exc)
                if self._first is not None and not self._first.done():
                    self._first.set_exception(ConnectionError(self.last_error))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(BACKOFF_MAX, delay * 2)

    async def _connect_once(self) -> None:
        host = self.host
        headers = {
            **self.credentials(),
            "X-Paglets-Relay-Name": host.name,
            "X-Paglets-Host-Id": host.host_id,
        }
        try:
            ws = await self.client().ws_connect(
                f"{self.hub_url}/relay/ws",
                protocols=(SUBPROTOCOL,),
                headers=headers,
                max_msg_size=MAX_FRAME_BYTES,
                # aiohttp's stubs miss ClientWSTimeout's fields; the call is right at runtime.
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),  # pyright: ignore[reportCallIssue]
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403, 409):
                why = (
                    "the name is taken by another host id; start this node with another --name"
                    if exc.status == 409
                    else "the mesh key was refused; give every host the same key"
                )
                raise HandshakeRefused(
                    f"hub {self.hub_url} refused relay node {host.name!r} (HTTP {exc.status}): "
                    f"{why}",
                    code="name-taken" if exc.status == 409 else "auth-failed",
                ) from None
            raise
        try:
            await ws.send_bytes(
                _encode_hello(host.name, host.host_id, host.mesh_version, list(host.tags))
            )
            msg = await ws.receive(timeout=HANDSHAKE_SECONDS)
            welcome = decode(msg.data) if msg.type == aiohttp.WSMsgType.BINARY else None
            if not isinstance(welcome, Welcome):
                reason = ws.close_code, msg.extra if msg.type == aiohttp.WSMsgType.CLOSE else msg
                if ws.close_code == 4409:
                    raise HandshakeRefused(
                        f"hub {self.hub_url} refused relay node {host.name!r}: the name is taken",
                        code="name-taken",
                    )
                raise ConnectionError(f"hub {self.hub_url} sent no welcome ({reason})")
        except BaseException:
            await ws.close()
            raise
        deliveries = self.deliveries
        link = RelayLink(ws, parity=1, serve=deliveries.serve, on_cancel=deliveries.cancel)
        self.link = link
        self.hub_id, self.hub_name = welcome.hub_id, welcome.hub_name
        self.connects += 1
        self.last_error = None
        self._adopt(welcome.relay_url)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        events = host.events
        events.emit("relay-connected", data={"hub": self.hub_url, "relay_url": self.relay_url})
        pinger = asyncio.get_running_loop().create_task(self._pings(link))
        try:
            await link.run()
        finally:
            pinger.cancel()
            self.last_error = link.error
            if self.link is link:
                self.link = None
            events.emit(
                "relay-disconnected",
                data={"hub": self.hub_url},
                error=f"lost the relay connection to {self.hub_url}: {link.error}",
            )

    async def _pings(self, link: RelayLink) -> None:
        while not link.closed:
            self._sync_record()
            await asyncio.sleep(PING_SECONDS)
            if time.monotonic() - link.last_frame > SILENT_HUB:
                link.close(f"hub silent for {SILENT_HUB:g}s")
                return
            link.ping()

    # -- the address -------------------------------------------------------------------

    def _adopt(self, url: str) -> None:
        """Make the relay URL this host's address (proxies, events, mesh record)."""
        host = self.host
        self.relay_url = url
        if host.address != url:
            old = host.address
            host.address = url
            host.events.host_address = url
            if old != self.local_url:
                local_hosts.unregister(old, host)
            local_hosts.register(url, host)
            client = host.client
            if client is not None and hasattr(client, "owner_url"):
                client.owner_url = url
        self._sync_record()

    def _sync_record(self, tries: int = 40) -> None:
        """The mesh record names the relay URL and the hub (`relay_via`). At start the mesh
        node comes after the first welcome: look again shortly until it is there."""
        node = self.host.mesh
        if node is None or not node.running:
            loop = self.host._loop
            if tries > 0 and self.host.mesh_enabled and loop is not None:
                loop.call_soon_threadsafe(loop.call_later, 0.25, self._sync_record, tries - 1)
            return
        record = node.record
        if record.url != self.relay_url or (self.hub_id and record.relay_via != self.hub_id):
            node.update_record(url=self.relay_url, relay_via=self.hub_id or None)

    # -- requests from the hub ---------------------------------------------------------

    # -- requests to the hub (when this node cannot reach a host itself) -------------

    def is_hub(self, url: str) -> bool:
        return url.rstrip("/").startswith(self.hub_url)

    def describe(self) -> dict[str, Any]:
        link = self.link
        return {
            "hub_url": self.hub_url,
            "relay_url": self.relay_url,
            "hub_name": self.hub_name,
            "connected": link is not None and not link.closed,
            "connects": self.connects,
            "rtt_ms": None if link is None else link.rtt_ms,
            **self.deliveries.describe(),
            "last_error": self.last_error,
        }


def _local_url(host: Host) -> str:
    bind = host.bind_host
    if bind in ("0.0.0.0", ""):
        bind = "127.0.0.1"
    elif bind == "::":
        bind = "::1"
    shown = f"[{bind}]" if ":" in bind else bind
    return f"{'https' if host.tls[0] else 'http'}://{shown}:{host.port}"


def _encode_hello(name: str, host_id: str, code_version: str, tags: list[str]) -> bytes:
    from paglets.remote.relay_frames import encode

    return encode(
        Hello(
            PROTOCOL,
            name,
            host_id,
            code_version=code_version,
            paglets_version=paglets.__version__,
            tags=tags,
        )
    )


def start_relay_node(host: Host) -> RelayNode:
    """Connect `host` to its hub (`host.connect_to`), route its failed outbound calls
    through it, and make the relay URL its address. Raises `HostError` (code `name-taken`
    or `auth-failed`) when the hub refuses the node."""
    node = RelayNode(host)
    host.relay_node = node  # type: ignore[attr-defined]
    if node.hub_url not in (p.rstrip("/") for p in host.peers):
        host.peers.append(node.hub_url)  # the mesh joins through the hub
    client = host.peer_client
    client._pool = RelayFallbackPool(client._pool, node)
    node.start()
    return node
