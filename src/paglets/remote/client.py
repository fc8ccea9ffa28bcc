"""`HostClient`: the synchronous client of paglets hosts (api.md §14, network.md §1).

Thread-safe; one client serves any number of threads and hosts. Messages travel over one
persistent WebSocket per host (`peer_socket`, the binary fast path; HTTP when a host does
not offer it); everything else over keep-alive HTTP connections (`http_pool`). Layers:

* `request(...)`: one raw HTTP exchange, `(status, headers, body)`, never raising on a
  status (the move protocol reads its own answers).
* `get_json`/`post_json`/`delete_json`: JSON calls whose non-2xx answers raise the error
  the host sent, with its type (`error_from_wire`).
* Agent calls (`send_message`, `agent_info`, `dispatch`, ...): MessagePack, and they follow
  a paglet that moved (`agent_route`): the newest address is cached for later calls of any
  proxy of that agent (`locations`).

Every message send carries a delivery id: the message's explicit `message_id`, else a fresh
one per call, reused by that call's own retries, so the target runs it at most once
(network.md §1.6). Mutating control calls carry an `Idempotency-Key` for the same reason.

The lifecycle calls live in `client_lifecycle`, the host queries and artifact calls in
`client_queries`, the message path in `message_route`: all are methods of `HostClient`.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import ssl
import sys
import threading
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paglets.core.errors import (
    AuthenticationError,
    HostError,
    PagletError,
    RemoteHostError,
    error_from_wire,
)
from paglets.core.ids import validate_agent_id
from paglets.core.messages import FUTURE, ONEWAY, SYNCHRONOUS, FutureReply, Message
from paglets.remote import agent_route
from paglets.remote.agent_route import HttpExchange, decode_answer
from paglets.remote.client_lifecycle import LifecycleCalls
from paglets.remote.client_queries import HostQueries
from paglets.remote.http_pool import Body, ConnectionPool, Headers, split_url
from paglets.remote.locations import Locations
from paglets.remote.message_route import MessageExchange, Outgoing, PostOutcomes, outgoing
from paglets.remote.peer_registry import PeerSockets
from paglets.remote.peer_socket import PendingPost, SocketLost
from paglets.serialization import codec

__all__ = ["HostClient", "RemoteHost"]

JSON = "application/json"
MSGPACK = "application/msgpack"
PROTOCOL = "1"
DEFAULT_TIMEOUT = 10.0
_FUTURE_THREADS = 32
_FRAME_ROOM = 4096  # a peer-socket frame's fields besides the message
_EXIT_FLUSH_SECONDS = 5.0

# Clients with pipelined one-way messages in flight: flushed (bounded) at interpreter exit,
# so that a script's last `send_oneway(wait=False)` calls are not cut off.
_posting: weakref.WeakSet[HostClient] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for client in list(_posting):
        try:
            client.flush(_EXIT_FLUSH_SECONDS)
        except Exception:
            pass


def _key_from_file() -> str | None:
    path = Path.home() / ".paglets" / "mesh.key"
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key or None


class HostClient(LifecycleCalls, HostQueries):
    """A client of paglets hosts; see the module docstring.

    The mesh key comes from `api_key`, else the variable named by `api_key_env`, else
    `~/.paglets/mesh.key` if present. `tls_ca` verifies HTTPS hosts against that CA;
    `tls_cert`/`tls_key` (New) present a client certificate for mutual TLS.

    `in_process` (New) is a routing rule for proxies, not for this client's own methods:
    a `PagletProxy` holding this client calls a host running in this Python process
    directly (architecture §8) unless `in_process=False`, which sends everything over the
    network (tests and benchmarks of the wire path). `HostClient`'s methods always use the
    network. `owner_url` (New) is the URL of the host this client belongs to, if any:
    `proxy.retract()` without a target pulls the paglet there. `peer_socket=False` (New)
    sends messages over HTTP instead of the hosts' WebSocket.

    `on_oneway_failure` (New), if set, is called as `(agent_id, message_id, error)` for a
    pipelined one-way message (`wait=False`) that could not be delivered; without it such
    failures are logged (logger `paglets.client`).
    """

    _default: HostClient | None = None
    _default_lock = threading.Lock()

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        api_key: str | None = None,
        api_key_env: str = "PAGLETS_API_KEY",
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        max_forward_hops: int = 8,
        in_process: bool = True,
        owner_url: str | None = None,
        peer_socket: bool = True,
    ) -> None:
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(
                f"HostClient timeout must be a positive number of seconds, got {timeout!r}"
            )
        if not isinstance(max_forward_hops, int) or max_forward_hops < 0:
            raise ValueError(f"max_forward_hops must be an int >= 0, got {max_forward_hops!r}")
        self.timeout = float(timeout)
        self.api_key_env = api_key_env
        if api_key:
            self.key_source: str | None = "api_key="
        elif os.environ.get(api_key_env):
            api_key, self.key_source = os.environ[api_key_env], api_key_env
        else:
            api_key = _key_from_file()
            self.key_source = "~/.paglets/mesh.key" if api_key else None
        self._api_key = api_key or None
        self.max_forward_hops = max_forward_hops
        self.in_process = in_process
        self.owner_url = owner_url
        self.on_oneway_failure: Callable[[str, str, PagletError], Any] | None = None
        self._posted = False
        context = None
        if tls_ca is not None or tls_cert is not None:
            context = ssl.create_default_context(cafile=None if tls_ca is None else str(tls_ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if tls_cert is not None:
                context.load_cert_chain(str(tls_cert), None if tls_key is None else str(tls_key))
        self._pool = ConnectionPool(context)
        self._base_headers: dict[str, str] = {"X-Paglets-Protocol": PROTOCOL}
        if self._api_key:
            self._base_headers["Authorization"] = f"Bearer {self._api_key}"
        self.locations = Locations()
        self._futures: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures_lock = threading.Lock()
        outcomes = PostOutcomes(self)
        self._sockets = (
            _NoSockets()
            if not peer_socket
            else PeerSockets(
                self._base_headers, context, self.timeout, outcomes.replied, outcomes.lost
            )
        )

    @classmethod
    def default(cls) -> HostClient:
        """The process-wide client (made on first use, with the environment's key)."""
        client = cls._default
        if client is None:
            with cls._default_lock:
                client = cls._default
                if client is None:
                    client = cls._default = cls()
        return client

    @property
    def has_key(self) -> bool:
        return self._api_key is not None

    def push_mesh_frame(self, url: str, data: bytes) -> bool:
        """Hand a membership frame to the host at `url` over its peer socket, unanswered;
        False when there is no socket to it (the caller then POSTs it)."""
        conn = self._sockets.get(url)
        if conn is None:
            return False
        try:
            conn.push({"t": "mesh", "data": data})
        except SocketLost:
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every pipelined one-way message (`wait=False`) is acknowledged by its
        host or reported as failed; False if some still wait after `timeout` seconds."""
        return self._sockets.flush(timeout)

    def close(self) -> None:
        """Close the connections (after waiting, at most `timeout`, for the acknowledgement
        of pipelined one-way messages) and the future-send threads (waiting for none)."""
        self._sockets.flush(self.timeout)
        self._sockets.close()
        self._pool.close()
        _posting.discard(self)
        self._posted = False
        with self._futures_lock:
            pool, self._futures = self._futures, None
        if pool is not None:
            pool.shutdown(wait=False)

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HostClient(timeout={self.timeout}, key={'set' if self._api_key else 'none'})"

    # -- raw exchange ------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Body = None,
        content_type: str = JSON,
        accept: str = MSGPACK,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Headers, bytes]:
        """One exchange with the key, protocol and media headers; any status is returned.
        Raises `RemoteHostError` when the host cannot be reached, `PagletTimeoutError` when
        it does not answer within `timeout`."""
        all_headers = dict(self._base_headers)
        all_headers["Accept"] = accept
        if body is not None:
            all_headers["Content-Type"] = content_type
        if headers:
            all_headers.update(headers)
        return self._pool.exchange(
            method, url, body, all_headers, self.timeout if timeout is None else timeout
        )

    def _error(
        self, status: int, headers: Headers, data: bytes, method: str, url: str
    ) -> PagletError:
        """The error a non-2xx answer stands for, with the host's type when it sent one."""
        try:
            body = decode_answer(headers, data)
        except Exception:
            body = None
        if isinstance(body, dict) and body.get("error_type"):
            exc = error_from_wire(body)
            detail = body.get("detail")
            if detail is not None:
                exc.detail = detail  # type: ignore[attr-defined]
        else:
            text = data[:200].decode("utf-8", "replace").strip() or "(empty body)"
            cls = HostError if status < 500 else RemoteHostError
            exc = cls(f"{method} {url} answered HTTP {status}: {text}")
        if status == 401 or isinstance(exc, AuthenticationError):
            return self._auth_error(url, exc)
        return exc

    def _auth_error(self, url: str, exc: PagletError) -> AuthenticationError:
        _key, _path, base = split_url(url)
        if self._api_key is None:
            fix = (
                f"set {self.api_key_env} to the mesh key (or pass HostClient(api_key=...), or "
                "write it to ~/.paglets/mesh.key with `paglets certs key --write`)"
            )
            text = f"{base} requires the mesh key and this client has none: {fix}"
        else:
            text = (
                f"{base} refused the mesh key from {self.key_source}: every host and client "
                f"of a mesh needs the same key; check {self.api_key_env} or ~/.paglets/mesh.key"
            )
        error = AuthenticationError(text, code=exc.code or "auth-failed")
        error.host_name = exc.host_name
        return error

    # -- JSON helpers ------------------------------------------------------------------

    def _json_call(self, method: str, url: str, payload: Any, timeout: float | None) -> Any:
        body = None if payload is None else codec.encode(payload, format="json")
        if method == "POST" and body is None:
            body = b"{}"
        hops = 0
        while True:
            status, headers, data = self.request(
                method, url, body=body, content_type=JSON, accept=JSON, timeout=timeout
            )
            if 200 <= status < 300:
                return decode_answer(headers, data)
            location = headers.get("Location")
            if status in (307, 308) and location and hops < self.max_forward_hops:
                hops += 1
                url = location
                continue
            raise self._error(status, headers, data, method, url)

    def get_json(self, url: str, *, timeout: float | None = None) -> Any:
        """`GET url` as JSON (binary tags restored); errors raise per api.md §5."""
        return self._json_call("GET", url, None, timeout)

    def post_json(self, url: str, payload: Any = None, *, timeout: float | None = None) -> Any:
        """`POST url` with `payload` as JSON (binary tagged); the answer decoded likewise."""
        return self._json_call("POST", url, payload, timeout)

    def delete_json(self, url: str, *, timeout: float | None = None) -> Any:
        """`DELETE url`; the JSON answer."""
        return self._json_call("DELETE", url, None, timeout)

    # -- MessagePack calls -------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        """A control call outside `/agents/{id}/`, MessagePack both ways."""
        body = None if payload is None else codec.encode(payload)
        headers = {"Idempotency-Key": uuid.uuid4().hex} if idempotent else None
        status, rheaders, data = self.request(
            method, url, body=body, content_type=MSGPACK, headers=headers, timeout=timeout
        )
        if 200 <= status < 300:
            return decode_answer(rheaders, data)
        raise self._error(status, rheaders, data, method, url)

    def _agent_call(
        self,
        url: str,
        agent_id: str,
        method: str,
        suffix: str,
        body: bytes | None,
        *,
        timeout: float,
        deadline: bool = False,
        idempotent: bool = False,
    ) -> Any:
        """A call under `/agents/{id}/` over HTTP, following moves (`agent_route`).
        `suffix` is the route after the id (with query). With `deadline`, the host is told
        how long the caller waits."""
        route = f"/agents/{agent_id}{suffix}"
        headers: dict[str, str] = dict(self._base_headers)
        headers["Accept"] = MSGPACK
        if body is not None:
            headers["Content-Type"] = MSGPACK
        if idempotent:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        exchange = HttpExchange(self, method, route, body, headers, deadline)
        what = f"{method} {url.rstrip('/')}{route}"
        return agent_route.follow(self, url, agent_id, exchange, timeout=timeout, what=what)

    # -- messages ----------------------------------------------------------------------

    def send_message(
        self,
        url: str,
        agent_id: str,
        message: Message,
        *,
        oneway: bool = False,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
        durable: bool = False,
        sender: str | None = None,
        reply_to: str | None = None,
        wait: bool = True,
    ) -> Any:
        """Send `message` to paglet `agent_id` (last known at `url`) and return its reply
        (`None` for `oneway`; `{"queued": True, "message_id": ...}` when an inactive paglet
        queued it). `reply_type` converts the reply strictly (`SerializationError` on a
        mismatch). `sender`/`reply_to` name the sending paglet and its host. The caller's
        `Message` is not changed.

        `oneway` with `wait=False` (New) returns once the message is written to the host's
        peer socket; its acknowledgement is collected later (`flush()` waits for them all)
        and a failure goes to `on_oneway_failure`. Without a peer socket to that host it
        waits for the acknowledgement, as `wait=True`."""
        out = outgoing(
            message,
            ONEWAY if oneway else SYNCHRONOUS,
            oneway,
            activate_if_inactive,
            no_delay,
            durable,
            sender,
            reply_to,
        )
        if oneway and not wait and self._post(url, agent_id, out):
            return None
        return self._send(
            url, agent_id, out, self.timeout if timeout is None else timeout, reply_type
        )

    def _post(self, url: str, agent_id: str, out: Outgoing) -> bool:
        """Pipeline a one-way message on the peer socket; False if it must go the slow way."""
        validate_agent_id(agent_id)
        target = self.locations.start(url.rstrip("/"), agent_id)[0]
        conn = self._sockets.get(target)
        if conn is None or len(out.msg) > conn.max_frame - _FRAME_ROOM:
            return False
        pending = PendingPost(agent_id, out.msg, out.activate, out.no_delay, out.durable)
        try:
            conn.post(out.frame("post", agent_id), pending)
        except SocketLost:
            return False  # not written: send it the ordinary way
        if not self._posted:
            self._posted = True
            _posting.add(self)
        return True

    def _send(self, url: str, agent_id: str, out: Outgoing, timeout: float, reply_type: Any) -> Any:
        answer = agent_route.follow(
            self,
            url,
            agent_id,
            MessageExchange(self, agent_id, out),
            timeout=timeout,
            what=f"POST {url.rstrip('/')}/agents/{agent_id}/messages",
        )
        if out.oneway:
            return None
        if not isinstance(answer, dict) or "result" not in answer:
            return answer  # {"queued": true, "message_id": ...}
        result = answer["result"]
        if reply_type is None:
            return result
        return codec.convert(result, reply_type, root="reply")

    def _future_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._futures
        if pool is None:
            with self._futures_lock:
                pool = self._futures
                if pool is None:
                    pool = self._futures = concurrent.futures.ThreadPoolExecutor(
                        max_workers=_FUTURE_THREADS, thread_name_prefix="paglets-client-send"
                    )
        return pool

    def send_future(
        self,
        url: str,
        agent_id: str,
        message: Message,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
        sender: str | None = None,
        reply_to: str | None = None,
    ) -> FutureReply:
        """Send on this client's small thread pool; the reply (or error) arrives in the
        returned `FutureReply`. A message that cannot be encoded raises here, at once."""
        validate_agent_id(agent_id)
        out = outgoing(
            message, FUTURE, False, activate_if_inactive, no_delay, False, sender, reply_to
        )
        wait = self.timeout if timeout is None else timeout
        future = self._future_pool().submit(self._send, url, agent_id, out, wait, reply_type)
        return FutureReply(future, timeout=timeout)

    # -- agent queries -----------------------------------------------------------------

    def agent_info(
        self, url: str, agent_id: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """The paglet's summary (api.md §11 `info()`), wherever it moved."""
        return self._agent_call(
            url, agent_id, "GET", "", None, timeout=self.timeout if timeout is None else timeout
        )

    def agent_state(
        self, url: str, agent_id: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """The summary plus `state` (builtins, bytes native) and `state_source`."""
        return self._agent_call(
            url,
            agent_id,
            "GET",
            "/state",
            None,
            timeout=self.timeout if timeout is None else timeout,
        )

    def get_state(
        self, url: str, agent_id: str, state_cls: Any = None, *, timeout: float | None = None
    ) -> Any:
        """The paglet's state as `state_cls`. Without `state_cls`, as its own class when
        that class's module is already imported in this process (a remote answer never
        makes this process import anything), else as a dict."""
        answer = self.agent_state(url, agent_id, timeout=timeout)
        state = answer.get("state")
        if state_cls is None:
            state_cls = _already_imported(answer.get("state_class_name"))
            if state_cls is None:
                return state
        return codec.convert(state, state_cls, root="state")

    def mailbox(self, url: str, agent_id: str) -> dict[str, int]:
        """`{queued, in_flight, delivered, failed, held}` of the paglet's mailbox."""
        return self._agent_call(url, agent_id, "GET", "/mailbox", None, timeout=self.timeout)

    def location(self, url: str, agent_id: str) -> dict[str, Any]:
        """What the host at `url` knows of the paglet's location (never redirects)."""
        validate_agent_id(agent_id)
        return self._call("GET", f"{url.rstrip('/')}/agents/{agent_id}/location")


class _NoSockets:
    """`peer_socket=False`: every message goes over HTTP."""

    def get(self, url: str) -> None:
        return None

    def flush(self, timeout: float | None) -> bool:
        return True

    def close(self) -> None:
        pass


def _already_imported(name: Any) -> type | None:
    """The class `module:qualname` if its module is already imported here, else None."""
    if not isinstance(name, str) or ":" not in name:
        return None
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        return None
    value: Any = module
    for part in qualname.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value if isinstance(value, type) else None


class RemoteHost:
    """A host that runs elsewhere, seen as the `delivery` pair (`send`, `send_future`)
    that `Host._send_from` calls on an in-process host: paglets' context sends to a remote
    `host_url` go through the sending host's client, naming the sender."""

    __slots__ = ("client", "reply_to", "url")

    def __init__(self, client: HostClient, url: str, reply_to: str | None) -> None:
        self.client = client
        self.url = url
        self.reply_to = reply_to

    @property
    def delivery(self) -> RemoteHost:
        return self

    def send(
        self,
        agent_id: str,
        message: Message,
        *,
        timeout: float | None = None,
        reply_type: Any = None,
        sender: str | None = None,
    ) -> Any:
        return self.client.send_message(
            self.url,
            agent_id,
            message,
            timeout=timeout,
            reply_type=reply_type,
            sender=sender,
            reply_to=self.reply_to if sender is not None else None,
        )

    def send_future(
        self,
        agent_id: str,
        message: Message,
        *,
        timeout: float | None = None,
        reply_type: Any = None,
        sender: str | None = None,
    ) -> FutureReply:
        return self.client.send_future(
            self.url,
            agent_id,
            message,
            timeout=timeout,
            reply_type=reply_type,
            sender=sender,
            reply_to=self.reply_to if sender is not None else None,
        )
