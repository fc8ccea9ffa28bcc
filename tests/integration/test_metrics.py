"""`GET /metrics` (network.md §1.9): Prometheus text that prometheus-client's own parser
reads, one registry per host (several hosts share this process), and counters that move
with messages and moves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from paglets import Host, Message
from paglets.core.errors import PagletError
from paglets.examples.counter import Counter
from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest
from support.http_calls import Http
from support.messaging_models import Echo

KEY = "metrics-test-key"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(host: Host, key: str | None = KEY) -> Samples:
    with Http(host.address, key=key) as client:
        answer = client.get("/metrics")
    assert answer.status == 200, answer.raw[:300]
    assert answer.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.raw.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


def test_metrics_parse_and_describe_the_host(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", api_key=KEY)
    before = scrape(host)  # the host's own system services are paglets too
    host.create(Counter, agent_id="c1")
    host.create(Counter, agent_id="c2")
    host.deactivate("c2")
    samples = scrape(host)
    for state, grew in (("active", 1), ("inactive", 1), ("crashed", 0)):
        assert (
            value(samples, "paglets_paglets", state=state)
            - value(before, "paglets_paglets", state=state)
            == grew
        ), state
    assert value(samples, "paglets_paglets", state="active") == len(host.registry.live)
    assert value(samples, "paglets_members", state="alive") == 1
    assert value(samples, "paglets_host_info", name="alpha", code_version="test") == 1
    for name in (
        "paglets_messages_delivered_total",
        "paglets_messages_failed_total",
        "paglets_messages_queued_total",
        "paglets_mailbox_queued_messages",
        "paglets_mailbox_depth_max",
        "paglets_mailboxes_nonempty",
        "paglets_mailbox_in_flight",
        "paglets_messages_held",
        "paglets_events_total",
        "paglets_uptime_seconds",
        "paglets_event_stream_subscribers",
    ):
        assert (name, ()) in samples, name
    for kind in ("dispatch", "retract", "clone"):
        assert value(samples, "paglets_moves_total", kind=kind) == 0


def test_metrics_need_the_key(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", api_key=KEY)
    with Http(host.address) as anonymous:
        assert anonymous.get("/metrics").status == 401
    assert "metrics" in Http(host.address, key=KEY).get("/health").body["capabilities"]


def test_counters_move_with_messages_and_a_move(make_host: Callable[..., Host]) -> None:
    alpha = make_host("alpha", api_key=KEY)
    beta = make_host("beta", api_key=KEY, peers=[alpha.address])
    proxy = alpha.create(Counter, agent_id="mover")
    echo = alpha.create(Echo, agent_id="echo")
    before_alpha, before_beta = scrape(alpha), scrape(beta)

    for _ in range(3):
        proxy.send(Message("add"))
    with pytest.raises(PagletError):
        echo.send(Message("fail"))
    proxy.dispatch(beta.address)
    proxy.send(Message("add"))  # delivered on beta now

    after_alpha, after_beta = scrape(alpha), scrape(beta)

    def grew(before: Samples, after: Samples, metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert grew(before_alpha, after_alpha, "paglets_messages_delivered_total") == 3
    assert grew(before_alpha, after_alpha, "paglets_messages_failed_total") == 1
    assert grew(before_alpha, after_alpha, "paglets_moves_total", kind="dispatch") == 1
    assert (
        grew(
            before_alpha, after_alpha, "paglets_transfers_total", role="source", outcome="committed"
        )
        == 1
    )
    assert grew(before_beta, after_beta, "paglets_messages_delivered_total") == 1
    assert (
        grew(before_beta, after_beta, "paglets_transfers_total", role="target", outcome="committed")
        == 1
    )
    assert grew(before_alpha, after_alpha, "paglets_events_total") > 0
    # Each host reports itself only (one registry per host, not prometheus' global one).
    assert grew(before_alpha, after_alpha, "paglets_paglets", state="active") == -1
    assert grew(before_beta, after_beta, "paglets_paglets", state="active") == 1
    assert value(after_beta, "paglets_host_info", name="beta", code_version="test") == 1
    assert ("paglets_host_info", (("code_version", "test"), ("name", "alpha"))) not in after_beta


def test_messages_for_an_inactive_paglet_count_as_queued_and_held(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha", api_key=KEY)
    host.create(Counter, agent_id="sleeper")
    policy = DeactivationPolicy(activate_on_message=False, queue_messages_when_inactive=True)
    host.deactivate("sleeper", DeactivationRequest(policy=policy))
    before = scrape(host)
    assert host.proxy("sleeper").send(Message("add"))["queued"] is True
    after = scrape(host)
    assert (
        value(after, "paglets_messages_queued_total")
        - value(before, "paglets_messages_queued_total")
        == 1
    )
    assert value(after, "paglets_messages_held") == 1


def test_scheduler_metrics_parse_and_move_with_jobs(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    from paglets.examples.jobs import SleepJobState, ThreadSleepJob
    from support.waiting import wait_until

    config = tmp_path / "launch.toml"
    config.write_text(
        "[launch]\nsync_demo_config = false\n\n"
        "[services.compute-slots]\nrespect_external_load = false\n"
    )
    host = make_host("alpha", api_key=KEY, launch_config=config, mesh=False, system_services=True)
    before = scrape(host)
    assert value(before, "paglets_jobs_queue_length") == 0
    assert value(before, "paglets_jobs_leases", status="running") == 0
    assert value(before, "paglets_jobs", state="RUNNING") == 0
    granted = value(before, "paglets_jobs_granted_total")

    long = host.create(ThreadSleepJob, SleepJobState(seconds=60.0, allow_home_compute=True))
    wait_until(lambda: host.get_state(long.agent_id).compute_status == "RUNNING", timeout=30)
    short = host.create(ThreadSleepJob, SleepJobState(seconds=0.1, allow_home_compute=True))
    wait_until(lambda: host.get_state(short.agent_id).compute_status == "COMPLETED", timeout=30)
    running = scrape(host)
    assert value(running, "paglets_jobs_leases", status="running") == 1
    assert value(running, "paglets_jobs", state="RUNNING") == 1
    assert value(running, "paglets_jobs", state="COMPLETED") == 1
    assert value(running, "paglets_jobs_granted_total") == granted + 2
    assert value(running, "paglets_jobs_finished_total", reason="released") >= 1
    assert value(running, "paglets_jobs_draining") == 0

    long.send_oneway(Message("compute_cancel"))
    wait_until(lambda: host.get_state(long.agent_id).compute_status == "CANCELLED", timeout=30)
    after = scrape(host)
    assert value(after, "paglets_jobs_leases", status="running") == 0
    assert value(after, "paglets_jobs", state="CANCELLED") == 1
    assert value(after, "paglets_jobs_finished_total", reason="cancelled") == 1
