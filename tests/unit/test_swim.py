"""The SWIM node, its gossip queue and its summaries, driven frame by frame on a virtual clock."""

from __future__ import annotations

import math
import random

import msgspec
import pytest

from paglets.remote.gossip_queue import TransmitQueue
from paglets.remote.membership import Member
from paglets.remote.mesh_sim import MeshSim, VirtualClock
from paglets.remote.mesh_wire import (
    ALIVE,
    DEAD,
    LEFT,
    SUSPECT,
    Ack,
    Frame,
    Gossip,
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
    decode_frame,
    encode_frame,
    encoded_size,
)
from paglets.remote.summaries import LOAD, SPEC, SummaryBook
from paglets.remote.swim import MemberEvent, MeshConfig, SwimNode


class Recorder:
    """A transport that keeps what the node sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[Frame, str]] = []

    def send(self, frame: Frame, to: str) -> None:
        self.sent.append((frame, to))

    def take(self, kind: type | None = None) -> list[tuple[Frame, str]]:
        taken = [(f, to) for f, to in self.sent if kind is None or isinstance(f, kind)]
        self.sent = [(f, to) for f, to in self.sent if not (kind is None or isinstance(f, kind))]
        return taken


def rec(n: int, inc: int = 1, **fields: object) -> MemberRecord:
    return MemberRecord(
        f"{n:032x}",
        f"h{n}",
        f"http://10.0.0.{n}:8765",
        inc,
        code_version=fields.pop("code_version", "dev"),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


class Bench:
    """One node under test with a recorder, on a virtual clock."""

    def __init__(self, members: int = 0, **config: object) -> None:
        self.clock = VirtualClock()
        self.out = Recorder()
        self.events: list[MemberEvent] = []
        self.fatal: list[tuple[str, str]] = []
        self.incarnations: list[int] = []
        self.node = SwimNode(
            rec(1),
            scheduler=self.clock,
            transport=self.out,
            config=MeshConfig(**config),  # type: ignore[arg-type]
            rng=random.Random(4),
            listener=self.events.append,
            on_fatal=lambda code, message: self.fatal.append((code, message)),
            on_incarnation=self.incarnations.append,
        )
        self.node.start()
        for n in range(2, 2 + members):
            self.node.on_frame(
                Gossip(rec(n).identity(), [Update(ALIVE, rec(n).host_id, 1, rec(n))])
            )
        self.out.take()

    def run(self, seconds: float) -> None:
        self.clock.run_until(self.clock.now + seconds)

    def next_ping(self) -> tuple[Ping, str]:
        """Run until the node's next probe goes out; the clock then stands at its send time."""
        for _ in range(1000):
            pings = self.out.take(Ping)
            if pings:
                ping, to = pings[0]
                assert isinstance(ping, Ping)
                return ping, to
            self.run(0.001)
        raise AssertionError("no probe within a second")

    def member(self, n: int) -> Member:
        member = self.node.table.get(f"{n:032x}")
        assert member is not None
        return member


# -- frames ------------------------------------------------------------------------------------


def test_frames_round_trip_and_idle_ones_are_small() -> None:
    me = rec(1).identity()
    frames: list[Frame] = [
        Ping(7, me, rec(2).host_id),
        Ack(7, me, [Update(ALIVE, rec(3).host_id, 2, rec(3, 2))]),
        PingReq(8, me, Target(rec(2).host_id, rec(2).url), 450),
        IndirectAck(8, me, ack=True, rtt_ms=1.5),
        Gossip(me, [Update(SUSPECT, rec(2).host_id, 1, by=me.host_id)]),
        Sync(9, rec(1), join=True),
        SyncReply(9, me, error="name-taken", holder_url="http://x"),
        Pull(10, me, [rec(2).host_id], [SPEC]),
        Pulled(10, me, summaries=[Summary(me.host_id, SPEC, 5, {"cores": 8})]),
    ]
    for frame in frames:
        assert decode_frame(encode_frame(frame)) == frame
    assert len(encode_frame(frames[0])) < 200  # an idle ping
    assert len(encode_frame(Ack(7, me))) < 150  # an idle ack


def test_an_http_route_decodes_its_struct_without_the_tag() -> None:
    body = b'{"seq": 3, "from": {"host_id": "ab", "name": "a", "url": "http://a", "incarnation": 1}, "to_host_id": "cd"}'
    ping = msgspec.json.decode(body, type=Ping)
    assert ping.seq == 3 and ping.from_.name == "a" and ping.updates == []
    with pytest.raises(msgspec.ValidationError, match=r"\$\.seq"):
        msgspec.json.decode(b'{"seq": "x", "from": {}}', type=Ping)


# -- the gossip queue --------------------------------------------------------------------------


def test_queue_sends_each_item_a_bounded_number_of_times_fewest_first() -> None:
    queue = TransmitQueue()
    for i in range(5):
        queue.put(i, f"item{i}", 100)
    items, used = queue.take(250, limit=2)
    assert items == ["item4", "item3"] and used == 200  # newest first, within the budget
    items, _ = queue.take(1000, limit=2)
    assert items[:3] == ["item2", "item1", "item0"]  # never-sent ones before the sent ones
    assert len(queue) == 3
    queue.take(1000, limit=2)
    assert len(queue) == 0


def test_queue_replaces_an_items_older_news() -> None:
    queue = TransmitQueue()
    queue.put("a", "old", 100)
    queue.take(1000, limit=5)
    queue.put("a", "new", 100)
    assert queue.take(1000, limit=5)[0] == ["new"]
    queue.drop("a")
    assert queue.take(1000, limit=5) == ([], 0)


# -- probing -----------------------------------------------------------------------------------


def test_a_ping_is_acked_with_gossip_and_a_wrong_host_is_refused() -> None:
    bench = Bench(members=2)
    bench.node.on_frame(Ping(5, rec(2).identity(), bench.node.host_id))
    [(ack, to)] = bench.out.take(Ack)
    assert isinstance(ack, Ack) and ack.seq == 5 and to == rec(2).url and ack.refused is None
    assert any(u.host_id == rec(3).host_id for u in ack.updates)  # h3's join still spreads
    bench.node.on_frame(Ping(6, rec(2).identity(), "f" * 32))
    [(ack, _)] = bench.out.take(Ack)
    assert isinstance(ack, Ack) and ack.refused == "wrong-host" and ack.updates == []


def test_no_ack_leads_to_ping_req_then_suspicion_then_death() -> None:
    bench = Bench(members=4)
    node = bench.node
    _ping, to = bench.next_ping()
    target = next(m for m in node.members() if m.url == to)
    bench.run(0.55)
    reqs = bench.out.take(PingReq)
    assert len(reqs) == 3 and all(isinstance(r, PingReq) and r.target.url == to for r, _ in reqs)
    assert {u for _, u in reqs}.isdisjoint({to})
    bench.run(0.5)
    assert target.liveness == SUSPECT
    # Suspicion timeout for N=5: max(2 s, 2 log10(6)) = 2 s (local health 1: helpers silent).
    assert any(e.kind == "member-suspect" for e in bench.events)
    bench.run(6.0)
    assert target.liveness == DEAD
    assert any(e.kind == "member-dead" and e.member is target for e in bench.events)


def test_an_indirect_ack_saves_the_member() -> None:
    bench = Bench(members=4)
    _ping, to = bench.next_ping()
    bench.run(0.55)
    [(req, _), *_] = bench.out.take(PingReq)
    assert isinstance(req, PingReq)
    bench.node.on_frame(IndirectAck(req.seq, rec(3).identity(), ack=True, rtt_ms=2.0))
    bench.run(0.44)  # to the end of the probe period
    target = next(m for m in bench.node.members() if m.url == to)
    assert target.liveness == ALIVE
    assert all(m.liveness == ALIVE for m in bench.node.members())
    assert bench.node.health == 0


def test_a_helper_relays_ack_or_nacks_in_time() -> None:
    bench = Bench(members=3)
    node = bench.node
    node.on_frame(PingReq(40, rec(2).identity(), Target(rec(3).host_id, rec(3).url), 500))
    [(ping, to)] = bench.out.take(Ping)
    assert isinstance(ping, Ping) and to == rec(3).url and ping.to_host_id == rec(3).host_id
    node.on_frame(Ack(ping.seq, rec(3).identity()))
    [(reply, to)] = bench.out.take(IndirectAck)
    assert isinstance(reply, IndirectAck) and reply.ack and reply.seq == 40 and to == rec(2).url
    node.on_frame(PingReq(41, rec(2).identity(), Target(rec(4).host_id, rec(4).url), 500))
    bench.out.take(Ping)
    bench.run(0.45)  # nack at 80 % of the requester's timeout
    [(reply, _)] = bench.out.take(IndirectAck)
    assert isinstance(reply, IndirectAck) and reply.nack and reply.seq == 41


def test_missing_nacks_raise_local_health_and_stretch_timeouts() -> None:
    bench = Bench(members=4)
    node = bench.node
    bench.next_ping()
    bench.run(1.01)  # no ack, no nack from anyone
    assert node.health == 1
    _low, high = node.suspicions.bounds()
    assert high == pytest.approx(2 * max(2.0, 2 * math.log10(6)))
    bench.out.take()
    for _ in range(400):  # answered probes bring it back down
        if node.health == 0:
            break
        bench.run(0.01)
        for ping, _ in bench.out.take(Ping):
            assert isinstance(ping, Ping)
            member = node.table.get(ping.to_host_id)
            assert member is not None
            node.on_frame(Ack(ping.seq, member.record.identity()))
    assert node.health == 0


def test_suspicion_timeout_follows_the_formula_and_shrinks_with_witnesses() -> None:
    bench = Bench(members=31)
    node = bench.node
    low, high = node.suspicions.bounds()
    assert (low, high) == (1.0, pytest.approx(2 * math.log10(33)))  # N = 32: 3.04 s
    target = bench.member(2)
    start = bench.clock.now
    node.on_frame(
        Gossip(rec(3).identity(), [Update(SUSPECT, target.host_id, 1, by=rec(3).host_id)])
    )
    assert target.liveness == SUSPECT
    bench.run(0.5)
    node.on_frame(
        Gossip(rec(4).identity(), [Update(SUSPECT, target.host_id, 1, by=rec(4).host_id)])
    )
    node.on_frame(
        Gossip(rec(5).identity(), [Update(SUSPECT, target.host_id, 1, by=rec(5).host_id)])
    )
    # Three independent suspicions: the timeout is down to 1 s, already passed at 0.5 s + ...
    bench.run(0.49)
    assert target.liveness == SUSPECT
    bench.run(0.02)
    assert target.liveness == DEAD
    assert bench.clock.now - start == pytest.approx(1.01, abs=0.01)


def test_a_fixed_offline_after_replaces_the_formula() -> None:
    bench = Bench(members=3, suspicion_timeout=7.5)
    assert bench.node.suspicions.bounds() == (1.0, 7.5)


# -- refutation and identity -------------------------------------------------------------------


def test_a_suspected_host_refutes_with_a_higher_incarnation() -> None:
    bench = Bench(members=3)
    node = bench.node
    node.on_frame(Gossip(rec(2).identity(), [Update(SUSPECT, node.host_id, 1, by=rec(2).host_id)]))
    assert node.record.incarnation == 2 and bench.incarnations == [2]
    bench.run(0.001)  # refutations are pushed at once
    pushed = [f for f, _ in bench.out.take(Gossip)]
    assert pushed and all(
        any(u.type == ALIVE and u.host_id == node.host_id and u.incarnation == 2 for u in f.updates)
        for f in pushed  # type: ignore[union-attr]
    )
    node.on_frame(Gossip(rec(2).identity(), [Update(DEAD, node.host_id, 2)]))
    assert node.record.incarnation == 3
    node.on_frame(Gossip(rec(2).identity(), [Update(SUSPECT, node.host_id, 1)]))
    assert node.record.incarnation == 3  # old news
    assert bench.fatal == []


def test_the_own_host_id_at_another_url_stops_the_host() -> None:
    bench = Bench(members=1)
    node = bench.node
    copy = MemberRecord(node.host_id, "h1", "http://192.0.2.9:8765", 1, code_version="dev")
    node.on_frame(Gossip(rec(2).identity(), [Update(ALIVE, node.host_id, 1, copy)]))
    assert bench.fatal and bench.fatal[0][0] == "host-id-collision"
    assert "192.0.2.9" in bench.fatal[0][1] and not node.running


def test_an_old_record_of_this_host_at_another_url_is_no_collision() -> None:
    bench = Bench(members=1)
    node = bench.node
    node.update_record(tags=("x",))  # incarnation 2
    old = MemberRecord(node.host_id, "h1", "http://192.0.2.9:8765", 1, code_version="dev")
    node.on_frame(Gossip(rec(2).identity(), [Update(ALIVE, node.host_id, 1, old)]))
    assert bench.fatal == [] and node.running


def test_a_member_talking_to_us_while_dead_is_told_so() -> None:
    bench = Bench(members=2)
    node = bench.node
    node.on_frame(Gossip(rec(3).identity(), [Update(DEAD, rec(2).host_id, 1)]))
    node.on_frame(Ping(9, rec(2).identity(), node.host_id))
    [(ack, _)] = bench.out.take(Ack)
    assert isinstance(ack, Ack) and ack.updates[0] == Update(
        DEAD, rec(2).host_id, 1, by=node.host_id
    )


def test_leave_is_pushed_then_the_node_stops() -> None:
    bench = Bench(members=3)
    bench.node.leave()
    bench.run(2.0)
    lefts = [
        u
        for f, _ in bench.out.take(Gossip)
        for u in f.updates  # type: ignore[union-attr]
        if u.type == LEFT
    ]
    assert lefts and not bench.node.running


# -- joining -----------------------------------------------------------------------------------


def test_a_seed_refuses_a_name_held_by_another_host_id() -> None:
    bench = Bench(members=2)
    impostor = MemberRecord("e" * 32, "h2", "http://192.0.2.99:8765", 1, code_version="dev")
    bench.node.on_frame(Sync(3, impostor, join=True))
    [(reply, to)] = bench.out.take(SyncReply)
    assert isinstance(reply, SyncReply) and reply.error == "name-taken"
    assert reply.holder_url == rec(2).url and to == impostor.url
    assert bench.node.table.get("e" * 32) is None


def test_a_join_gets_every_live_member_with_records_and_summaries() -> None:
    bench = Bench(members=3)
    bench.node.publish(LOAD, {"free": 3})
    newcomer = rec(9)
    bench.node.on_frame(Sync(3, newcomer, join=True))
    [(reply, _)] = bench.out.take(SyncReply)
    assert isinstance(reply, SyncReply) and reply.error is None
    assert {u.host_id for u in reply.members} == {rec(n).host_id for n in (1, 2, 3, 4)}  # not 9
    assert all(u.record is not None for u in reply.members)
    assert [s.body for s in reply.summaries] == [{"free": 3}]
    assert bench.member(9) is not None and bench.member(9).liveness == ALIVE


def test_the_refused_newcomer_stops_with_the_holders_url() -> None:
    sim = MeshSim(seed=2)
    first = sim.add_host("alpha")
    sim.start(first)
    second = sim.add_host("alpha", seeds=[first.url])
    sim.start(second)
    sim.run(1.0)
    assert second.fatal is not None and second.fatal[0] == "name-taken"
    assert first.url in second.fatal[1] and "--name" in second.fatal[1]
    assert first.running and not second.running


# -- summaries ---------------------------------------------------------------------------------


def test_load_is_rate_limited_and_unchanged_load_is_not_resent() -> None:
    book = SummaryBook("a" * 32, load_interval=2.0, budget_bps=10_000, per_message=4096)
    assert book.publish(LOAD, {"q": 1}, 0.0) is not None
    assert book.publish(LOAD, {"q": 2}, 0.5) is None  # held back
    assert book.publish(LOAD, {"q": 3}, 1.0) is None  # folded into the same pending change
    assert book.due(1.9) is None
    due = book.due(2.0)
    assert due is not None and due.body == {"q": 3}
    assert book.publish(LOAD, {"q": 3}, 9.0) is None  # unchanged
    first = book.own[LOAD].version
    assert book.publish(LOAD, {"q": 4}, 9.0) is not None and book.own[LOAD].version > first


def test_versions_stay_monotonic_across_restarts() -> None:
    before = SummaryBook("a" * 32, load_interval=0, budget_bps=1, per_message=1)
    before.incarnation = 1
    for i in range(50):
        before.publish(LOAD, {"q": i}, float(i))
    after = SummaryBook("a" * 32, load_interval=0, budget_bps=1, per_message=1)
    after.incarnation = 2  # raised at the restart
    assert after.publish(LOAD, {"q": 0}, 0.0).version > before.own[LOAD].version  # type: ignore[union-attr]


def test_summaries_per_message_and_per_second_stay_within_budget() -> None:
    book = SummaryBook("a" * 32, load_interval=0, budget_bps=1000, per_message=500)
    body = {"x": "y" * 60}
    for n in range(100):
        book.queue.put((n, LOAD), Summary(f"{n:032x}", LOAD, 1, body), 100)
    sent = []
    now = 0.0
    for _ in range(40):  # two messages a second for 20 s
        _items, used = book.take(now, limit=10)
        assert used <= 500
        sent.append(used)
        now += 0.5
    assert sum(sent) <= 1000 * 20 + 2 * 500


def test_spec_is_pulled_once_from_its_owner() -> None:
    sim = MeshSim(seed=3)
    hosts = sim.add_mesh(5, seeds=1)
    sim.start_all()
    assert sim.run_until(sim.converged, timeout=10) is not None
    owner = hosts[3]
    owner.node.publish(SPEC, {"cores": 64, "gpus": ["A100"]})  # type: ignore[union-attr]
    pulls = []
    original = sim.network.send

    def spy(frame: Frame, source: str, to: str) -> None:
        if isinstance(frame, Pull):
            pulls.append((source, to))
        original(frame, source, to)

    sim.network.send = spy  # type: ignore[method-assign]
    sim.run(15.0)
    for host in hosts:
        if host is owner:
            continue
        got = host.node.summary(owner.host_id, SPEC)  # type: ignore[union-attr]
        assert got is not None and got[1] == {"cores": 64, "gpus": ["A100"]}
    assert sorted(pulls) == sorted({(h.url, owner.url) for h in hosts if h is not owner})


def test_a_load_change_reaches_the_others() -> None:
    sim = MeshSim(seed=4)
    hosts = sim.add_mesh(8, seeds=1)
    sim.start_all()
    assert sim.run_until(sim.converged, timeout=10) is not None
    owner = hosts[5]
    owner.node.publish(LOAD, {"free": 7})  # type: ignore[union-attr]

    def everywhere() -> bool:
        for host in hosts:
            got = host.node.summary(owner.host_id, LOAD)  # type: ignore[union-attr]
            if got is None or got[1] != {"free": 7}:
                return False
        return True

    # Pushed by piggyback; a host the gossip missed pulls it when the owner's next frame to
    # it says a newer version exists: within two round-robin cycles (2 x 7 s) and a round.
    took = sim.run_until(everywhere, timeout=30.0)
    assert took is not None and took <= 16.0


def test_encoded_size_matches_the_frame_bytes() -> None:
    update = Update(ALIVE, rec(2).host_id, 1, rec(2))
    with_one = len(encode_frame(Gossip(rec(1).identity(), [update])))
    empty = len(encode_frame(Gossip(rec(1).identity(), [])))
    # The key `updates` (8 bytes) and a one-byte list header come with the first update.
    assert with_one - empty == encoded_size(update) + 8 + 1


# -- on a real event loop ----------------------------------------------------------------------


def test_the_node_runs_on_an_asyncio_loop_as_it_is() -> None:
    """The host drives the node with its event loop (`loop.time`, `loop.call_later`)."""
    import asyncio

    async def main() -> list[SwimNode]:
        loop = asyncio.get_running_loop()
        nodes: dict[str, SwimNode] = {}

        class LoopTransport:
            def send(self, frame: Frame, to: str) -> None:
                data = encode_frame(frame)
                target = nodes.get(to)
                if target is not None:
                    loop.call_soon(target.on_frame, decode_frame(data))

        config = MeshConfig(probe_interval=0.05, probe_timeout=0.02, gossip_interval=0.01)
        for n in range(1, 5):
            seeds = [] if n == 1 else [rec(1).url]
            node = SwimNode(
                rec(n), scheduler=loop, transport=LoopTransport(), config=config, seeds=seeds
            )
            nodes[node.record.url] = node
        for node in nodes.values():
            node.start()
        deadline = loop.time() + 10.0
        while loop.time() < deadline:
            if all(node.table.alive_count == 3 for node in nodes.values()):
                break
            await asyncio.sleep(0.01)
        for node in nodes.values():
            node.stop()
        return list(nodes.values())

    for node in asyncio.run(main()):
        assert node.table.alive_count == 3
        assert node.resolve("h4") == rec(4).url
