"""MeshFanoutMixin on a real three-host mesh (in-process hosts on loopback)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from paglets import Host, Message
from paglets.examples.patterns import HostSurvey
from support.pattern_models import QuietSurvey
from support.waiting import wait_until


def online_names(host: Host) -> set[str]:
    return {h.name for h in host.list_hosts(online_only=True)}


@pytest.fixture
def mesh(make_host: Callable[..., Host]) -> tuple[Host, Host, Host]:
    alpha = make_host("alpha")
    beta = make_host("beta", peers=[alpha.address])
    gamma = make_host("gamma", peers=[alpha.address])
    for host in (alpha, beta, gamma):
        wait_until(lambda host=host: online_names(host) == {"alpha", "beta", "gamma"})
    return alpha, beta, gamma


def report(proxy: object) -> dict[str, object]:
    return proxy.send(Message("report"))  # type: ignore[attr-defined]


def test_clone_to_every_other_host_collect_reports_and_clean_up(
    mesh: tuple[Host, Host, Host],
) -> None:
    alpha, beta, gamma = mesh
    parent = alpha.create(HostSurvey)
    selected = parent.send(Message("survey", {"timeout": 60.0}))
    assert sorted(selected) == ["beta", "gamma"]
    wait_until(lambda: sorted(report(parent)["done"]) == ["beta", "gamma"])
    summary = report(parent)
    assert summary["pending"] == [] and summary["errors"] == {}
    assert set(summary["reports"]) == {"beta", "gamma"}
    assert all(r["active_count"] >= 1 for r in summary["reports"].values())
    state = alpha.get_state(parent.agent_id)
    assert state.role == "parent" and state.deadline > time.time()
    assert set(state.child_proxies) == {"beta", "gamma"}
    assert state.child_proxies["beta"]["host_url"] == beta.address
    # The children disposed themselves after reporting; cleanup counts them as gone.
    wait_until(lambda: not beta.list_agents() and not gamma.list_agents())
    assert sorted(parent.send(Message("cleanup"))) == ["beta", "gamma"]
    state = alpha.get_state(parent.agent_id)
    assert state.child_proxies == {} and state.cleanup_errors == {}


def test_unknown_self_and_offline_targets_are_errors(
    mesh: tuple[Host, Host, Host], make_host: Callable[..., Host]
) -> None:
    alpha, beta, _ = mesh
    delta = make_host("delta", peers=[alpha.address])
    wait_until(lambda: "delta" in online_names(alpha))
    delta.stop()
    wait_until(lambda: "delta" not in online_names(alpha))
    parent = alpha.create(HostSurvey)
    targets = ["beta", "nowhere", "alpha", "delta", beta.address]
    selected = parent.send(Message("survey", {"targets": targets, "timeout": 60.0}))
    assert selected == ["beta"]  # named twice (name and URL), selected once
    errors = report(parent)["errors"]
    assert set(errors) == {"nowhere", "alpha", "delta"}
    assert "unknown host 'nowhere'" in errors["nowhere"]
    assert "include_self=True" in errors["alpha"]
    assert "offline" in errors["delta"] or "unknown" in errors["delta"]
    wait_until(lambda: report(parent)["done"] == ["beta"])


def test_include_self_clones_on_the_parents_host_too(mesh: tuple[Host, Host, Host]) -> None:
    alpha, _, _ = mesh
    parent = alpha.create(HostSurvey)
    selected = parent.send(Message("survey", {"targets": ["alpha", "beta"], "include_self": True}))
    assert selected == ["alpha", "beta"]
    wait_until(lambda: sorted(report(parent)["done"]) == ["alpha", "beta"])
    parent.send(Message("cleanup"))


def test_silent_children_expire_only_after_the_deadline(mesh: tuple[Host, Host, Host]) -> None:
    alpha, beta, gamma = mesh
    parent = alpha.create(QuietSurvey)
    parent.send(Message("quiet", {"hosts": ["gamma"]}))
    parent.send(Message("survey", {"timeout": 600.0}))
    wait_until(lambda: report(parent)["done"] == ["beta"])
    assert report(parent)["pending"] == ["gamma"]
    assert parent.send(Message("expire")) == []  # the deadline is ten minutes away
    assert report(parent)["pending"] == ["gamma"]

    parent.send(Message("move-deadline", {"deadline": time.time() - 1.0}))
    assert parent.send(Message("expire")) == ["gamma"]
    summary = report(parent)
    assert summary["pending"] == [] and summary["errors"] == {
        "gamma": "no answer before the deadline"
    }
    # The silent child is still alive on gamma until the parent cleans up.
    assert len(gamma.list_agents()) == 1
    assert sorted(parent.send(Message("cleanup"))) == ["beta", "gamma"]
    wait_until(lambda: not gamma.list_agents() and not beta.list_agents())
