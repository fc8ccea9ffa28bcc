"""`/admin/git-update` and `/admin/drain` on real in-process hosts (network.md §1.8, §2.2, §5).

A host started without auto-update refuses the route (403) and does not advertise it; one
started with it in a git checkout answers 202 at once and reports the run's result at
`GET /admin/git-update`, in `/health` and as a `git-update` event. A draining host refuses
creates (503 + Retry-After) and PREPAREs (REJECTED `draining`), and says so in `/health`
and in its membership record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets import Host, Message
from paglets.core.errors import TransferError
from support import move_models as mm
from support.git_repos import GIT_IDENTITY, Repos, make_repos
from support.http_calls import Http
from support.waiting import wait_until

ECHO = "support.messaging_models:Echo"
WAIT = 60.0


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def repos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repos:
    made = make_repos(tmp_path / "git")
    monkeypatch.chdir(made.work)  # a host updates the checkout holding its working dir
    return made


@pytest.fixture
def updating(make_host: Callable[..., Host], repos: Repos) -> Host:
    return make_host("alpha", auto_update_from_git=True, auto_update_min_interval=0)


def http(host: Host) -> Iterator[Http]:
    with Http(host.address) as client:
        yield client


@pytest.fixture
def client(host: Host) -> Iterator[Http]:
    yield from http(host)


def own_record(client: Http) -> dict[str, Any]:
    members = client.get("/mesh/members").body["members"]
    return next(m for m in members if m["self"])


# -- git update ----------------------------------------------------------------------------


def test_without_the_flag_the_route_is_forbidden_and_not_advertised(client: Http) -> None:
    answer = client.post("/admin/git-update", {"target_hash": "ab" * 20})
    assert answer.status == 403
    assert answer.body["code"] == "auto-update-disabled"
    assert answer.body["error_type"] == "ForbiddenError"
    assert "--auto-update-from-git" in answer.body["error"]
    health = client.get("/health").body
    assert "admin:git-update" not in health["capabilities"]
    assert health["auto_update_from_git"] is False and health["git_update"] is None
    assert client.get("/admin/git-update").body == {"enabled": False, "update": None}
    record = own_record(client)
    assert record["auto_update_from_git"] is False
    assert "admin:git-update" not in record["capabilities"]


def test_an_update_is_accepted_at_once_and_its_result_reported(
    updating: Host, repos: Repos
) -> None:
    start = repos.head()
    new = repos.publish("feature.txt")
    with Http(updating.address) as client:
        health = client.get("/health").body
        assert "admin:git-update" in health["capabilities"]
        assert health["auto_update_from_git"] is True and health["git_head"] == start
        record = own_record(client)
        assert record["auto_update_from_git"] is True and record["git_head"] == start
        assert "admin:git-update" in record["capabilities"]

        answer = client.post(
            "/admin/git-update", {"target_hash": new, "source_name": "beta", "source_url": "x"}
        )
        assert answer.status == 202, answer.body
        assert answer.body["status"] == "accepted"
        update_id = answer.body["update_id"]

        def finished() -> dict[str, Any] | None:
            update = client.get("/admin/git-update").body["update"]
            return update if update and update["finished_at"] else None

        update = wait_until(finished, timeout=WAIT)
        assert isinstance(update, dict)
        assert update["update_id"] == update_id and update["status"] == "updated"
        assert (update["head_before"], update["head_after"]) == (start, new)
        assert update["source_name"] == "beta" and update["restart"] is True
        health = client.get("/health").body
        assert health["git_update"]["update_id"] == update_id
        assert health["git_head"] == start and health["git_checkout_head"] == new
    assert repos.head() == new
    kinds = [(e.kind, (e.data or {}).get("status")) for e in updating.list_events(limit=1000)]
    assert ("git-update", "updated") in kinds


def test_a_second_update_within_the_interval_is_rate_limited(
    make_host: Callable[..., Host], repos: Repos
) -> None:
    host = make_host("alpha", auto_update_from_git=True, auto_update_min_interval=3600)
    with Http(host.address) as client:
        assert client.post("/admin/git-update").status == 202
        wait_until(lambda: client.get("/admin/git-update").body["update"]["finished_at"])
        answer = client.post("/admin/git-update")
        assert answer.status == 429
        assert answer.body["code"] == "rate-limited"
        assert int(answer.headers["Retry-After"]) > 3000


def test_a_target_that_is_not_a_hash_is_a_bad_body(updating: Host) -> None:
    with Http(updating.address) as client:
        answer = client.post("/admin/git-update", {"target_hash": "--upload-pack=evil"})
        assert answer.status == 400
        assert answer.body["code"] == "invalid-body"


def test_auto_update_outside_a_checkout_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paglets.core.errors import HostError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(HostError, match="not inside"):
        Host("alpha", persistence_dir=tmp_path / "p", auto_update_from_git=True)


# -- draining ------------------------------------------------------------------------------


def test_a_draining_host_refuses_creates_with_retry_after(host: Host, client: Http) -> None:
    answer = client.post("/admin/drain", {"drain": True})
    assert answer.status == 200
    assert answer.body == {"draining": True, "running_jobs": 0, "queued": 0}
    refused = client.post("/agents", {"agent_class_name": ECHO})
    assert refused.status == 503
    assert refused.body["code"] == "draining"
    assert refused.body["error_type"] == "RemoteHostError"
    assert int(refused.headers["Retry-After"]) > 0
    health = client.get("/health").body
    assert health["draining"] is True and health["draining_reason"] == "admin"
    assert own_record(client)["draining"] is True
    kinds = [e.kind for e in host.list_events(limit=1000)]
    assert "host-draining" in kinds

    assert client.post("/admin/drain", {"drain": False}).body["draining"] is False
    assert client.post("/agents", {"agent_class_name": ECHO}).status == 200
    assert client.get("/health").body["draining"] is False
    assert own_record(client)["draining"] is False


def test_a_draining_target_rejects_prepares(make_host: Callable[..., Host]) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    proxy = alpha.create(mm.Traveller)
    beta.drain.set(True)
    with pytest.raises(TransferError, match="takes no new paglets") as caught:
        proxy.dispatch(beta.address)
    assert caught.value.stage == "target-rejected"
    assert proxy.agent_id in alpha.registry.live and proxy.agent_id not in beta.registry.live
    rejected = beta.transfers.listing(role="target")
    assert rejected and rejected[0]["status"] == "REJECTED"
    record = beta.transfers.log.get(rejected[0]["transfer_id"], "target")
    assert record is not None and record.reply is not None
    error = record.reply["error"]
    assert error["code"] == "draining" and error["detail"]["retry_after_s"] > 0
    beta.drain.set(False)
    assert proxy.dispatch(beta.address).host_url == beta.address
    assert beta.proxy(proxy.agent_id).send(Message("add")) == 1


def test_an_admin_never_undoes_a_restart_drain(host: Host) -> None:
    host.drain.set(True, reason="restart")
    assert not host.drain.set(False, reason="admin")
    assert host.drain.active and host.drain.reason == "restart"
