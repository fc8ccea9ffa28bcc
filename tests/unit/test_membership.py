"""The member table: precedence, the version gate, names, forgetting, hashes (network.md §3)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paglets.core.errors import HostError
from paglets.remote.membership import INCOMPATIBLE, MemberTable, describe, host_ref, newer
from paglets.remote.mesh_wire import (
    ALIVE,
    DEAD,
    LEFT,
    SUSPECT,
    Identity,
    MemberRecord,
    Update,
    decode_frame,
    encode_frame,
)

LOCAL = MemberRecord("0" * 32, "local", "http://127.0.0.1:9000", 1, code_version="v1")


def record(n: int, inc: int = 1, *, name: str | None = None, **fields: object) -> MemberRecord:
    return MemberRecord(
        f"{n:032x}",
        name or f"h{n}",
        fields.pop("url", f"http://127.0.0.1:{9000 + n}"),  # type: ignore[arg-type]
        inc,
        code_version=fields.pop("code_version", "v1"),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def alive(n: int, inc: int = 1, **fields: object) -> Update:
    return Update(ALIVE, f"{n:032x}", inc, record(n, inc, **fields))


def table_with(*updates: Update, now: float = 0.0) -> MemberTable:
    table = MemberTable(LOCAL)
    for update in updates:
        table.apply(update, now)
    return table


# -- precedence --------------------------------------------------------------------------------

CASES = [
    # (known, incoming, accepted)
    ((ALIVE, 1), (ALIVE, 2), True),
    ((ALIVE, 2), (ALIVE, 2), False),
    ((ALIVE, 2), (ALIVE, 1), False),
    ((ALIVE, 1), (SUSPECT, 1), True),
    ((ALIVE, 2), (SUSPECT, 1), False),
    ((SUSPECT, 1), (ALIVE, 1), False),
    ((SUSPECT, 1), (ALIVE, 2), True),
    ((SUSPECT, 1), (SUSPECT, 2), True),
    ((SUSPECT, 1), (DEAD, 1), True),
    ((ALIVE, 1), (DEAD, 1), True),
    ((DEAD, 1), (ALIVE, 1), False),
    ((DEAD, 1), (ALIVE, 2), True),
    ((DEAD, 1), (SUSPECT, 1), False),
    ((DEAD, 1), (LEFT, 1), True),
    ((LEFT, 1), (DEAD, 1), False),
    ((ALIVE, 3), (LEFT, 3), True),
    ((LEFT, 3), (ALIVE, 4), True),
]


@pytest.mark.parametrize(("known", "incoming", "accepted"), CASES)
def test_swim_precedence(known: tuple[str, int], incoming: tuple[str, int], accepted: bool) -> None:
    table = table_with(alive(1, 1))
    kind, inc = known
    table.apply(Update(kind, f"{1:032x}", inc), 1.0)
    if kind == ALIVE and inc > 1:
        table.apply(alive(1, inc), 1.0)
    member = table.get(f"{1:032x}")
    assert member is not None and (member.liveness, member.incarnation) == known
    kind, inc = incoming
    update = alive(1, inc) if kind == ALIVE else Update(kind, f"{1:032x}", inc)
    change = table.apply(update, 2.0)
    assert (change is not None) is accepted
    if accepted:
        assert (member.liveness, member.incarnation) == incoming
        # `since` moves only when the liveness does.
        unchanged_since = 0.0 if known[0] == ALIVE else 1.0
        assert member.since == (2.0 if incoming[0] != known[0] else unchanged_since)


STATES = st.tuples(st.sampled_from([ALIVE, SUSPECT, DEAD, LEFT]), st.integers(1, 4))


@settings(max_examples=200, deadline=None)
@given(st.lists(STATES, min_size=1, max_size=8))
def test_any_order_of_the_same_updates_gives_the_same_state(states: list[tuple[str, int]]) -> None:
    # Every update carries the record, as a sync does: then the order never matters.
    updates = [Update(kind, f"{1:032x}", inc, record(1, inc)) for kind, inc in states]
    finals = set()
    for order in itertools.islice(itertools.permutations(updates), 24):
        table = table_with(*order)
        member = table.get(f"{1:032x}")
        assert member is not None
        finals.add((member.liveness, member.incarnation))
    assert len(finals) == 1
    best = max(states, key=lambda s: (s[1], [ALIVE, SUSPECT, DEAD, LEFT].index(s[0])))
    assert finals == {best}


def test_newer_orders_by_incarnation_then_state() -> None:
    assert newer(2, ALIVE, 1, DEAD)
    assert newer(1, SUSPECT, 1, ALIVE)
    assert not newer(1, ALIVE, 1, SUSPECT)
    assert newer(1, LEFT, 1, DEAD)


def test_news_about_an_unknown_host_needs_its_record() -> None:
    table = MemberTable(LOCAL)
    assert table.apply(Update(SUSPECT, f"{5:032x}", 1, by="x"), 0.0) is None
    assert table.apply(Update(DEAD, f"{5:032x}", 1), 0.0) is None
    assert len(table) == 0
    change = table.apply(alive(5), 0.0)
    assert change is not None and change.previous is None
    assert table.alive_count == 1 and table.live_count == 1


def test_counts_follow_liveness() -> None:
    table = table_with(alive(1), alive(2), alive(3))
    table.apply(Update(SUSPECT, f"{1:032x}", 1), 1.0)
    table.apply(Update(DEAD, f"{2:032x}", 1), 1.0)
    assert (table.alive_count, table.live_count) == (1, 2)
    table.apply(alive(2, 2), 2.0)
    assert (table.alive_count, table.live_count) == (2, 3)


# -- direct contact -----------------------------------------------------------------------------


def test_a_sender_never_heard_of_is_added_partial_then_filled_in() -> None:
    table = MemberTable(LOCAL)
    sender = Identity(f"{7:032x}", "h7", "http://127.0.0.1:9007", 3, "v1")
    change = table.heard(sender, 5.0)
    assert change is not None
    member = change.member
    assert member.partial and member.liveness == ALIVE and member.record.tags == ()
    table.apply(Update(SUSPECT, sender.host_id, 3, by="someone"), 6.0)
    full = record(7, 3, tags=("gpu",), url="http://127.0.0.1:9007")
    # The record at the same incarnation fills it in without undoing the suspicion.
    assert table.apply(Update(ALIVE, sender.host_id, 3, full), 7.0) is not None
    assert not member.partial and member.record.tags == ("gpu",)
    assert member.liveness == SUSPECT


def test_contact_at_a_higher_incarnation_revives_a_dead_member() -> None:
    table = table_with(alive(1, 1, tags=("linux",)))
    table.apply(Update(DEAD, f"{1:032x}", 1), 1.0)
    moved = Identity(f"{1:032x}", "h1", "http://127.0.0.1:9999", 2, "v1")
    change = table.heard(moved, 2.0)
    assert change is not None and change.previous == DEAD
    member = change.member
    assert (member.liveness, member.incarnation, member.url) == (ALIVE, 2, moved.url)
    assert member.record.tags == ("linux",)  # kept until the new record arrives
    assert member.last_heard == 2.0


def test_contact_refreshes_last_heard_only() -> None:
    table = table_with(alive(1, 4))
    table.apply(Update(SUSPECT, f"{1:032x}", 4), 1.0)
    assert table.heard(Identity(f"{1:032x}", "h1", "u", 4, "v1"), 9.0) is None
    member = table.get(f"{1:032x}")
    assert member is not None and member.liveness == SUSPECT and member.last_heard == 9.0


# -- the version gate --------------------------------------------------------------------------


def test_other_code_version_is_listed_incompatible_with_both_versions() -> None:
    table = table_with(alive(1), alive(2, code_version="v2"))
    member = table.get(f"{2:032x}")
    assert member is not None
    assert member.status == INCOMPATIBLE and member.liveness == ALIVE
    assert "'v2'" in member.incompatible_reason and "'v1'" in member.incompatible_reason  # type: ignore[operator]
    assert [m.name for m in table.compatible_alive()] == ["h1"]
    with pytest.raises(HostError) as raised:
        table.resolve("h2")
    assert raised.value.code == "incompatible"
    assert "'v2'" in str(raised.value) and "'v1'" in str(raised.value)


def test_other_scheme_or_protocol_is_incompatible() -> None:
    table = table_with(alive(1, url="https://192.0.2.1:9001"), alive(2, protocol=2))
    reasons = {m.name: m.incompatible_reason for m in table}
    assert "'https'" in reasons["h1"] and "'http'" in reasons["h1"]  # type: ignore[operator]
    assert "protocol 2" in reasons["h2"] and "1" in reasons["h2"]  # type: ignore[operator]


def test_an_upgrade_to_the_same_version_clears_the_gate() -> None:
    table = table_with(alive(1, code_version="v0"))
    table.apply(alive(1, 2), 1.0)
    member = table.get(f"{1:032x}")
    assert member is not None and member.incompatible_reason is None and member.is_target


def test_draining_members_are_not_targets() -> None:
    table = table_with(alive(1, draining=True), alive(2))
    assert [m.name for m in table.compatible_alive()] == ["h2"]
    with pytest.raises(HostError, match="draining"):
        table.resolve("h1")


# -- names -------------------------------------------------------------------------------------


def test_resolve_finds_members_and_self() -> None:
    table = table_with(alive(1))
    assert table.resolve("h1") == "http://127.0.0.1:9001"
    assert table.resolve("local") == LOCAL.url
    with pytest.raises(HostError) as raised:
        table.resolve("nowhere")
    assert raised.value.code == "unknown-host" and "'nowhere'" in str(raised.value)
    table.apply(Update(DEAD, f"{1:032x}", 1), 1.0)
    with pytest.raises(HostError, match="dead"):
        table.resolve("h1")


def test_a_name_held_by_two_host_ids_is_flagged_and_not_resolved() -> None:
    table = table_with(alive(1, name="twin"), alive(2, name="twin"), alive(3))
    twins = table.named("twin")
    assert len(twins) == 2 and all(m.name_conflict for m in twins)
    with pytest.raises(HostError) as raised:
        table.resolve("twin")
    assert raised.value.code == "name-conflict"
    assert "9001" in str(raised.value) and "9002" in str(raised.value)
    table.apply(Update(LEFT, f"{2:032x}", 1), 1.0)
    assert not any(m.name_conflict for m in table.named("twin"))
    assert table.resolve("twin") == "http://127.0.0.1:9001"


def test_a_member_with_this_hosts_name_is_a_conflict() -> None:
    table = table_with(alive(1, name="local"))
    assert table.local_name_conflict
    with pytest.raises(HostError, match="several hosts"):
        table.resolve("local")


def test_holder_of_names_live_holders_only() -> None:
    table = table_with(alive(1, name="taken"), alive(2, name="gone"))
    table.apply(Update(DEAD, f"{2:032x}", 1), 1.0)
    holder = table.holder_of("taken", "f" * 32)
    assert holder is not None and holder.url.endswith(":9001")
    assert table.holder_of("taken", f"{1:032x}") is None  # the same host id is the same host
    assert table.holder_of("gone", "f" * 32) is None


def test_renaming_moves_the_name_index() -> None:
    table = table_with(alive(1, name="old"))
    table.apply(Update(ALIVE, f"{1:032x}", 2, record(1, 2, name="new")), 1.0)
    assert table.named("old") == [] and [m.host_id for m in table.named("new")] == [f"{1:032x}"]


# -- forgetting --------------------------------------------------------------------------------


def test_dead_left_and_incompatible_members_are_forgotten_on_time() -> None:
    table = table_with(alive(1), alive(2), alive(3, code_version="v9"), alive(4))
    table.apply(Update(DEAD, f"{1:032x}", 1), 100.0)
    table.apply(Update(LEFT, f"{2:032x}", 1), 100.0)
    limits = {"dead_after": 1800.0, "left_after": 300.0, "incompatible_after": 600.0}
    assert table.forget(399.0, **limits) == []
    assert [m.name for m in table.forget(401.0, **limits)] == ["h2"]
    assert [m.name for m in table.forget(601.0, **limits)] == ["h3"]  # last heard at 0
    assert [m.name for m in table.forget(1901.0, **limits)] == ["h1"]
    assert [m.name for m in table] == ["h4"]
    # A forgotten member that comes back joins anew.
    change = table.apply(alive(1, 1), 2000.0)
    assert change is not None and change.previous is None


# -- hashes and digests ------------------------------------------------------------------------


def test_equal_views_have_equal_hashes_whatever_the_order() -> None:
    updates = [alive(1), alive(2, 3), alive(3), Update(DEAD, f"{3:032x}", 1)]
    a = table_with(*updates)
    b = table_with(updates[1], updates[0], updates[2], updates[3])
    assert a.table_hash == b.table_hash
    b.apply(Update(SUSPECT, f"{1:032x}", 1), 1.0)  # suspicion is transient: same hash
    assert a.table_hash == b.table_hash
    b.apply(Update(DEAD, f"{1:032x}", 1), 1.0)
    assert a.table_hash != b.table_hash
    b.remove(f"{1:032x}")
    a.remove(f"{1:032x}")
    assert a.table_hash == b.table_hash
    assert {(e.host_id, e.incarnation, e.status) for e in a.digest()} == {
        (LOCAL.host_id, 1, ALIVE),
        (f"{2:032x}", 3, ALIVE),
        (f"{3:032x}", 1, DEAD),
    }


def test_the_local_record_is_part_of_the_hash() -> None:
    a = MemberTable(LOCAL)
    before = a.table_hash
    a.set_local(MemberRecord(LOCAL.host_id, "local", LOCAL.url, 2, code_version="v1"))
    assert a.table_hash != before


# -- HostRef -----------------------------------------------------------------------------------


def test_host_ref_uses_local_receive_times() -> None:
    table = table_with(alive(1, tags=("gpu",), properties={"os": "linux"}), now=10.0)
    table.apply(Update(SUSPECT, f"{1:032x}", 1), 12.0)
    member = table.get(f"{1:032x}")
    ref = host_ref(member, now=15.0, wall_now=1_000_000.0)
    assert ref.last_seen == 1_000_000.0 - 5.0
    assert ref.status == SUSPECT and not ref.online and "suspect" in (ref.error or "")
    assert ref.tags == ["gpu"] and ref.properties == {"os": "linux"}
    assert ref.host_id == f"{1:032x}" and ref.incarnation == 1
    me = host_ref(None, 15.0, 99.0, local=LOCAL, counts={"active_count": 4})
    assert me.online and me.active_count == 4 and me.name == "local"


def test_describe_gives_the_member_record_of_the_spec() -> None:
    table = table_with(alive(1, code_version="v2", tags=("gpu",)), now=10.0)
    member = table.get(f"{1:032x}")
    assert member is not None
    member.rtt_ms = 1.5
    shown = describe(member, 12.5)
    assert shown["status"] == INCOMPATIBLE and shown["liveness"] == ALIVE
    assert shown["status_age_s"] == 2.5 and shown["last_heard_age_s"] == 2.5
    assert shown["tags"] == ["gpu"] and shown["rtt_ms"] == 1.5
    assert "'v2'" in shown["incompatible_reason"]
    assert shown["resources"]["load"] is None


def test_member_records_survive_the_wire() -> None:
    from paglets.remote.mesh_wire import Gossip

    frame = Gossip(LOCAL.identity(), [alive(1, tags=("a", "b"), properties={"k": "v"})])
    assert decode_frame(encode_frame(frame)) == frame
