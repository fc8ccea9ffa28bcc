"""`GET /agents?q=&class=` filtered, counted and paged by SQLite (runtime/agent_search.py):
the same answers as filtering every summary, across the live, inactive and crashed
segments, with LIKE's wildcards taken literally, and on 100,000 stored paglets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paglets import Host
from paglets.examples.counter import Counter
from paglets.persistence.store import AgentRow
from paglets.runtime.agent_search import like_pattern
from support.http_calls import Http

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"
OTHER = "support.messaging_models:Echo"
STATE = b"\x83\xa4name\xa1x\xa5count\x00\xa7history\x90"  # a CounterState in msgpack


def stored(
    agent_id: str, *, status: str = "inactive", class_name: str = COUNTER, at: float
) -> AgentRow:
    return AgentRow(
        agent_id=agent_id,
        class_name=class_name,
        state_class_name=COUNTER_STATE,
        state=STATE,
        status=status,
        created_at=at,
    )


def listing(client: Http, query: str) -> dict[str, Any]:
    answer = client.get(f"/agents?{query}")
    assert answer.status == 200, answer.body
    return answer.body


def every_page(client: Http, query: str, limit: int) -> list[str]:
    ids: list[str] = []
    offset = 0
    while True:
        page = listing(client, f"{query}&limit={limit}&offset={offset}")
        ids += [a["agent_id"] for a in page["agents"]]
        if page["next_cursor"] is None:
            return ids
        offset = int(page["next_cursor"])


def test_filters_span_live_inactive_and_crashed_paglets(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    # The host's own system services are live paglets too; every id here starts with "zq".
    live = [host.create(Counter, agent_id=f"zq-live-{i}").agent_id for i in range(5)]
    host.store.put_agents(
        [stored(f"zq-sleep-{i:03d}", at=1000.0 + i) for i in range(40)]
        + [stored(f"zqodd_{i}", class_name=OTHER, at=2000.0 + i) for i in range(3)]
        + [stored("zq-crash-1", status="crashed", at=3000.0)]
    )
    with Http(host.address) as client:
        everything = listing(client, "state=all&q=zq-")
        expected = live + [f"zq-sleep-{i:03d}" for i in range(40)] + ["zq-crash-1"]
        assert [a["agent_id"] for a in everything["agents"]] == expected
        assert everything["total"] == 46 and everything["truncated"] is False
        # Pages cross from the live segment into the stored ones without gaps or repeats.
        assert every_page(client, "state=all&q=zq-", 7) == expected
        page = listing(client, "state=all&q=zq-&limit=4&offset=3")
        assert [a["agent_id"] for a in page["agents"]] == [
            "zq-live-3",
            "zq-live-4",
            "zq-sleep-000",
            "zq-sleep-001",
        ]
        assert page["next_cursor"] == "7" and page["total"] == 46
        # Any case; the class name counts too.
        assert listing(client, "state=all&q=ZQ-SLEEP-03")["total"] == 10
        assert listing(client, "state=all&q=messaging_MODELS")["total"] == 3
        # class= is exact, and combines with q= and state=.
        assert listing(client, f"state=all&class={OTHER}")["total"] == 3
        assert listing(client, f"state=inactive&class={COUNTER}&q=zq-sleep-00")["total"] == 10
        assert listing(client, f"state=active&class={COUNTER}")["total"] == 5
        crashed = listing(client, "state=crashed&q=crash")["agents"]
        assert [(a["agent_id"], a["crashed"]) for a in crashed] == [("zq-crash-1", True)]
        with_state = listing(client, "state=inactive&q=zq-sleep-000&include_state=1")["agents"]
        assert with_state[0]["state"]["name"] == "x"


def test_like_wildcards_match_themselves(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    host.store.put_agents(
        [stored("a_b", at=1.0), stored("axb", at=2.0), stored("a%b", at=3.0), stored("a.b", at=4.0)]
    )
    with Http(host.address) as client:
        found = {a["agent_id"] for a in listing(client, "state=inactive&q=_")["agents"]}
        assert found == {"a_b"}
        assert listing(client, "state=inactive&q=%25")["total"] == 1  # a%b
        assert listing(client, "state=inactive&q=a%5Cb")["total"] == 0  # a\b: none
    assert like_pattern("50%_\\") == "%50\\%\\_\\\\%"


def test_a_hundred_thousand_stored_paglets_page_from_sqlite(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", mesh=False)
    host.store.put_agents(
        stored(f"agent-{i:06d}", class_name=COUNTER if i % 2 else OTHER, at=float(i))
        for i in range(100_000)
    )
    with Http(host.address) as client:
        last = listing(client, "state=inactive&limit=50&offset=99990")
        assert last["total"] == 100_000 and len(last["agents"]) == 10
        assert last["agents"][-1]["agent_id"] == "agent-099999"
        found = listing(client, "state=all&limit=20&q=agent-0421")
        assert found["total"] == 100 and found["agents"][0]["agent_id"] == "agent-042100"
        others = listing(client, f"state=all&limit=5&offset=49990&class={OTHER}")
        assert others["total"] == 50_000
        assert [a["agent_id"] for a in others["agents"]] == [
            f"agent-{i:06d}" for i in range(99_980, 100_000, 2)
        ][:5]
        assert others["next_cursor"] == "49995"
