"""The user-info outbox: per-home order, per-job caps, drop counts, the low-water mark."""

from __future__ import annotations

from paglets.system.user_info.outbox import Drops, Outbox, OutboxItem


def item(event_id: int, job: str = "j", size: int = 10) -> OutboxItem:
    return OutboxItem(event_id, "user-info.notify", {"n": event_id}, job, size)


def test_items_wait_per_home_in_order_until_acknowledged() -> None:
    box = Outbox()
    assert box.low_water() == 0
    for n in (3, 4, 6):
        assert box.offer("home-a", item(n))
    assert box.offer("home-b", item(5))
    box.note_seen(7)
    assert sorted(box.homes()) == ["home-a", "home-b"]
    assert box.low_water() == 2  # below the oldest pending item
    batch, drops = box.batch("home-a", max_items=2)
    assert [i.event_id for i in batch] == [3, 4] and drops == {}
    assert box.ack("home-a", 4) == 2
    assert box.pending("home-a") == 1 and box.low_water() == 4
    assert box.ack("home-b", 5) == 1 and box.ack("home-a", 6) == 1
    assert box.homes() == [] and box.pending() == 0
    assert box.low_water() == 7  # nothing pending: the newest id seen
    assert box.in_transit("j") == (0, 0)


def test_a_batch_always_holds_one_item_however_large() -> None:
    box = Outbox()
    box.offer("h", item(1, size=5000))
    box.offer("h", item(2, size=10))
    batch, _ = box.batch("h", max_bytes=100)
    assert [i.event_id for i in batch] == [1]


def test_per_job_caps_count_what_is_dropped() -> None:
    box = Outbox(max_items=2, max_bytes=1000)
    assert box.offer("h", item(1, "big"))
    assert box.offer("h", item(2, "big"))
    assert not box.offer("h", item(3, "big"), group="g")  # third item: over the cap
    assert not box.admit("h", "big", 10)
    assert box.offer("h", item(4, "other"))  # caps are per job
    assert not box.offer("h", item(5, "huge", size=2000))  # over the byte cap alone
    assert box.in_transit("big") == (2, 20)
    batch, drops = box.batch("h")
    assert [i.event_id for i in batch] == [1, 2, 4]
    assert drops["big"] == Drops(2, 20, "g") and drops["huge"] == Drops(1, 2000, "")
    box.ack("h", 4, drops)
    assert box.homes() == []  # items and drop counts delivered
    assert box.offer("h", item(6, "big"))  # room again once delivered


def test_drop_counts_made_while_a_batch_was_out_are_kept() -> None:
    box = Outbox(max_items=1)
    box.offer("h", item(1))
    box.offer("h", item(2))  # dropped
    _, drops = box.batch("h")
    box.offer("h", item(3))  # dropped while the batch is on its way
    box.ack("h", 1, drops)
    _, left = box.batch("h")
    assert left == {"j": Drops(1, 10, "")}
