"""`UserInfoService`: the `user-info` provider every host runs (jobs.md §6).

Each `notify` or `stream` call becomes an event (`user-info.notify` / `user-info.stream`)
in this host's durable event log, tagged with its job (`data["job"]`, so `GET
/events/stream?job=…` and `paglets events --job` select it). If the output belongs to a
job whose **home** is another host, it also goes there, durably:

* the event itself is the durable copy; an in-memory `Outbox` indexes the events not yet
  acknowledged by their home, and is rebuilt from the event log when the service comes
  back after a restart (its state keeps only the per-home cursors and a low-water mark);
* a forwarder thread (the service's `run()`) sends batches to `service.user-info` on the
  home host as one-way-style `user-info.forward` messages and waits for the
  acknowledgement. While the membership table says the home is away, nothing is sent;
  when it returns, the backlog follows, in order;
* the home records each forwarded item as an event of the same kind (with `origin_*`
  fields), after dropping repeats (it remembers the last event id per origin host);
* per job at most 10,000 items or 16 MiB are in transit (`[services.user-info]`
  `max_items_per_job`, `max_bytes_per_job`); the excess stays here only and is counted in
  a `user-info.dropped` event here and, with the next batch, at the home.

The home is the request's `home_host_id`, else its `home_url`, else the home of the sending
paglet (the host where it was created) when that paglet runs here.

The service is a lazy resident service (jobs.md §6 lists it as eager; "lazy where
possible" keeps a host that nobody notifies free of it): the first call starts it and it
sleeps after 30 s without calls, but never while output is waiting for its home: then it
holds a lease on itself, and a shutdown stores it with `activate_on_startup`, so the
backlog is picked up again at the next start.

With `--echo-user-info` (`Host.echo_user_info = True`) notifications are also printed on
the host's stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from paglets.core.agent import PagletState
from paglets.core.errors import HostError, InvalidAgentError, PagletError
from paglets.core.messages import Message
from paglets.core.runtime_values import ResidentLifecycle, ServiceScope
from paglets.patterns.notifications import NotificationSeverity
from paglets.patterns.operations import OperationPaglet
from paglets.services.resident import ResidentServiceSpec
from paglets.system.host_access import host_of
from paglets.system.user_info.contract import (
    DROPPED_EVENT,
    FORWARD_KIND,
    NOTIFY,
    NOTIFY_EVENT,
    PI_NOTIFY,
    PI_STREAM,
    STREAM,
    STREAM_EVENT,
    USER_INFO,
    USER_INFO_AGENT_ID,
    UserInfoReply,
    UserInfoRequest,
    UserInfoStreamRequest,
)
from paglets.system.user_info.outbox import (
    MAX_BYTES_PER_JOB,
    MAX_ITEMS_PER_JOB,
    Drops,
    Outbox,
    OutboxItem,
)

if TYPE_CHECKING:
    from paglets.core.events import CreationEvent, PersistencyEvent
    from paglets.persistence import DeactivationPolicy, DeactivationRequest

__all__ = ["UserInfoService", "UserInfoState"]

log = logging.getLogger("paglets.user_info")

SERVICE_NAME = "user-info"
FORWARD_TIMEOUT = 10.0
RETRY_MIN, RETRY_MAX = 0.5, 30.0
AWAY_RECHECK = 1.0  # seconds between membership checks while the home is away
DROP_EVENT_EVERY = 5.0  # at most one `user-info.dropped` event per job this often
MAX_STREAMS = 10_000  # per-stream sequence counters kept
SCAN_PAGE = 1000
IDLE_TIMEOUT = 30.0
LEASE_TTL = 60.0  # the self-lease held while output waits for its home, renewed at a third

_json = msgspec.json.Encoder()


@dataclass
class UserInfoState(PagletState):
    """`cursors`: home key → the newest event id it acknowledged. `low_water`: a rebuild
    scans the log after this id. `homes`: home key → `{host_id, url}`. `seen`: origin host
    id → the newest forwarded event id recorded here. `stream_seq`: stream id → last seq."""

    cursors: dict[str, int] = field(default_factory=dict)
    low_water: int = 0
    homes: dict[str, dict[str, str]] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    stream_seq: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _HomeRef:
    key: str
    host_id: str
    url: str


@dataclass(slots=True)
class _Retry:
    at: float = 0.0
    delay: float = RETRY_MIN
    reason: str = ""


class UserInfoService(OperationPaglet[UserInfoState]):
    """The `user-info` operations and the forwarding to home hosts (module docstring)."""

    State = UserInfoState
    Operations = USER_INFO.operations
    SUBSCRIBED_MESSAGES: ClassVar[tuple[str, ...] | None] = ()
    RESIDENT_SERVICES: ClassVar[tuple[Any, ...]] = (
        ResidentServiceSpec(
            USER_INFO,
            scope=ServiceScope.LOCAL,
            lifecycle=ResidentLifecycle.LAZY,
            idle_timeout=IDLE_TIMEOUT,
        ),
    )

    # Transient, per incarnation.
    _outbox: Outbox | None = None
    _records: Any = None
    _wake: threading.Event | None = None
    _dropped_at: dict[str, float] | None = None

    # -- incarnation ----------------------------------------------------------------------

    def _setup(self) -> None:
        host = host_of(self)
        settings = host.services.settings(SERVICE_NAME)
        self._outbox = Outbox(
            max_items=int(settings.get("max_items_per_job", MAX_ITEMS_PER_JOB)),
            max_bytes=int(settings.get("max_bytes_per_job", MAX_BYTES_PER_JOB)),
        )
        self._records = threading.Lock()
        self._wake = threading.Event()
        self._dropped_at = {}

    def on_creation(self, event: CreationEvent) -> None:
        self._setup()
        host = host_of(self)
        host.events.flush()
        self.state.low_water = host.events.last_event_id  # nothing before this is ours

    def on_activation(self, event: PersistencyEvent) -> None:
        self._setup()
        self._rebuild()

    def _ready(self) -> Outbox:
        if self._outbox is None:  # an incarnation whose hooks did not run (defensive)
            self._setup()
        assert self._outbox is not None
        return self._outbox

    def _rebuild(self) -> None:
        """Queue again every forwarded event its home has not acknowledged (in the turn of
        the activation, so no new call can slip in between)."""
        host = host_of(self)
        outbox = self._ready()
        host.events.flush()
        state = self.state
        since = state.low_water
        last = host.events.last_event_id
        outbox.note_seen(since)
        while since < last:
            page = host.events.list_events(since, SCAN_PAGE, kinds=[NOTIFY_EVENT, STREAM_EVENT])
            if not page:
                break
            for event in page:
                since = event.event_id
                key = event.data.get("forward_to") if event.data else None
                if not key or event.event_id <= state.cursors.get(key, 0):
                    continue
                data = dict(event.data)
                item = OutboxItem(
                    event.event_id, event.kind, data, str(data.get("job") or ""), _size(data)
                )
                outbox.offer(str(key), item, str(data.get("group") or ""))
        outbox.note_seen(last)

    # -- operations -----------------------------------------------------------------------

    def operation_handlers(self) -> Mapping[Any, Callable[[Any], Any]]:
        return {
            NOTIFY: self.notify,
            STREAM: self.stream,
            PI_NOTIFY: self.notify,
            PI_STREAM: self.stream,
        }

    def handle_operation_message(self, message: Message) -> Any:
        if message.kind == FORWARD_KIND:
            return self.receive_forward(dict(message.args or {}))
        return None

    def notify(self, request: UserInfoRequest) -> UserInfoReply:
        try:
            severity = NotificationSeverity(str(request.severity).lower())
        except ValueError:
            raise ValueError(
                f"user-info severity must be info, warning or error, got {request.severity!r}"
            ) from None
        data: dict[str, Any] = {
            "job": request.job_id,
            "group": request.group_id,
            "severity": severity.value,
            "title": request.title,
            "message": request.message,
            "source_agent_id": request.source_agent_id,
            "timestamp": request.timestamp or time.time(),
            "metadata": dict(request.metadata or {}),
        }
        home = self._home_of(
            request.home_host_id, request.home_url, request.metadata, request.source_agent_id
        )
        reply = self._record(NOTIFY_EVENT, data, home)
        self._echo(data, host_of(self).name)
        return reply

    def stream(self, request: UserInfoStreamRequest) -> UserInfoReply:
        if request.target not in ("stdout", "stderr"):
            raise ValueError(
                f"user-info stream target must be 'stdout' or 'stderr', got {request.target!r}"
            )
        seq = request.seq if request.seq > 0 else self._next_seq(request.stream_id)
        data: dict[str, Any] = {
            "job": request.job_id,
            "group": request.group_id,
            "stream": request.stream_id,
            "text": request.text,
            "target": request.target,
            "flush": request.flush,
            "seq": seq,
            "source_agent_id": request.source_agent_id,
            "timestamp": request.timestamp or time.time(),
            "metadata": dict(request.metadata or {}),
        }
        home = self._home_of(
            request.home_host_id, request.home_url, request.metadata, request.source_agent_id
        )
        reply = self._record(STREAM_EVENT, data, home)
        return msgspec.structs.replace(reply, seq=seq)

    def _next_seq(self, stream_id: str) -> int:
        with self.locked_state() as state:
            seq = state.stream_seq.pop(stream_id, 0) + 1
            state.stream_seq[stream_id] = seq  # re-inserted: the dict keeps recent streams last
            while len(state.stream_seq) > MAX_STREAMS:
                del state.stream_seq[next(iter(state.stream_seq))]
        return seq

    # -- recording --------------------------------------------------------------------------

    def _home_of(
        self, host_id: str, url: str, metadata: Mapping[str, Any] | None, source: str
    ) -> _HomeRef | None:
        """The job's home if it is another host (None: the output stays here)."""
        host = host_of(self)
        meta = metadata or {}
        host_id = host_id or str(meta.get("home_host_id") or "")
        url = (url or str(meta.get("home_url") or "")).rstrip("/")
        if not host_id and not url and source:
            cell = host.registry.live.get(source)
            home_url = getattr(getattr(cell, "info", None), "home_url", "") if cell else ""
            url = (home_url or "").rstrip("/")
        if host_id:
            if host_id == host.host_id:
                return None
            return _HomeRef(host_id, host_id, url)
        if url:
            if host.is_local_url(url):
                return None
            return _HomeRef(url.lower(), "", url)
        return None

    def _record(self, kind: str, data: dict[str, Any], home: _HomeRef | None) -> UserInfoReply:
        host = host_of(self)
        outbox = self._ready()
        job, group = str(data.get("job") or ""), str(data.get("group") or "")
        agent = str(data.get("source_agent_id") or "") or None
        if home is None:
            event = host.events.emit(kind, agent_id=agent, service_name=SERVICE_NAME, data=data)
            outbox.note_seen(event.event_id)
            return UserInfoReply(event_id=event.event_id)
        size = _size(data)
        with self._records:  # the event and its outbox entry in one order
            admitted = outbox.admit(home.key, job, size, group)
            if admitted:
                data["forward_to"] = home.key
                data["home_host_id"] = home.host_id
                data["home_url"] = home.url
            else:
                data["dropped"] = True
            event = host.events.emit(kind, agent_id=agent, service_name=SERVICE_NAME, data=data)
            if admitted:
                outbox.add(home.key, OutboxItem(event.event_id, kind, data, job, size))
            else:
                outbox.note_seen(event.event_id)
        if admitted:
            self._remember_home(home)
            wake = self._wake
            if wake is not None:
                wake.set()
        else:
            self._report_drop(home, job, group)
        return UserInfoReply(
            event_id=event.event_id,
            forwarding=admitted,
            dropped=not admitted,
            home_host_id=home.host_id,
        )

    def _remember_home(self, home: _HomeRef) -> None:
        known = self.state.homes.get(home.key)
        wanted = {"host_id": home.host_id, "url": home.url}
        if known != wanted:
            with self.locked_state() as state:
                state.homes[home.key] = wanted

    def _report_drop(self, home: _HomeRef, job: str, group: str) -> None:
        now = time.monotonic()
        assert self._dropped_at is not None
        if now - self._dropped_at.get(job, float("-inf")) < DROP_EVENT_EVERY:
            return
        self._dropped_at[job] = now
        outbox = self._ready()
        items, size = outbox.in_transit(job)
        host_of(self).events.emit(
            DROPPED_EVENT,
            service_name=SERVICE_NAME,
            data={
                "job": job,
                "group": group,
                "home_host_id": home.host_id,
                "home_url": home.url,
                "in_transit_items": items,
                "in_transit_bytes": size,
                "reason": (
                    f"job {job or '(none)'} has {items} items ({size} bytes) on their way to "
                    f"its home; the cap is {outbox.max_items} items or {outbox.max_bytes} bytes"
                ),
            },
        )

    def _echo(self, data: Mapping[str, Any], host_name: str) -> None:
        host = host_of(self)
        if not getattr(host, "echo_user_info", False):
            return
        about = []
        if data.get("job"):
            about.append(f"job={data['job']}")
        if data.get("source_agent_id"):
            about.append(f"agent={str(data['source_agent_id'])[:12]}")
        if data.get("origin_host"):
            about.append(f"from={data['origin_host']}")
        where = f" ({', '.join(about)})" if about else ""
        text = " ".join(f"{data.get('title') or ''}: {data.get('message') or ''}".split("\n"))
        line = f"paglets host user-info [{str(data.get('severity', 'info')).upper()}]{where} {text}"
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # no console: the event log has it anyway

    # -- the home side ----------------------------------------------------------------------

    def receive_forward(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Record a batch from another host's user-info; repeats are dropped. Returns the
        newest event id now recorded for that origin."""
        host = host_of(self)
        expected = str(payload.get("home_host_id") or "")
        if expected and expected != host.host_id:
            raise HostError(
                f"user-info output for host {expected!r} reached host {host.name!r} "
                f"({host.host_id}); the address now belongs to another host"
            )
        origin_id = str(payload.get("origin_host_id") or "")
        origin_name = str(payload.get("origin_host") or "")
        if not origin_id:
            raise ValueError("a user-info forward needs origin_host_id")
        seen = int(self.state.seen.get(origin_id, 0))
        newest = seen
        for item in payload.get("items") or ():
            event_id = int(item.get("event_id") or 0)
            if event_id <= seen:
                continue
            newest = max(newest, event_id)
            kind = str(item.get("kind") or NOTIFY_EVENT)
            if kind not in (NOTIFY_EVENT, STREAM_EVENT):
                continue
            data = dict(item.get("data") or {})
            data.pop("forward_to", None)
            data["origin_host"] = origin_name
            data["origin_host_id"] = origin_id
            data["origin_event_id"] = event_id
            agent = str(data.get("source_agent_id") or "") or None
            host.events.emit(kind, agent_id=agent, service_name=SERVICE_NAME, data=data)
            if kind == NOTIFY_EVENT:
                self._echo(data, host.name)
        for job, drop in (payload.get("drops") or {}).items():
            host.events.emit(
                DROPPED_EVENT,
                service_name=SERVICE_NAME,
                data={
                    "job": job,
                    "group": str(drop.get("group") or ""),
                    "dropped_items": int(drop.get("count") or 0),
                    "dropped_bytes": int(drop.get("bytes") or 0),
                    "origin_host": origin_name,
                    "origin_host_id": origin_id,
                },
            )
        host.events.flush()  # recorded before acknowledged: no loss if this host dies now
        if newest > seen:
            with self.locked_state() as state:
                state.seen[origin_id] = newest
        return {"acked": int(payload.get("upto") or newest), "host_id": host.host_id}

    # -- staying up while output is on its way ------------------------------------------------

    def deactivation_policy(self, request: DeactivationRequest) -> DeactivationPolicy:
        """Output still waiting for its home: come back at the next start to send it."""
        policy = super().deactivation_policy(request)
        outbox = self._outbox
        if outbox is None or not outbox.pending() or policy.activate_on_startup:
            return policy
        return dataclasses.replace(policy, activate_on_startup=True)

    def _hold(self, lease: list[Any]) -> None:
        """Hold a lease on this service while output is pending (so it does not idle out),
        release it once everything is delivered. `lease` is [lease_id, renew_at]."""
        outbox = self._outbox
        pending = outbox is not None and bool(outbox.homes())
        manager = host_of(self).services.resident
        now = time.monotonic()
        try:
            if pending and lease[0] is None:
                lease[0] = manager.lease(agent_id=self.agent_id, ttl=LEASE_TTL)["lease_id"]
                lease[1] = now + LEASE_TTL / 3
            elif pending and now >= lease[1]:
                manager.renew(lease[0], LEASE_TTL)
                lease[1] = now + LEASE_TTL / 3
            elif not pending and lease[0] is not None:
                manager.release(lease[0])
                lease[0] = None
        except PagletError as exc:  # an expired lease: take a new one next round
            log.debug("user-info self-lease on %s: %s", self.context.name, exc)
            lease[0] = None

    # -- the forwarder (this incarnation's run thread) ----------------------------------------

    def run(self) -> None:
        retries: dict[str, _Retry] = {}
        lease: list[Any] = [None, 0.0]
        try:
            while not self.departed:
                wake = self._wake
                if wake is None:
                    time.sleep(0.2)
                    continue
                self._hold(lease)
                wake.wait(self._next_due(retries))
                wake.clear()
                if self.departed:
                    return
                try:
                    self._forward_round(retries)
                except Exception:  # never let the forwarder die: the backlog would stall
                    log.exception("user-info forwarding round failed on %s", self.context.name)
                    time.sleep(RETRY_MIN)
        finally:
            if lease[0] is not None:
                with contextlib.suppress(Exception):
                    host_of(self).services.resident.release(lease[0])

    def _next_due(self, retries: Mapping[str, _Retry]) -> float:
        outbox = self._outbox
        if outbox is None or not outbox.homes():
            return 1.0
        now = time.monotonic()
        due = [max(0.0, r.at - now) for r in retries.values()]
        return min([1.0, *due])

    def _forward_round(self, retries: dict[str, _Retry]) -> None:
        outbox = self._ready()
        homes = outbox.homes()
        if not homes:
            retries.clear()
            return
        host = host_of(self)
        members = host.list_hosts(online_only=False, include_self=False)
        now = time.monotonic()
        for key in homes:
            retry = retries.setdefault(key, _Retry())
            if now < retry.at or self.departed:
                continue
            target, reason = self._target(key, members)
            if target is None:
                retry.at = now + AWAY_RECHECK  # membership tells when it is back
                retry.reason = reason
                continue
            try:
                while not self.departed and self._send_batch(host, key, target):
                    pass
            except Exception as exc:
                retry.delay = min(RETRY_MAX, retry.delay * 2) if retry.reason else RETRY_MIN
                retry.at = time.monotonic() + retry.delay
                retry.reason = f"{type(exc).__name__}: {exc}"
                log.debug("user-info output for %s not delivered yet: %s", key, retry.reason)
            else:
                retries.pop(key, None)

    def _target(self, key: str, members: list[Any]) -> tuple[str | None, str]:
        info = self.state.homes.get(key) or {}
        host_id = info.get("host_id") or ""
        url = (info.get("url") or "").rstrip("/")
        if not host_id and not url:
            host_id, url = (key, "") if "://" not in key else ("", key)
        for ref in members:
            same = (host_id and ref.host_id == host_id) or (
                not host_id and url and ref.url.rstrip("/").lower() == url.lower()
            )
            if same:
                if not host_id and ref.host_id:
                    # Known by address only so far: follow the host from now on, so a home
                    # that comes back at another address is still found.
                    with self.locked_state() as state:
                        state.homes[key] = {"host_id": ref.host_id, "url": ref.url}
                if not ref.online:
                    return None, f"home host {ref.name!r} is {ref.status}"
                return ref.url, ""
        if url:
            return url, ""  # not a member (or no mesh): try the address we were given
        return None, f"home host {host_id!r} is not in this host's membership table"

    def _send_batch(self, host: Any, key: str, url: str) -> bool:
        """Send one batch to `key`'s home at `url`; True if more is waiting."""
        outbox = self._ready()
        items, drops = outbox.batch(key)
        if not items and not drops:
            return False
        info = self.state.homes.get(key) or {}
        upto = items[-1].event_id if items else 0
        payload = {
            "origin_host_id": host.host_id,
            "origin_host": host.name,
            "origin_url": host.address,
            "home_host_id": info.get("host_id") or "",
            "upto": upto,
            "items": [{"event_id": i.event_id, "kind": i.kind, "data": i.data} for i in items],
            "drops": {
                job: {"count": d.count, "bytes": d.bytes, "group": d.group}
                for job, d in drops.items()
            },
        }
        message = Message(FORWARD_KIND, payload)
        client = host.peer_client
        try:
            answer = client.send_message(url, USER_INFO_AGENT_ID, message, timeout=FORWARD_TIMEOUT)
        except InvalidAgentError:
            # The home's provider is not there (yet): ask its host to start it, then again.
            client.post_json(
                url.rstrip("/") + "/services/resident/ensure",
                {"agent_id": USER_INFO_AGENT_ID},
                timeout=FORWARD_TIMEOUT,
            )
            answer = client.send_message(url, USER_INFO_AGENT_ID, message, timeout=FORWARD_TIMEOUT)
        if not isinstance(answer, Mapping) or "acked" not in answer:
            raise PagletError(f"the home's user-info answered {answer!r:.200} to a forward")
        home_id = str(answer.get("host_id") or "")
        if info.get("host_id") and home_id and home_id != info["host_id"]:
            raise HostError(f"{url} is now host {home_id}, not the home {info['host_id']}")
        outbox.ack(
            key,
            int(answer["acked"]) if items else 0,
            {k: Drops(d.count, d.bytes) for k, d in drops.items()},
        )
        with self.locked_state() as state:
            if items:
                state.cursors[key] = max(state.cursors.get(key, 0), upto)
            state.low_water = outbox.low_water()
            if not outbox.pending(key):
                state.cursors.pop(key, None)
        return bool(outbox.pending(key))


def _size(data: Mapping[str, Any]) -> int:
    try:
        return len(_json.encode(data))
    except (TypeError, msgspec.EncodeError):
        return len(repr(data))
