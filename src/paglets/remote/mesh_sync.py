"""Joining through seeds and anti-entropy: the membership node's full-state exchanges.

network.md §3.4 (Sync) and §3.7 (seeds). A joining host sends `Sync(join=True)` with its full
record to a seed (the other seeds a second later, unless the first answer made them members);
the seed refuses a name another live host id holds (`name-taken`, the holder's URL named) or
answers with every live member's full record and summaries. Seeds are retried 1 s doubling to
30 s, forever, while the seed is not a member. Then a few catch-up syncs fill in the hosts
that joined at the same time (see `_run_catch_up`).

Anti-entropy is rare (30 s x max(1, N/64), one random member) and cheap when nothing differs:
the exchange starts with a 64-bit hash of the view, sends a digest only when the hashes differ
and records only for what differs, so it costs an idle 1,000-host mesh almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paglets.remote.membership import Member, newer
from paglets.remote.mesh_wire import (
    ALIVE,
    SUSPECT,
    DigestEntry,
    Gossip,
    Pull,
    Pulled,
    Sync,
    SyncReply,
    Update,
    encoded_size,
)
from paglets.remote.summaries import PUSHED, SPEC, SummaryBook

if TYPE_CHECKING:
    from paglets.remote.swim import SwimNode

__all__ = ["MeshSync", "normalise_url"]

MAX_RECONCILE = 1024  # members repaired per anti-entropy exchange, each way
REPAIR_AFTER = 10.0  # seconds without any summary of a member before pulling its newer ones
CATCH_UP_FIRST, CATCH_UP_LAST = 1.0, 16.0  # seconds: catch-up syncs after a join


def normalise_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


class _Seed:
    __slots__ = ("delay", "host_id", "seq", "timer", "url")

    def __init__(self, url: str, delay: float) -> None:
        self.url = url
        self.delay = delay
        self.host_id: str | None = None
        self.seq = 0  # of the join sync in flight
        self.timer: Any = None


class MeshSync:
    """Seeds, join and anti-entropy for one `SwimNode`."""

    def __init__(self, node: SwimNode, seeds: tuple[str, ...] | list[str]) -> None:
        self.node = node
        own = normalise_url(node.record.url)
        first = node.config.seed_retry_min
        self.seeds = [
            _Seed(url, first) for url in dict.fromkeys(seeds) if normalise_url(url) != own
        ]
        self._joins: dict[int, _Seed] = {}
        self._anti_entropy: Any = None
        self._catch_up: Any = None
        self._catch_up_delay: float | None = None  # None: not started; 0: done
        self.wanted: dict[str, float] = {}  # host id → when to pull its record or spec next

    # -- seeds ---------------------------------------------------------------------------------

    def start(self) -> None:
        # One seed first; the others a retry period later, by when the first one's answer
        # has usually made them members already (each join answer is the whole membership).
        order = list(self.seeds)
        self.node.rng.shuffle(order)
        for i, seed in enumerate(order):
            if i == 0:
                self._attempt(seed)
            else:
                delay = self.node.config.seed_retry_min * self.node.rng.uniform(1.0, 1.5)
                seed.timer = self.node.clock.call_later(delay, self._attempt, seed)
        self._anti_entropy = self.node.clock.call_later(
            self._anti_entropy_delay(first=True), self._run_anti_entropy
        )

    def stop(self) -> None:
        for seed in self.seeds:
            if seed.timer is not None:
                seed.timer.cancel()
                seed.timer = None
        for timer in (self._anti_entropy, self._catch_up):
            if timer is not None:
                timer.cancel()
        self._anti_entropy = self._catch_up = None

    def joined(self) -> bool:
        """True once every seed is a live member (or there are no seeds)."""
        return all(self._is_member(seed) for seed in self.seeds)

    def _is_member(self, seed: _Seed) -> bool:
        table = self.node.table
        if seed.host_id is not None:
            member = table.get(seed.host_id)
            if member is not None:
                return member.liveness in (ALIVE, SUSPECT) and normalise_url(
                    member.url
                ) == normalise_url(seed.url)
        wanted = normalise_url(seed.url)
        for member in table:
            if member.liveness in (ALIVE, SUSPECT) and normalise_url(member.url) == wanted:
                seed.host_id = member.host_id
                return True
        return False

    def _attempt(self, seed: _Seed) -> None:
        node = self.node
        seed.timer = None
        if not node.running:
            return
        cfg = node.config
        if self._is_member(seed):
            seed.delay = cfg.seed_retry_min
            seed.timer = node.clock.call_later(cfg.seed_retry_max, self._attempt, seed)
            return
        self._joins.pop(seed.seq, None)
        seed.seq = seq = node._next_seq()
        self._joins[seq] = seed
        node.transport.send(Sync(seq, node.record, join=True), seed.url)
        seed.timer = node.clock.call_later(seed.delay, self._attempt, seed)
        seed.delay = min(seed.delay * 2.0, cfg.seed_retry_max)

    def contact(self, url: str) -> None:
        """One join sync to a host found by LAN discovery (§3.7): the same exchange as a
        seed's, but not retried (the next beacon or scan finds it again) and not tracked as
        our join, so a refusal from a host we merely heard of stops nothing."""
        node = self.node
        if node.running and normalise_url(url) != normalise_url(node.record.url):
            node.transport.send(Sync(node._next_seq(), node.record, join=True), url)

    # -- serving a sync --------------------------------------------------------------------------

    def on_sync(self, sync: Sync) -> None:
        node = self.node
        sender = sync.from_
        if sender.host_id == node.host_id:
            if normalise_url(sender.url) != normalise_url(node.record.url):
                message = (
                    f"host id {node.host_id} is used by both {node.record.url} and "
                    f"{sender.url}; a persistence directory was copied: give each host its own"
                )
                node.transport.send(self._reply(sync, error="host-id-collision"), sender.url)
                node._die("host-id-collision", message)
            return
        if sync.join:
            holder = node.table.holder_of(sender.name, sender.host_id)
            holder_url = holder.url if holder is not None else None
            if holder_url is None and sender.name == node.record.name:
                holder_url = node.record.url
            if holder_url is not None:
                reply = self._reply(sync, error="name-taken", holder_url=holder_url)
                node.transport.send(reply, sender.url)
                return
        node._apply(Update(ALIVE, sender.host_id, sender.incarnation, sender))
        node._merge(sync.members, sync.summaries, relay=False)
        if sync.join:
            live = [
                m
                for m in node.table
                if m.liveness in (ALIVE, SUSPECT) and not m.partial and m.host_id != sender.host_id
            ]
            members = [Update(ALIVE, node.host_id, node.record.incarnation, node.record)]
            members.extend(Update(m.liveness, m.host_id, m.incarnation, m.record) for m in live)
            summaries = node.book.snapshot(live)
            node.transport.send(self._reply(sync, members=members, summaries=summaries), sender.url)
        elif sync.table_hash == node.table.table_hash:
            node.transport.send(self._reply(sync, in_sync=True), sender.url)
        else:
            node.transport.send(self._reply(sync, digest=node.table.digest()), sender.url)

    def _reply(self, sync: Sync, **fields: Any) -> SyncReply:
        return SyncReply(sync.seq, self.node._me, **fields)

    # -- a sync's answer -----------------------------------------------------------------------

    def on_sync_reply(self, reply: SyncReply) -> None:
        node = self.node
        seed = self._joins.pop(reply.seq, None)
        if reply.error is not None and seed is None:
            return  # refusals only count as answers to our own join
        if reply.error == "name-taken":
            node._die(
                "name-taken",
                f"host name {node.record.name!r} is already taken by {reply.holder_url} in the "
                f"mesh reached through {reply.from_.url}; choose another --name",
            )
            return
        if reply.error == "host-id-collision":
            node._die(
                "host-id-collision",
                f"host id {node.host_id} is already used by {reply.from_.url}; a persistence "
                "directory was copied: give each host its own --persistence-dir",
            )
            return
        node._heard(reply.from_)
        if seed is not None:
            seed.host_id = reply.from_.host_id
            if self._catch_up_delay is None:
                self._catch_up_delay = CATCH_UP_FIRST
                self._schedule_catch_up()
        node._merge(reply.members, reply.summaries, relay=False)
        if reply.digest:
            self._reconcile(reply.digest, reply.from_.url)

    # -- catching up after a join --------------------------------------------------------------

    # A join's reply holds what the seed knew then; hosts joining at the same moment are
    # missing from it. Anti-entropy with a seed (which hears every join through it) 1, 3, 7,
    # 15 and 31 s after the join fills that in; each costs one hash when the views agree.
    # Gossip alone would need minutes to carry 1,000 simultaneous joins (targets.md h4: 15 s).
    # An early "in sync" is no reason to stop: two hosts can agree on a view still growing.

    def _schedule_catch_up(self) -> None:
        delay = self._catch_up_delay
        if not delay or delay > CATCH_UP_LAST:
            self._end_catch_up()
            return
        self._catch_up = self.node.clock.call_later(delay, self._run_catch_up)

    def _run_catch_up(self) -> None:
        node = self.node
        self._catch_up = None
        if not node.running or not self._catch_up_delay:
            return
        seeds = [node.table.get(s.host_id) for s in self.seeds if s.host_id is not None]
        alive = [m for m in seeds if m is not None and m.liveness == ALIVE]
        partner = node.rng.choice(alive) if alive else None
        if partner is None:
            picked = node.ring.pick(1, exclude=node.host_id, alive_only=True)
            partner = picked[0] if picked else None
        if partner is not None:
            seq = node._next_seq()
            sync = Sync(seq, node.record, table_hash=node.table.table_hash)
            node.transport.send(sync, partner.url)
        self._catch_up_delay *= 2.0
        self._schedule_catch_up()

    def _end_catch_up(self) -> None:
        self._catch_up_delay = 0.0
        if self._catch_up is not None:
            self._catch_up.cancel()
            self._catch_up = None

    # -- pulling records and specs -------------------------------------------------------------

    # A member known only from a frame's `from` needs its full record; one whose record names
    # a newer `spec_version` than the copy held needs its spec (jobs.md 1.4: pulled once); one
    # that says (in a frame's `from`) it has newer loads or services than we got by gossip
    # needs those. All are asked of the member itself, a few per probe round.

    def want_if_stale(self, member: Member) -> None:
        if member.host_id in self.wanted:
            return
        now = self.node.clock.time()
        if self._stale_spec(member) or self._stale_pushed(member, now):
            self.wanted[member.host_id] = now

    @staticmethod
    def _stale_spec(member: Member) -> bool:
        spec = member.summaries.get(SPEC)
        return member.record.spec_version > (0 if spec is None else spec.version)

    @staticmethod
    def _stale_pushed(member: Member, now: float) -> bool:
        """The member has newer pushed summaries than we hold, and gossip has not brought
        any for a while: a repair for the quiet host whose one change we missed. A busy host's
        next push is never far, and pulling it would bypass the summary budget."""
        if member.announced <= SummaryBook.held(member):
            return False
        newest = max((s.received_at for s in member.summaries.values()), default=None)
        return newest is None or now - newest >= REPAIR_AFTER

    def pull_wanted(self, now: float) -> None:
        """Send this round's pulls: up to `pulls_per_round`, of which one for pushed kinds."""
        if not self.wanted:
            return
        node = self.node
        sent = repairs = 0
        for host_id, when in list(self.wanted.items()):
            if sent >= node.config.pulls_per_round:
                break
            member = node.table.get(host_id)
            if member is None or member.liveness != ALIVE:
                del self.wanted[host_id]
                continue
            kinds = [SPEC] if self._stale_spec(member) else []
            repair = self._stale_pushed(member, now)
            if not member.partial and not kinds and not repair:
                del self.wanted[host_id]
                continue
            if when > now or (repair and not kinds and not member.partial and repairs >= 1):
                continue
            if repair and repairs < 1:
                kinds.extend(sorted(PUSHED))
                repairs += 1
            self.wanted[host_id] = now + 5.0 * node.config.probe_interval
            hosts = [host_id] if member.partial else []
            pull = Pull(node._next_seq(), node._me, hosts, kinds)
            node.transport.send(pull, member.url)
            sent += 1

    def on_pull(self, pull: Pull) -> None:
        node = self.node
        node._heard(pull.from_)
        members = []
        for host_id in pull.host_ids:
            if host_id == node.host_id:
                members.append(Update(ALIVE, host_id, node.record.incarnation, node.record))
                continue
            member = node.table.get(host_id)
            if member is not None and not member.partial:
                members.append(Update(member.liveness, host_id, member.incarnation, member.record))
        summaries = [node.book.own[k] for k in pull.kinds if k in node.book.own]
        node.transport.send(Pulled(pull.seq, node._me, members, summaries), pull.from_.url)

    def on_pulled(self, pulled: Pulled) -> None:
        self.node._heard(pulled.from_)
        self.node._merge(pulled.members, pulled.summaries, relay=False)

    # -- anti-entropy --------------------------------------------------------------------------

    def _anti_entropy_delay(self, *, first: bool = False) -> float:
        node = self.node
        period = node.config.anti_entropy_interval * max(1.0, (node.table.live_count + 1) / 64)
        return node.rng.uniform(0.0, period) if first else node.rng.uniform(0.5, 1.5) * period

    def _run_anti_entropy(self) -> None:
        node = self.node
        self._anti_entropy = None
        if not node.running:
            return
        peers = node.ring.pick(1, exclude=node.host_id, alive_only=True)
        if peers:
            sync = Sync(node._next_seq(), node.record, table_hash=node.table.table_hash)
            node.transport.send(sync, peers[0].url)
        self._anti_entropy = node.clock.call_later(
            self._anti_entropy_delay(), self._run_anti_entropy
        )

    def _reconcile(self, digest: list[DigestEntry], peer_url: str) -> None:
        """Pull what the peer knows better, push what we know better."""
        node = self.node
        table = node.table.members
        mine = node.record.incarnation
        wanted: list[str] = []
        seen: set[str] = set()
        for entry in digest:
            seen.add(entry.host_id)
            if entry.host_id == node.host_id:
                if entry.incarnation > mine or (
                    entry.status != ALIVE and entry.incarnation >= mine
                ):
                    node._apply(Update(entry.status, node.host_id, entry.incarnation))
                continue
            member = table.get(entry.host_id)
            if member is not None and member.partial and entry.incarnation >= member.incarnation:
                if len(wanted) < MAX_RECONCILE:
                    wanted.append(entry.host_id)
            elif member is None or newer(
                entry.incarnation, entry.status, member.incarnation, member.liveness
            ):
                if entry.status in (ALIVE, SUSPECT) and len(wanted) < MAX_RECONCILE:
                    wanted.append(entry.host_id)
                elif member is not None:
                    node._apply(Update(entry.status, entry.host_id, entry.incarnation))
        if wanted:
            node.transport.send(Pull(node._next_seq(), node._me, wanted), peer_url)
        by_id = {e.host_id: e for e in digest}
        push: list[Update] = []
        for member in table.values():
            if len(push) >= MAX_RECONCILE:
                break
            entry = by_id.get(member.host_id)
            if member.partial:
                continue
            if entry is None:
                if member.liveness not in (ALIVE, SUSPECT):
                    continue
            elif not newer(member.incarnation, member.liveness, entry.incarnation, entry.status):
                continue
            push.append(Update(member.liveness, member.host_id, member.incarnation, member.record))
        self._send_updates(push, peer_url)

    def _send_updates(self, updates: list[Update], url: str) -> None:
        node = self.node
        budget = node.config.max_piggyback
        batch: list[Update] = []
        used = 0
        for update in updates:
            size = encoded_size(update)
            if batch and used + size > budget:
                node.transport.send(Gossip(node._me, batch), url)
                batch, used = [], 0
            batch.append(update)
            used += size
        if batch:
            node.transport.send(Gossip(node._me, batch), url)
