"""The SWIM-like membership node (network.md §3.4-3.5, architecture.md §9).

Each round the node pings one member from a shuffled round-robin; without an ack within
`probe_timeout` it asks `indirect_probes` others to ping (ping-req); without any ack by the end
of the round the member becomes `suspect`, and `dead` when the suspicion timer runs out (sooner
with more independent suspicions). Membership changes ride on pings and acks, each sent
retransmit_mult x ⌈log10(N+1)⌉ times; suspicions, deaths, leaves and refutations are also
pushed every `gossip_interval`. A member told it is suspect or dead raises its incarnation.
Lifeguard's local health stretches this host's timeouts while it misses nacks or lags.

The node does no I/O and owns no thread: a `Scheduler` gives it time and timers (an asyncio
event loop is one, `mesh_sim.VirtualClock` another) and a `Transport` carries its frames
(`send(frame, to_url)`; frames arrive through `on_frame`). The same code therefore runs over
HTTP and the peer WebSocket in a host, and for 1,000 virtual hosts in the simulator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from msgspec.structs import replace

from paglets.remote.gossip_queue import Broadcasts
from paglets.remote.membership import Change, Member, MemberTable, host_ref
from paglets.remote.mesh import HostRef
from paglets.remote.mesh_sync import MeshSync
from paglets.remote.mesh_types import MemberEvent, MeshConfig, Scheduler, TimerHandle, Transport
from paglets.remote.mesh_wire import (
    ALIVE,
    DEAD,
    LEFT,
    PROTOCOL,
    SUSPECT,
    Ack,
    Frame,
    Gossip,
    Identity,
    IndirectAck,
    MemberRecord,
    Ping,
    PingReq,
    Pull,
    Pulled,
    Summary,
    Sync,
    SyncReply,
    Target,
    Update,
)
from paglets.remote.probe_ring import ProbeRing, probeable
from paglets.remote.summaries import SPEC, SummaryBook
from paglets.remote.suspicion import Suspicions

__all__ = ["MemberEvent", "MeshConfig", "Scheduler", "SwimNode", "TimerHandle", "Transport"]


class _Probe:
    __slots__ = (
        "acked",
        "done",
        "host_id",
        "indirect",
        "nacks",
        "nacks_expected",
        "sent_at",
        "seq",
        "timer",
        "url",
    )

    def __init__(self, seq: int, host_id: str, url: str, sent_at: float) -> None:
        self.seq = seq
        self.host_id = host_id
        self.url = url
        self.sent_at = sent_at
        self.acked = False
        self.done = False
        self.indirect = False
        self.nacks = 0
        self.nacks_expected = 0
        self.timer: Any = None


class _Relay:
    """A ping sent for another host's ping-req: answer it with ack or nack."""

    __slots__ = ("answered", "req_seq", "requester", "sent_at", "target", "timer")

    def __init__(self, requester: str, req_seq: int, target: str, sent_at: float) -> None:
        self.requester = requester
        self.target = target
        self.req_seq = req_seq
        self.sent_at = sent_at
        self.answered = False
        self.timer: Any = None


def _alive_of(member: Member) -> Update:
    return Update(ALIVE, member.host_id, member.incarnation, member.record)


class SwimNode:
    """One host's membership: its table, its probe rounds, its gossip.

    Call `start()` once, feed every inbound frame to `on_frame`, call `leave()` or `stop()` at
    the end. All methods run on the scheduler's thread (the host's event loop).
    """

    def __init__(
        self,
        record: MemberRecord,
        *,
        scheduler: Scheduler,
        transport: Transport,
        config: MeshConfig | None = None,
        seeds: tuple[str, ...] | list[str] = (),
        rng: random.Random | None = None,
        listener: Callable[[MemberEvent], None] | None = None,
        on_fatal: Callable[[str, str], None] | None = None,
        on_incarnation: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config or MeshConfig()
        self.clock = scheduler
        self.transport = transport
        self.rng = rng or random.Random()
        self.record = record
        self.table = MemberTable(record)
        self.broadcasts = Broadcasts()
        cfg = self.config
        self.book = SummaryBook(
            record.host_id,
            load_interval=cfg.load_interval,
            budget_bps=cfg.summary_budget_bps,
            per_message=cfg.summary_per_message,
        )
        self.book.incarnation = record.incarnation
        self.listener = listener
        self.on_fatal = on_fatal
        self.on_incarnation = on_incarnation
        self.health = 0  # Lifeguard local health: timeouts x (health + 1)
        self.running = False
        self.leaving = False
        self.fatal: tuple[str, str] | None = None
        self._me = record.identity(self.book.stamp())
        self._seq = 0
        self._pending: dict[int, Any] = {}
        self._probing: dict[str, _Probe] = {}  # host id → its probe in flight
        self.ring = ProbeRing(self.table, self.rng)
        self.suspicions = Suspicions(self)
        self._timers: dict[str, Any] = {}
        self.sync = MeshSync(self, seeds)

    # -- life ----------------------------------------------------------------------------------

    @property
    def host_id(self) -> str:
        return self.record.host_id

    def start(self) -> None:
        """Start probing, join through the seeds, announce this host."""
        if self.running:
            return
        self.running = True
        self._enqueue(Update(ALIVE, self.host_id, self.record.incarnation, self.record))
        cfg = self.config
        self._later("round", self.rng.uniform(0, cfg.probe_interval), self._round)
        self._later("sweep", cfg.sweep_interval, self._sweep)
        self.sync.start()

    def stop(self) -> None:
        """Stop at once: no more frames sent, timers cancelled (a crash looks the same)."""
        self.running = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self._pending.clear()
        self._probing.clear()
        for member in self.table:
            self.suspicions.drop(member)
        self.sync.stop()

    def leave(self) -> None:
        """Announce a graceful leave; the node stops once the news is pushed out."""
        if not self.running or self.leaving:
            return
        self.leaving = True
        self._cancel("round")
        self._enqueue(Update(LEFT, self.host_id, self.record.incarnation), urgent=True)
        self._push()

    def update_record(self, **changes: Any) -> MemberRecord:
        """Change this host's record (tags, properties, draining, URL, ...): a new incarnation
        gossiped as `alive`, so the change wins everywhere."""
        changes.pop("incarnation", None)
        record = replace(self.record, incarnation=self.record.incarnation + 1, **changes)
        self._set_record(record)
        self._enqueue(Update(ALIVE, self.host_id, record.incarnation, record))
        return record

    def publish(self, kind: str, body: dict[str, Any]) -> None:
        """Set this host's `load`, `services` or `spec` summary (jobs.md 1.4)."""
        summary = self.book.publish(kind, body, self.clock.time())
        self._published(summary)

    def _published(self, summary: Summary | None) -> None:
        if summary is None:
            return
        if summary.kind == SPEC:
            self.update_record(spec_version=summary.version)
        else:
            self._me = self.record.identity(self.book.stamp())

    def report_loop_lag(self, seconds: float) -> None:
        """The host's event loop lagged: a slow host stretches its own timeouts (Lifeguard)."""
        if seconds > 0.1:
            self._health_add(1)

    def on_unreachable(self, url: str) -> None:
        """The transport was refused by `url` (connection refused or reset): a direct probe
        of it goes indirect at once, and a ping-req relayed to it is nacked at once."""
        for pending in list(self._pending.values()):
            if isinstance(pending, _Probe):
                if pending.url == url and not pending.indirect and not pending.done:
                    self._probe_timeout(pending)
            elif pending.target == url and not pending.answered:
                pending.answered = True
                reply = IndirectAck(pending.req_seq, self._me, nack=True)
                self.transport.send(reply, pending.requester)

    def on_connection_lost(self, url: str) -> None:
        """The transport's connection to `url` broke without a goodbye (a killed process
        resets its sockets): probe that member now rather than when the round-robin comes to
        it. Every host with an open connection does, so a killed host has its witnesses
        within one probe period."""
        if not self.running:
            return
        wanted = url.rstrip("/")
        for member in self.table:
            if member.url.rstrip("/") == wanted:
                if member.liveness == ALIVE and member.host_id not in self._probing:
                    self._probe_member(member)
                return

    # -- reading -------------------------------------------------------------------------------

    def members(self) -> list[Member]:
        return list(self.table)

    def member(self, name_or_id: str) -> Member | None:
        member = self.table.get(name_or_id)
        if member is not None:
            return member
        named = self.table.named(name_or_id)
        live = [m for m in named if m.liveness in (ALIVE, SUSPECT)]
        return (live or named or [None])[0]

    def compatible_alive(self) -> list[Member]:
        return self.table.compatible_alive()

    def resolve(self, name: str) -> str:
        """URL of the member called `name`; `HostError` naming the problem otherwise."""
        return self.table.resolve(name)

    def host_refs(self, wall_now: float, *, include_self: bool = True) -> list[HostRef]:
        now = self.clock.time()
        refs = [host_ref(m, now, wall_now) for m in self.table]
        if include_self:
            load = self.book.own.get("load")
            spec = self.book.own.get(SPEC)
            own = host_ref(
                None,
                now,
                wall_now,
                local=self.record,
                spec=spec.body if spec is not None else None,
                load=load.body if load is not None else None,
            )
            refs.insert(0, own)
        return refs

    def summary(self, host_id: str, kind: str) -> tuple[int, dict[str, Any], float] | None:
        """(version, body, age_s) of a member's summary, age on this host's clock."""
        if host_id == self.host_id:
            own = self.book.own.get(kind)
            return None if own is None else (own.version, own.body, 0.0)
        member = self.table.get(host_id)
        stored = None if member is None else member.summaries.get(kind)
        if stored is None:
            return None
        return stored.version, stored.body, self.clock.time() - stored.received_at

    # -- frames in -----------------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        """Handle one inbound frame (already decoded and, by the transport, authenticated)."""
        if not self.running:
            return
        handler = _HANDLERS.get(type(frame))
        if handler is not None:
            handler(self, frame)

    def _on_ping(self, ping: Ping) -> None:
        self._heard(ping.from_)
        self._merge(ping.updates, ping.summaries, source=ping.from_.url)
        if ping.to_host_id and ping.to_host_id != self.host_id:
            self.transport.send(Ack(ping.seq, self._me, refused="wrong-host"), ping.from_.url)
            return
        updates, summaries = self._piggyback()
        notice = self._notice_for(ping.from_.host_id)
        if notice is not None:
            updates.insert(0, notice)
        self.transport.send(Ack(ping.seq, self._me, updates, summaries), ping.from_.url)

    def _on_ack(self, ack: Ack) -> None:
        pending = self._pending.get(ack.seq)
        if ack.refused is None:
            self._heard(ack.from_)
        self._merge(ack.updates, ack.summaries, source=ack.from_.url)
        if isinstance(pending, _Probe):
            if ack.refused is None and ack.from_.host_id == pending.host_id:
                member = self.table.get(pending.host_id)
                if member is not None:
                    member.rtt_ms = (self.clock.time() - pending.sent_at) * 1000.0
                self._probe_acked(pending)
            elif not pending.indirect:
                self._probe_timeout(pending)  # another host lives at that URL now
        elif isinstance(pending, _Relay) and ack.refused is None and not pending.answered:
            pending.answered = True
            del self._pending[ack.seq]
            if pending.timer is not None:
                pending.timer.cancel()
            rtt = (self.clock.time() - pending.sent_at) * 1000.0
            reply = IndirectAck(pending.req_seq, self._me, ack=True, rtt_ms=round(rtt, 1))
            self.transport.send(reply, pending.requester)

    def _on_ping_req(self, req: PingReq) -> None:
        self._heard(req.from_)
        seq = self._next_seq()
        relay = _Relay(req.from_.url, req.seq, req.target.url, self.clock.time())
        self._pending[seq] = relay
        timeout = max(req.timeout_ms, 1) / 1000.0
        relay.timer = self.clock.call_later(0.8 * timeout, self._relay_nack, seq, relay, timeout)
        ping = Ping(seq, self._me, req.target.host_id)
        self.transport.send(ping, req.target.url)

    def _relay_nack(self, seq: int, relay: _Relay, timeout: float) -> None:
        if not self.running:
            return
        if not relay.answered:
            self.transport.send(IndirectAck(relay.req_seq, self._me, nack=True), relay.requester)
        relay.timer = self.clock.call_later(0.2 * timeout, self._pending.pop, seq, None)

    def _on_indirect_ack(self, reply: IndirectAck) -> None:
        self._heard(reply.from_)
        probe = self._pending.get(reply.seq)
        if isinstance(probe, _Probe) and not probe.done:
            if reply.ack:
                self._probe_acked(probe)
            elif reply.nack:
                probe.nacks += 1

    def _on_gossip(self, gossip: Gossip) -> None:
        self._heard(gossip.from_)
        self._merge(gossip.updates, (), source=gossip.from_.url)

    # -- probing -------------------------------------------------------------------------------

    def _round(self) -> None:
        if not self.running or self.leaving:
            return
        now = self.clock.time()
        self._published(self.book.due(now))
        self.sync.pull_wanted(now)
        target = self.ring.next(self._probing)
        if target is not None:
            self._probe_member(target)
        self._later("round", self.config.probe_interval * (self.health + 1), self._round)

    def _probe_member(self, target: Member) -> None:
        """Ping `target`; ping-req at `probe_timeout`; suspect it at the end of the period."""
        seq = self._next_seq()
        probe = _Probe(seq, target.host_id, target.url, self.clock.time())
        self._pending[seq] = probe
        self._probing[target.host_id] = probe
        updates, summaries = self._piggyback()
        notice = self._notice_for(target.host_id)
        if notice is not None:
            updates.insert(0, notice)
        ping = Ping(seq, self._me, target.host_id, PROTOCOL, updates, summaries)
        timeout = self.config.probe_timeout * (self.health + 1)
        probe.timer = self.clock.call_later(timeout, self._probe_timeout, probe)
        self.transport.send(ping, target.url)

    def _probe_timeout(self, probe: _Probe) -> None:
        if not self.running or probe.done or probe.indirect:
            return
        probe.indirect = True
        helpers = self.ring.pick(
            self.config.indirect_probes, exclude=probe.host_id, alive_only=True
        )
        period = self.config.probe_interval * (self.health + 1)
        remaining = max(0.05, period - (self.clock.time() - probe.sent_at))
        req = PingReq(probe.seq, self._me, Target(probe.host_id, probe.url), int(remaining * 1000))
        probe.nacks_expected = len(helpers)
        for helper in helpers:
            self.transport.send(req, helper.url)
        if probe.timer is not None:
            probe.timer.cancel()
        probe.timer = self.clock.call_later(remaining, self._finish_probe, probe)

    def _probe_acked(self, probe: _Probe) -> None:
        probe.acked = True
        if probe.timer is not None:
            probe.timer.cancel()
        self._finish_probe(probe)

    def _finish_probe(self, probe: _Probe) -> None:
        if probe.done:
            return
        probe.done = True
        probe.timer = None
        self._pending.pop(probe.seq, None)
        if self._probing.get(probe.host_id) is probe:
            del self._probing[probe.host_id]
        if not self.running:
            return
        if probe.acked:
            self._health_add(-1)
            return
        if probe.nacks < probe.nacks_expected:
            self._health_add(1)  # helpers did not even nack: maybe it is us who is slow
        member = self.table.get(probe.host_id)
        if member is None or member.liveness not in (ALIVE, SUSPECT):
            return
        if member.url != probe.url:
            return  # it moved while we probed the old address
        self._apply(Update(SUSPECT, member.host_id, member.incarnation, by=self.host_id))

    def _maybe_check(self, member: Member) -> None:
        """Heard of a suspicion: a few hosts (about 2 x the witnesses wanted, mesh-wide) probe
        the suspect next round. A dead host gets its independent witnesses in one round
        instead of waiting for the round-robin; a live one gets the suspicion straight in
        those pings and refutes it sooner."""
        wanted = 2 * max(1, self.config.suspicion_witnesses - 1)
        if self.rng.random() * max(1, self.table.live_count) < wanted:
            self.ring.check_soon(member.host_id)

    # -- gossip --------------------------------------------------------------------------------

    def _limit(self) -> int:
        n = self.table.live_count + 1
        return self.config.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def _enqueue(self, update: Update, *, urgent: bool = False) -> None:
        self.broadcasts.put(update, urgent=urgent)
        if urgent:
            self._later_once("push", 0.0, self._push)  # first push now, then every interval

    def _piggyback(self) -> tuple[list[Update], list[Summary]]:
        limit = self._limit()
        summaries, used = self.book.take(self.clock.time(), limit)
        updates, _ = self.broadcasts.take(self.config.max_piggyback - used, limit)
        return updates, summaries

    def _push(self) -> None:
        self._timers.pop("push", None)
        if not self.running:
            return
        urgent = self.broadcasts.urgent
        targets = self.ring.pick(self.config.gossip_fanout, exclude=self.host_id) if urgent else []
        limit = self._limit()
        for member in targets:
            updates, _ = urgent.take(self.config.max_piggyback, limit)
            if not updates:
                break
            self.transport.send(Gossip(self._me, updates), member.url)
        if len(urgent) and targets:
            self._later_once("push", self.config.gossip_interval, self._push)
        elif self.leaving:
            self.stop()

    def _notice_for(self, host_id: str) -> Update | None:
        """A member that talks to us while we hold it suspect or dead is told so directly,
        so it can refute even after the gossip about it has died down."""
        member = self.table.get(host_id)
        if member is None or member.liveness not in (SUSPECT, DEAD):
            return None
        return Update(member.liveness, host_id, member.incarnation, by=self.host_id)

    # -- applying news -------------------------------------------------------------------------

    def _heard(self, sender: Identity) -> None:
        if sender.host_id == self.host_id:
            return
        change = self.table.heard(sender, self.clock.time())
        if change is not None:
            self._changed(change, None)
        member = self.table.get(sender.host_id)
        if member is not None:
            self.sync.want_if_stale(member)

    def _merge(
        self,
        updates: list[Update] | tuple[()],
        summaries: Any,
        *,
        relay: bool = True,
        source: str | None = None,
    ) -> None:
        """Apply piggybacked news. `relay=False` for bulk state (sync, pull): what a host
        learns that way is not news to the mesh, so it is not gossiped on; re-gossiping every
        record of a join's sync reply would flood a 1,000-host mesh forming at once.

        A suspicion or death older than a refutation we hold is answered to `source` with
        that refutation: the sender missed it, and would otherwise declare a live host dead
        when its suspicion timer runs out (a refutation is gossiped a bounded number of
        times, so with packet loss a few hosts can miss it)."""
        corrections: list[Update] = []
        for update in updates:
            if not self._apply(update, relay=relay) and source is not None:
                correction = self._correction(update)
                if correction is not None:
                    corrections.append(correction)
        if corrections:
            self.transport.send(Gossip(self._me, corrections), source)  # type: ignore[arg-type]
        if summaries:
            now = self.clock.time()
            for summary in summaries:
                member = self.table.get(summary.host_id)
                received = member is not None and self.book.receive(
                    summary, member, now, relay=relay
                )
                if received and summary.kind == SPEC:
                    self.sync.wanted.pop(summary.host_id, None)

    def _correction(self, stale: Update) -> Update | None:
        """Our newer alive state for the subject of a stale suspicion or death, if any."""
        if stale.type not in (SUSPECT, DEAD):
            return None
        if stale.host_id == self.host_id:
            record = self.record
            if stale.incarnation < record.incarnation:
                return Update(ALIVE, self.host_id, record.incarnation, record)
            return None
        member = self.table.get(stale.host_id)
        if (
            member is not None
            and member.liveness == ALIVE
            and stale.incarnation < member.incarnation
        ):
            return _alive_of(member)
        return None

    def _apply(self, update: Update, *, relay: bool = True) -> bool:
        """Apply one update; False when it was old news."""
        if update.host_id == self.host_id:
            return self._about_me(update)
        member = self.table.get(update.host_id)
        if (
            member is not None
            and update.type == SUSPECT
            and member.liveness == SUSPECT
            and update.incarnation == member.incarnation
        ):
            if self.suspicions.confirm(member, update.by) and relay:
                self._enqueue(update, urgent=True)  # others count this witness too
            return True
        change = self.table.apply(update, self.clock.time())
        if change is None:
            return False
        self._changed(change, update, relay=relay)
        return True

    def _changed(self, change: Change, update: Update | None, *, relay: bool = True) -> None:
        member, previous = change.member, change.previous
        liveness = member.liveness
        if previous is None:
            kind = "member-joined"
            if probeable(member):
                self.ring.add(member.host_id)
            if member.partial:
                self.sync.wanted.setdefault(member.host_id, self.clock.time() + 2.0)
        elif previous == liveness:
            kind = "member-updated"
        else:
            kind = f"member-{liveness}"
        if liveness == SUSPECT:
            if previous != SUSPECT or member.suspicion is None:
                by = update.by if update is not None else None
                self.suspicions.start(member, by)
                if by != self.host_id:
                    self._maybe_check(member)
        else:
            self.suspicions.drop(member)
        if not relay:
            pass
        elif liveness == ALIVE:
            # A join is pushed, not only piggybacked: a new host is known everywhere in
            # about a second instead of a few probe rounds (targets h2).
            self._enqueue(_alive_of(member), urgent=previous is None or previous == SUSPECT)
        elif liveness == SUSPECT:
            by = update.by if update is not None else None
            self._enqueue(Update(SUSPECT, member.host_id, member.incarnation, by=by), urgent=True)
        else:
            self._enqueue(Update(liveness, member.host_id, member.incarnation), urgent=True)
        self.sync.want_if_stale(member)
        if self.listener is not None:
            self.listener(MemberEvent(kind, member, previous))

    def _about_me(self, update: Update) -> bool:
        """News about this host: refute suspicion and death, catch a copied host id.
        True when it made this host raise its incarnation."""
        if self.leaving:
            return False
        mine = self.record.incarnation
        if update.type == ALIVE:
            record = update.record
            if record is not None and record.url != self.record.url and update.incarnation >= mine:
                self._die(
                    "host-id-collision",
                    f"host id {self.host_id} is also used by {record.url} (incarnation "
                    f"{update.incarnation}); a persistence directory was copied: give that "
                    "host its own --persistence-dir",
                )
                return False
            if update.incarnation <= mine:
                return False
        elif update.incarnation < mine:
            return False
        else:
            self._health_add(1)  # being suspected hints at our own slowness (Lifeguard)
        self._set_record(replace(self.record, incarnation=update.incarnation + 1))
        alive = Update(ALIVE, self.host_id, self.record.incarnation, self.record)
        self._enqueue(alive, urgent=True)
        return True

    def _set_record(self, record: MemberRecord) -> None:
        self.record = record
        self.table.set_local(record)
        self.book.incarnation = record.incarnation
        self._me = record.identity(self.book.stamp())
        if self.on_incarnation is not None:
            self.on_incarnation(record.incarnation)

    def _die(self, code: str, message: str) -> None:
        self.fatal = (code, message)
        self.stop()
        if self.on_fatal is not None:
            self.on_fatal(code, message)

    # -- upkeep --------------------------------------------------------------------------------

    def _sweep(self) -> None:
        if not self.running:
            return
        cfg = self.config
        for member in self.table.forget(
            self.clock.time(),
            dead_after=cfg.forget_dead,
            left_after=cfg.forget_left,
            incompatible_after=cfg.forget_incompatible,
        ):
            self.suspicions.drop(member)
            self.book.forget(member.host_id)
            self.sync.wanted.pop(member.host_id, None)
            if self.listener is not None:
                self.listener(MemberEvent("member-forgotten", member, member.liveness))
        self._later("sweep", cfg.sweep_interval, self._sweep)

    def _health_add(self, delta: int) -> None:
        self.health = min(self.config.max_local_health - 1, max(0, self.health + delta))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _later(self, name: str, delay: float, callback: Callable[..., object], *args: Any) -> None:
        old = self._timers.get(name)
        if old is not None:
            old.cancel()
        self._timers[name] = self.clock.call_later(delay, callback, *args)

    def _later_once(self, name: str, delay: float, callback: Callable[..., object]) -> None:
        if name not in self._timers:
            self._timers[name] = self.clock.call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()


_HANDLERS: dict[type, Callable[[SwimNode, Any], None]] = {
    Ping: SwimNode._on_ping,
    Ack: SwimNode._on_ack,
    PingReq: SwimNode._on_ping_req,
    IndirectAck: SwimNode._on_indirect_ack,
    Gossip: SwimNode._on_gossip,
    Sync: lambda node, frame: node.sync.on_sync(frame),
    SyncReply: lambda node, frame: node.sync.on_sync_reply(frame),
    Pull: lambda node, frame: node.sync.on_pull(frame),
    Pulled: lambda node, frame: node.sync.on_pulled(frame),
}
