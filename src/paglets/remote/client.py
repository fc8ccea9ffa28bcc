"""`HostClient`: the synchronous client of a host's HTTP API (api.md §14, network.md §1).

Thread-safe; one client serves any number of threads and hosts over keep-alive connections
(`http_pool`). Three layers:

* `request(...)`: one raw exchange, `(status, headers, body)`, never raising on a status
  (the move protocol reads its own answers).
* `get_json`/`post_json`/`delete_json`: JSON calls whose non-2xx answers raise the error
  the host sent, with its type (`error_from_wire`).
* Agent calls (`send_message`, `agent_info`, `dispatch`, ...): MessagePack both ways, and
  they follow a paglet that moved: a `307` with a `moved` block is followed by this client
  (never by the HTTP layer), at most `max_forward_hops` times, with epochs never going
  back, re-sending the same bytes (so the same delivery id); the newest address is cached
  for later calls of any proxy of that agent (`locations`). A chain that breaks (a host on
  it gone, or its pointer expired) is resolved by asking the paglet's home host.

Every message send carries a delivery id: the message's explicit `message_id`, else a fresh
one per call, reused by that call's own retries, so the target runs it at most once
(network.md §1.6). Mutating control calls carry an `Idempotency-Key` for the same reason.
"""

from __future__ import annotations

import concurrent.futures
import os
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import msgspec

from paglets.core.errors import (
    AuthenticationError,
    HostError,
    InvalidAgentError,
    PagletError,
    PagletTimeoutError,
    RemoteHostError,
    SerializationError,
    TransferError,
    error_from_wire,
)
from paglets.core.ids import validate_agent_id
from paglets.core.messages import FUTURE, ONEWAY, SYNCHRONOUS, FutureReply, Message
from paglets.remote.http_pool import ConnectionPool, Headers, split_url
from paglets.remote.locations import Locations
from paglets.remote.proxy import PagletProxy
from paglets.remote.transfer import TransferTicket
from paglets.runtime.local_hosts import normalise_url
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.artifacts import ArtifactRef
    from paglets.persistence.policy import DeactivationRequest

__all__ = ["HostClient", "RemoteHost"]

JSON = "application/json"
MSGPACK = "application/msgpack"
PROTOCOL = "1"
DEFAULT_TIMEOUT = 10.0
_GRACE = 1.0  # extra seconds a socket waits past a send's deadline, for the host's own 504
_FUTURE_THREADS = 32

_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE_MSGPACK = msgspec.msgpack.Decoder().decode
_DECODE_JSON = msgspec.json.Decoder().decode


def _decode_answer(headers: Headers, data: bytes) -> Any:
    """A response body as builtins: MessagePack as is, JSON with binary tags restored."""
    if not data:
        return None
    ctype = headers.get("Content-Type") or ""
    if "msgpack" in ctype:
        return _DECODE_MSGPACK(data)
    return codec.restore_json_safe(_DECODE_JSON(data))


def _key_from_file() -> str | None:
    path = Path.home() / ".paglets" / "mesh.key"
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key or None


class HostClient:
    """A client of paglets hosts; see the module docstring.

    The mesh key comes from `api_key`, else the variable named by `api_key_env`, else
    `~/.paglets/mesh.key` if present. `tls_ca` verifies HTTPS hosts against that CA;
    `tls_cert`/`tls_key` (New) present a client certificate for mutual TLS.

    `in_process` (New) is a routing rule for proxies, not for this client's own methods:
    a `PagletProxy` holding this client calls a host running in this Python process
    directly (architecture §8) unless `in_process=False`, which sends everything over the
    network (tests and benchmarks of the wire path). `HostClient`'s methods always use the
    network. `owner_url` (New) is the URL of the host this client belongs to, if any:
    `proxy.retract()` without a target pulls the paglet there.
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

    def close(self) -> None:
        """Close idle connections and the future-send threads (waiting for none)."""
        self._pool.close()
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
        body: bytes | None = None,
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
            body = _decode_answer(headers, data)
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
                return _decode_answer(headers, data)
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
            return _decode_answer(rheaders, data)
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
        """A call under `/agents/{id}/` at the paglet's newest known address, following
        moves (see the module docstring). `suffix` is the route after the id (with query).
        With `deadline`, the host is told how long the caller waits (X-Paglets-Deadline-Ms,
        shrinking at each hop) and the socket waits a little longer for the host's 504."""
        validate_agent_id(agent_id)
        origin = url.rstrip("/")
        target, floor, home = self.locations.start(origin, agent_id)
        route = f"/agents/{agent_id}{suffix}"
        headers: dict[str, str] = dict(self._base_headers)
        headers["Accept"] = MSGPACK
        if body is not None:
            headers["Content-Type"] = MSGPACK
        if idempotent:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        ends = time.monotonic() + timeout
        hops = 0
        tried: set[str] = set()
        asked_home = False
        pool = self._pool
        while True:
            remaining = ends - time.monotonic()
            if remaining <= 0:
                raise PagletTimeoutError(
                    f"{method} {origin}{route}: no answer within {timeout:g}s "
                    f"(after {hops} forwarding hop(s))"
                )
            wait = remaining
            if deadline:
                headers["X-Paglets-Deadline-Ms"] = str(max(1, int(remaining * 1000)))
                wait = remaining + _GRACE
            full = target + route
            failure: PagletError
            try:
                status, rheaders, data = pool.exchange(method, full, body, headers, wait)
            except PagletTimeoutError:
                raise
            except RemoteHostError as exc:
                failure = exc
            else:
                if 200 <= status < 300:
                    return _decode_answer(rheaders, data)
                if status == 307:
                    moved = self._moved(rheaders, data)
                    if moved is not None:
                        new_url, epoch, moved_home = moved
                        if hops >= self.max_forward_hops:
                            raise InvalidAgentError(
                                f"paglet {agent_id!r} not found: gave up after "
                                f"{hops} forwarding hops from {origin}",
                                code="agent-not-found",
                            )
                        if epoch < floor:
                            failure = InvalidAgentError(
                                f"paglet {agent_id!r}: {target} points back to epoch {epoch} "
                                f"after epoch {floor} was seen; stale forwarding pointer",
                                code="agent-not-found",
                            )
                        else:
                            hops += 1
                            floor = epoch
                            home = moved_home or home
                            self.locations.note(agent_id, target, new_url, epoch, home)
                            target = new_url
                            continue
                    else:
                        raise self._error(status, rheaders, data, method, full)
                else:
                    failure = self._error(status, rheaders, data, method, full)
                    if not isinstance(failure, InvalidAgentError) or failure.code == "disposed":
                        raise failure
            # The paglet is not where we looked: a host on the chain is gone, or it has no
            # record (its pointer expired). Try the proxy's own URL, then ask home.
            tried.add(normalise_url(target))
            if normalise_url(origin) not in tried:
                # Back to the start, once: its pointer may be older than what we had seen.
                tried.add(normalise_url(origin))
                self.locations.forget(agent_id)
                target, floor = origin, 0
                continue
            home = home or self.locations.home_of(agent_id)
            if home and not asked_home:
                asked_home = True
                found = self._ask_home(home, agent_id, floor, tried)
                if found is not None:
                    target, floor = found
                    self.locations.note(agent_id, home, target, floor, home)
                    hops += 1
                    continue
            if isinstance(failure, InvalidAgentError) and target != origin and hops:
                failure = InvalidAgentError(
                    f"paglet {agent_id!r} could not be found: {failure}",
                    code="agent-not-found",
                )
            raise failure

    @staticmethod
    def _moved(headers: Headers, data: bytes) -> tuple[str, int, str | None] | None:
        try:
            body = _decode_answer(headers, data)
        except Exception:
            body = None
        moved = body.get("moved") if isinstance(body, dict) else None
        if not isinstance(moved, dict):
            return None
        url = moved.get("host_url")
        if not isinstance(url, str) or not url:
            return None
        try:
            epoch = int(moved.get("epoch") or headers.get("X-Paglets-Epoch") or 0)
        except (TypeError, ValueError):
            epoch = 0
        home = moved.get("home_url")
        return url.rstrip("/"), epoch, home if isinstance(home, str) and home else None

    def _ask_home(
        self, home: str, agent_id: str, floor: int, tried: set[str]
    ) -> tuple[str, int] | None:
        """The paglet's location according to its home host, if it names a host not yet
        tried and an epoch not older than one already seen."""
        try:
            answer = self._call("GET", f"{home.rstrip('/')}/agents/{agent_id}/location")
        except PagletError:
            return None
        # live/inactive: it is at home; moved: home's newest pointer (kept up to date by
        # every arrival); disposed/unknown: nothing to follow.
        if not isinstance(answer, dict) or answer.get("state") not in ("live", "inactive", "moved"):
            return None
        url = answer.get("host_url")
        epoch = int(answer.get("epoch") or 0)
        if not isinstance(url, str) or normalise_url(url) in tried or epoch < floor:
            return None
        return url.rstrip("/"), epoch

    # -- messages ----------------------------------------------------------------------

    def _message_body(
        self,
        message: Message,
        message_type: int,
        oneway: bool,
        activate_if_inactive: bool,
        no_delay: bool,
        durable: bool,
        sender: str | None,
        reply_to: str | None,
    ) -> bytes:
        if not isinstance(message, Message):
            raise TypeError(
                f"send takes a paglets Message, got {type(message).__name__}; "
                "e.g. Message('kind', {...})"
            )
        try:
            args = codec.to_wire_form(message.args) if message.args else {}
            arg = message.arg
            if arg is not None and type(arg) not in (str, int, float, bool):
                arg = codec.to_wire_form(arg)
        except SerializationError as exc:
            raise SerializationError(f"message {message.kind!r} cannot be sent: {exc}") from None
        wire = {
            "kind": message.kind,
            "args": args,
            "arg": arg,
            "sender": message.sender if sender is None else sender,
            "reply_to": message.reply_to if reply_to is None else reply_to,
            "priority": message.priority,
            "message_type": message_type,
            "timestamp": message.timestamp,
            # The delivery id: the caller's explicit id, else fresh for this call.
            "message_id": message.explicit_message_id() or uuid.uuid4().hex,
        }
        payload: dict[str, Any] = {
            "message": wire,
            "oneway": oneway,
            "activate_if_inactive": activate_if_inactive,
            "no_delay": no_delay,
        }
        if durable:
            payload["durable"] = True
        try:
            return _ENCODE(payload)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"message {message.kind!r} cannot be sent: {exc}") from None

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
    ) -> Any:
        """Send `message` to paglet `agent_id` (last known at `url`) and return its reply
        (`None` for `oneway`; `{"queued": True, "message_id": ...}` when an inactive paglet
        queued it). `reply_type` converts the reply strictly (`SerializationError` on a
        mismatch). `sender`/`reply_to` name the sending paglet and its host. The caller's
        `Message` is not changed."""
        body = self._message_body(
            message,
            ONEWAY if oneway else SYNCHRONOUS,
            oneway,
            activate_if_inactive,
            no_delay,
            durable,
            sender,
            reply_to,
        )
        return self._deliver(url, agent_id, body, oneway, timeout, reply_type)

    def _deliver(
        self,
        url: str,
        agent_id: str,
        body: bytes,
        oneway: bool,
        timeout: float | None,
        reply_type: Any,
    ) -> Any:
        answer = self._agent_call(
            url,
            agent_id,
            "POST",
            "/messages",
            body,
            timeout=self.timeout if timeout is None else timeout,
            deadline=True,
        )
        if oneway:
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
        body = self._message_body(
            message, FUTURE, False, activate_if_inactive, no_delay, False, sender, reply_to
        )
        future = self._future_pool().submit(
            self._deliver, url, agent_id, body, False, timeout, reply_type
        )
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

    # -- lifecycle ---------------------------------------------------------------------

    def _proxy_from(
        self, answer: Any, previous: str, what: str, wire_id: str | None = None
    ) -> PagletProxy:
        """The proxy in a lifecycle answer; a move of `wire_id` also updates the cache."""
        wire = answer.get("proxy") if isinstance(answer, dict) else None
        if not isinstance(wire, dict) or "host_url" not in wire or "agent_id" not in wire:
            raise RemoteHostError(f"{what}: the host answered without a proxy: {answer!r}"[:300])
        proxy = PagletProxy(
            str(wire["host_url"]),
            str(wire["agent_id"]),
            self,
            acknowledged=bool(answer.get("acknowledged", True)),
        )
        if proxy.agent_id == wire_id and normalise_url(proxy.host_url) != normalise_url(previous):
            epoch = answer.get("epoch")
            if not isinstance(epoch, int):
                # We just moved it, so this is its newest address whatever the epoch.
                epoch = self.locations.start(previous, proxy.agent_id)[1] + 1
            self.locations.note(proxy.agent_id, previous, proxy.host_url, epoch)
        return proxy

    def _lifecycle(
        self,
        url: str,
        agent_id: str,
        operation: str,
        payload: dict[str, Any] | None,
        timeout: float | None,
    ) -> Any:
        return self._agent_call(
            url,
            agent_id,
            "POST",
            f"/{operation}",
            _ENCODE(payload or {}),
            timeout=self.timeout if timeout is None else timeout,
            idempotent=True,
        )

    @staticmethod
    def _target_payload(target: str | TransferTicket | None) -> tuple[dict[str, Any], float]:
        if isinstance(target, TransferTicket):
            return {"ticket": target.to_wire()}, target.timeout
        if target is None or isinstance(target, str):
            return {"target": target}, 0.0
        raise TypeError(
            "a move target is a host URL, a mesh host name or a TransferTicket, got "
            f"{type(target).__name__}"
        )

    def _move_timeout(self, ticket_timeout: float, timeout: float | None) -> float:
        if timeout is not None:
            return timeout
        # The host holds the request for the whole move (turn, PREPARE, COMMIT).
        return max(self.timeout, ticket_timeout * 2 + _GRACE)

    def dispatch(
        self,
        url: str,
        agent_id: str,
        target: str | TransferTicket,
        *,
        timeout: float | None = None,
    ) -> PagletProxy:
        """Move the paglet to `target` (URL, mesh name or ticket); its new proxy."""
        if target is None:
            raise TransferError(
                "dispatch needs a target host URL, mesh name or TransferTicket", stage="preflight"
            )
        payload, ticket_timeout = self._target_payload(target)
        origin = self.locations.start(url.rstrip("/"), agent_id)[0]
        answer = self._lifecycle(
            url, agent_id, "dispatch", payload, self._move_timeout(ticket_timeout, timeout)
        )
        return self._proxy_from(answer, origin, f"dispatch of {agent_id!r}", agent_id)

    def clone(
        self,
        url: str,
        agent_id: str,
        target: str | TransferTicket | None = None,
        *,
        timeout: float | None = None,
    ) -> PagletProxy:
        """A copy of the paglet on `target` (None: on its own host); the clone's proxy."""
        payload, ticket_timeout = self._target_payload(target)
        answer = self._lifecycle(
            url, agent_id, "clone", payload, self._move_timeout(ticket_timeout, timeout)
        )
        return self._proxy_from(answer, url, f"clone of {agent_id!r}")

    def retract(
        self, url: str, agent_id: str, target: str, *, timeout: float | None = None
    ) -> PagletProxy:
        """Pull the paglet from `url` (or wherever it moved since) to `target`."""
        if not isinstance(target, str) or not target:
            raise TransferError(
                "retract needs target=: the URL of the host to pull the paglet to",
                stage="preflight",
            )
        origin = self.locations.start(url.rstrip("/"), agent_id)[0]
        answer = self._lifecycle(
            url, agent_id, "retract", {"target": target}, self._move_timeout(0.0, timeout)
        )
        return self._proxy_from(answer, origin, f"retract of {agent_id!r}", agent_id)

    def deactivate(
        self,
        url: str,
        agent_id: str,
        request: DeactivationRequest | None = None,
        *,
        timeout: float | None = None,
    ) -> PagletProxy:
        """Deactivate the paglet (stored, woken per its policy); its proxy."""
        payload = {} if request is None else {"request": request.to_wire()}
        answer = self._lifecycle(url, agent_id, "deactivate", payload, timeout)
        return self._proxy_from(answer, url, f"deactivate of {agent_id!r}")

    def activate(self, url: str, agent_id: str, *, timeout: float | None = None) -> PagletProxy:
        """Activate an inactive paglet (restart a crashed one); its proxy."""
        answer = self._lifecycle(url, agent_id, "activate", None, timeout)
        return self._proxy_from(answer, url, f"activate of {agent_id!r}")

    def dispose(self, url: str, agent_id: str, *, timeout: float | None = None) -> None:
        """Dispose the paglet, in any state."""
        self._lifecycle(url, agent_id, "dispose", None, timeout)
        self.locations.forget(agent_id)

    def create_agent(
        self,
        url: str,
        agent_class_name: Any,
        state_class_name: Any = None,
        state: Any = None,
        *,
        init: Any = None,
        agent_id: str | None = None,
        timeout: float | None = None,
    ) -> PagletProxy:
        """Create a paglet on the host at `url`. Classes may be given as classes or as
        `"module:qualname"` names; `state` as an instance, a dict or `None` (the class's
        defaults). Raises `DuplicateAgentError` for an existing `agent_id`."""
        if not isinstance(agent_class_name, str):
            state_cls = getattr(agent_class_name, "State", None)
            agent_class_name = codec.qualified_name(agent_class_name)
            if state_class_name is None and isinstance(state_cls, type):
                state_class_name = state_cls
        if state_class_name is None and state is not None and not isinstance(state, dict):
            state_class_name = type(state)
        if state_class_name is not None and not isinstance(state_class_name, str):
            state_class_name = codec.qualified_name(state_class_name)
        if agent_id is not None:
            validate_agent_id(agent_id)
        payload: dict[str, Any] = {
            "agent_class_name": agent_class_name,
            "state_class_name": state_class_name,
            "state": state,
            "init": init,
        }
        if agent_id is not None:
            payload["agent_id"] = agent_id
        answer = self._call(
            "POST", f"{url.rstrip('/')}/agents", payload, timeout=timeout, idempotent=True
        )
        return self._proxy_from(answer, url, f"create of {agent_class_name}")

    # -- host queries ------------------------------------------------------------------

    def health(self, url: str, *, timeout: float | None = None) -> dict[str, Any]:
        """`GET /health` (network.md §1.9)."""
        return self._call("GET", f"{url.rstrip('/')}/health", timeout=timeout)

    def list_agents(
        self,
        url: str,
        *,
        state: str = "active",
        include_state: bool = False,
        class_name: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Agent summaries (`state`: active, inactive, crashed, superseded or all)."""
        return self.list_agents_page(
            url,
            state=state,
            include_state=include_state,
            class_name=class_name,
            q=q,
            limit=limit,
            offset=offset,
            timeout=timeout,
        ).get("agents", [])

    def list_agents_page(
        self,
        url: str,
        *,
        state: str = "active",
        include_state: bool = False,
        class_name: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The whole `GET /agents` answer: `{agents, next_cursor, total, truncated}`."""
        query: dict[str, Any] = {"state": state}
        if include_state:
            query["include_state"] = 1
        if class_name:
            query["class"] = class_name
        if q:
            query["q"] = q
        if limit is not None:
            query["limit"] = limit
        if cursor:
            query["cursor"] = cursor
        elif offset:
            query["offset"] = offset
        return self._call("GET", f"{url.rstrip('/')}/agents?{urlencode(query)}", timeout=timeout)

    def events(
        self, url: str, since: int = 0, limit: int = 100, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Context events after event id `since` (network.md §1.9), oldest first."""
        query = urlencode({"since": since, "limit": limit})
        answer = self._call("GET", f"{url.rstrip('/')}/events?{query}", timeout=timeout)
        return list(answer.get("events", [])) if isinstance(answer, dict) else []

    def list_hosts(self, url: str, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """`GET /hosts`: the members the host at `url` knows, as wire dicts."""
        answer = self._call("GET", f"{url.rstrip('/')}/hosts", timeout=timeout)
        return list(answer.get("hosts", [])) if isinstance(answer, dict) else []

    def list_services(
        self,
        url: str,
        *,
        name: str | None = None,
        capability: str | None = None,
        scope: str | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """`GET /services`: service records as wire dicts."""
        query = {
            k: v
            for k, v in (("name", name), ("capability", capability), ("scope", scope))
            if v is not None
        }
        suffix = f"?{urlencode(query)}" if query else ""
        answer = self._call("GET", f"{url.rstrip('/')}/services{suffix}", timeout=timeout)
        return list(answer.get("services", [])) if isinstance(answer, dict) else []

    # -- artifacts (network.md §4; the protocol lives in artifact_client) ------------------

    def upload_artifact(
        self,
        host_url: str,
        path: str | os.PathLike[str],
        *,
        owner_agent_id: str | None = None,
        name: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
    ) -> ArtifactRef:
        """Store a file on `host_url`; its `ArtifactRef`."""
        from paglets.remote import artifact_client

        return artifact_client.upload_artifact(
            self,
            host_url,
            path,
            owner_agent_id=owner_agent_id,
            name=name,
            compression=compression,
            expires_at=expires_at,
        )

    def download_artifact(
        self,
        ref: ArtifactRef | dict[str, Any],
        target: str | os.PathLike[str],
        *,
        move: bool = False,
    ) -> Path:
        """Fetch an artifact to `target` (checked by size and SHA-256); `move=True` then
        deletes it on its host."""
        from paglets.remote import artifact_client

        return artifact_client.download_artifact(self, ref, target, move=move)

    def delete_artifact(self, ref: ArtifactRef | dict[str, Any]) -> bool:
        """Delete an artifact on its host; `False` if it was already gone."""
        from paglets.remote import artifact_client

        return artifact_client.delete_artifact(self, ref)

    def list_artifacts(
        self, host_url: str, *, owner_agent_id: str | None = None
    ) -> list[ArtifactRef]:
        """Every live artifact on `host_url` (optionally of one owner)."""
        from paglets.remote import artifact_client

        return artifact_client.list_artifacts(self, host_url, owner_agent_id=owner_agent_id)


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
