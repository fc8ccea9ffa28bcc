"""Calls under `/agents/{id}/` that follow a paglet which moved (network.md §1.6).

A call goes to the paglet's newest known address (`client.locations`). A host that holds a
forwarding pointer answers `moved` (a `307` over HTTP, a `moved` reply over the peer
socket); the client follows it itself, at most `max_forward_hops` times, with epochs never
going back, re-sending the same bytes (so the same delivery id), and caches the newest
address for later calls of any proxy of that agent. A chain that breaks (a host on it gone,
or its pointer expired) is resolved by going back to the proxy's own URL once, then by
asking the paglet's home host.

`follow()` does the walking; how one attempt reaches one host is an *exchange*: a callable
`(target_url, seconds_left) -> (OK, value) | (MOVED, (url, epoch, home)) | (FAILED, error)`
that raises `RemoteHostError` when the host cannot be reached. `HttpExchange` is the HTTP
one; the message path adds the peer socket (`message_route`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import InvalidAgentError, PagletError, PagletTimeoutError, RemoteHostError
from paglets.core.ids import validate_agent_id
from paglets.remote.http_pool import Headers
from paglets.runtime.local_hosts import normalise_url
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.remote.client import HostClient

__all__ = [
    "FAILED",
    "GRACE",
    "MOVED",
    "OK",
    "Exchange",
    "HttpExchange",
    "decode_answer",
    "follow",
    "moved_target",
]

OK, MOVED, FAILED = 0, 1, 2
GRACE = 1.0  # extra seconds a socket waits past a send's deadline, for the host's own answer

Exchange = Callable[[str, float], tuple[int, Any]]

_DECODE_MSGPACK = msgspec.msgpack.Decoder().decode
_DECODE_JSON = msgspec.json.Decoder().decode


def decode_answer(headers: Headers, data: bytes) -> Any:
    """A response body as builtins: MessagePack as is, JSON with binary tags restored."""
    if not data:
        return None
    ctype = headers.get("Content-Type") or ""
    if "msgpack" in ctype:
        return _DECODE_MSGPACK(data)
    return codec.restore_json_safe(_DECODE_JSON(data))


def moved_target(moved: Any, epoch_header: str | None = None) -> tuple[str, int, str | None] | None:
    """`(url, epoch, home_url)` from a `moved` block, or None if it names no host."""
    if not isinstance(moved, dict):
        return None
    url = moved.get("host_url")
    if not isinstance(url, str) or not url:
        return None
    try:
        epoch = int(moved.get("epoch") or epoch_header or 0)
    except (TypeError, ValueError):
        epoch = 0
    home = moved.get("home_url")
    return url.rstrip("/"), epoch, home if isinstance(home, str) and home else None


class HttpExchange:
    """One attempt of an agent call over HTTP (MessagePack both ways). With `deadline`,
    the host is told how long the caller waits (`X-Paglets-Deadline-Ms`, shrinking at each
    hop) and the socket waits a little longer for the host's own 504."""

    __slots__ = ("body", "client", "deadline", "headers", "method", "route")

    def __init__(
        self,
        client: HostClient,
        method: str,
        route: str,
        body: bytes | None,
        headers: dict[str, str],
        deadline: bool,
    ) -> None:
        self.client = client
        self.method = method
        self.route = route
        self.body = body
        self.headers = headers
        self.deadline = deadline

    def __call__(self, target: str, remaining: float) -> tuple[int, Any]:
        headers = self.headers
        wait = remaining
        if self.deadline:
            headers["X-Paglets-Deadline-Ms"] = str(max(1, int(remaining * 1000)))
            wait = remaining + GRACE
        full = target + self.route
        client = self.client
        status, rheaders, data = client._pool.exchange(self.method, full, self.body, headers, wait)
        if 200 <= status < 300:
            return OK, decode_answer(rheaders, data)
        if status == 307:
            try:
                body = decode_answer(rheaders, data)
            except Exception:
                body = None
            moved = moved_target(
                body.get("moved") if isinstance(body, dict) else None,
                rheaders.get("X-Paglets-Epoch"),
            )
            if moved is not None:
                return MOVED, moved
        return FAILED, client._error(status, rheaders, data, self.method, full)


def follow(
    client: HostClient,
    url: str,
    agent_id: str,
    exchange: Exchange,
    *,
    timeout: float,
    what: str,
) -> Any:
    """Run `exchange` against the paglet's newest known address, following moves (see the
    module docstring). `what` names the call in errors ("POST <url>/agents/<id>/messages")."""
    validate_agent_id(agent_id)
    origin = url.rstrip("/")
    locations = client.locations
    target, floor, home = locations.start(origin, agent_id)
    ends = time.monotonic() + timeout
    hops = 0
    tried: set[str] = set()
    asked_home = False
    while True:
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise PagletTimeoutError(
                f"{what}: no answer within {timeout:g}s (after {hops} forwarding hop(s))"
            )
        failure: PagletError
        try:
            kind, value = exchange(target, remaining)
        except PagletTimeoutError:
            raise
        except RemoteHostError as exc:
            failure = exc
        else:
            if kind == OK:
                return value
            if kind == MOVED:
                new_url, epoch, moved_home = value
                if hops >= client.max_forward_hops:
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
                    locations.note(agent_id, target, new_url, epoch, home)
                    target = new_url
                    continue
            else:
                failure = value
                if not isinstance(failure, InvalidAgentError) or failure.code == "disposed":
                    raise failure
        # The paglet is not where we looked: a host on the chain is gone, or it has no
        # record (its pointer expired). Try the proxy's own URL, then ask home.
        tried.add(normalise_url(target))
        if normalise_url(origin) not in tried:
            # Back to the start, once: its pointer may be older than what we had seen.
            tried.add(normalise_url(origin))
            locations.forget(agent_id)
            target, floor = origin, 0
            continue
        home = home or locations.home_of(agent_id)
        if home and not asked_home:
            asked_home = True
            found = _ask_home(client, home, agent_id, floor, tried)
            if found is not None:
                target, floor = found
                locations.note(agent_id, home, target, floor, home)
                hops += 1
                continue
        if isinstance(failure, InvalidAgentError) and target != origin and hops:
            failure = InvalidAgentError(
                f"paglet {agent_id!r} could not be found: {failure}",
                code="agent-not-found",
            )
        raise failure


def _ask_home(
    client: HostClient, home: str, agent_id: str, floor: int, tried: set[str]
) -> tuple[str, int] | None:
    """The paglet's location according to its home host, if it names a host not yet tried
    and an epoch not older than one already seen."""
    try:
        answer = client._call("GET", f"{home.rstrip('/')}/agents/{agent_id}/location")
    except PagletError:
        return None
    # live/inactive: it is at home; moved: home's newest pointer (kept up to date by every
    # arrival); disposed/unknown: nothing to follow.
    if not isinstance(answer, dict) or answer.get("state") not in ("live", "inactive", "moved"):
        return None
    url = answer.get("host_url")
    epoch = int(answer.get("epoch") or 0)
    if not isinstance(url, str) or normalise_url(url) in tried or epoch < floor:
        return None
    return url.rstrip("/"), epoch
