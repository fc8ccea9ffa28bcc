"""`paglets host --auto-update-from-git` as a real process in a real checkout (network.md §5),
and `paglets host drain` against a real host (cli.md 1.3).

The host runs with its working directory in a clone of a bare `origin`; `python -m paglets`
resolves to this project's code through the test's interpreter, and the checkout has no
`uv.lock`, so a restart re-executes `python -m paglets host …` in the same process. A commit
pushed upstream and an update request must end with the same PID serving the new commit,
with a higher incarnation and the paglets it had.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets import Message
from paglets.remote.client import HostClient
from support.git_repos import GIT_IDENTITY, Repos, git, make_repos
from support.http_calls import Http
from support.processes import READY_RE, HostProcess, run_paglets
from support.waiting import wait_until

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"
RESTART_DEADLINE = 60.0

# Runs `python -m paglets ARGS` in DIR: chdir, then exec (the PID stays the host's).
TRAMPOLINE = (
    "import os, sys; os.chdir(sys.argv[1]); "
    "os.execv(sys.executable, [sys.executable, '-m', 'paglets', *sys.argv[2:]])"
)


class CheckoutHost(HostProcess):
    """A `paglets host` process whose working directory is `cwd`."""

    def __init__(self, *args: Any, cwd: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cwd = cwd

    @property
    def command(self) -> list[str]:
        base = super().command  # [python, -m, paglets, host, ...]
        return [sys.executable, "-c", TRAMPOLINE, str(self.cwd), *base[3:]]

    def ready_urls(self) -> list[str]:
        with self._lines_changed:
            lines = list(self.stdout_lines)
        return [m.group("url") for m in map(READY_RE.match, lines) if m]


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return make_repos(tmp_path / "git")


@pytest.fixture
def checkout_host(tmp_path: Path) -> Iterator[Callable[..., CheckoutHost]]:
    started: list[CheckoutHost] = []
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def factory(name: str, cwd: Path, *, args: list[str], start: bool = True) -> CheckoutHost:
        process = CheckoutHost(
            name,
            tmp_path / "hosts" / name,
            home,
            cwd=cwd,
            args=args,
            env=GIT_IDENTITY,
            log_dir=tmp_path / "logs",
        )
        started.append(process)
        return process.start() if start else process

    try:
        yield factory
    finally:
        for process in started:
            process.close()


UPDATE_ARGS = ["--auto-update-from-git", "--auto-update-min-interval", "0s"]


def health(client: HostClient, url: str) -> dict[str, Any]:
    return client.get_json(f"{url}/health")


def test_an_update_restarts_the_host_in_place_with_its_paglets(
    repos: Repos, checkout_host: Callable[..., CheckoutHost]
) -> None:
    # A commit already upstream at start: the host updates before serving and re-executes.
    at_start = repos.publish("first-update.txt")
    alpha = checkout_host("alpha", repos.work, args=UPDATE_ARGS)
    assert "before serving; re-executing" in alpha.stdout, alpha.describe()
    assert repos.head() == at_start
    pid = alpha.pid
    client = HostClient(timeout=10.0)
    before = health(client, alpha.url)
    assert before["git_head"] == at_start and "admin:git-update" in before["capabilities"]
    assert before["git_update"]["status"] == "current"

    proxy = client.create_agent(alpha.url, COUNTER, COUNTER_STATE, {"name": "kept", "count": 4})
    assert client.send_message(alpha.url, proxy.agent_id, Message("add")) == 5

    new = repos.publish("second-update.txt")
    answer = client.post_json(f"{alpha.url}/admin/git-update", {"target_hash": new})
    assert answer["status"] == "accepted"

    wait_until(lambda: len(alpha.ready_urls()) >= 2, timeout=RESTART_DEADLINE)
    assert alpha.alive and alpha.pid == pid  # os.execv: the same process
    url = alpha.ready_urls()[-1]  # --port 0 again: possibly another port
    after = health(client, url)
    assert after["host_id"] == before["host_id"]
    assert after["incarnation"] > before["incarnation"]
    assert after["git_head"] == new and repos.head() == new
    assert after["draining"] is False
    assert client.send_message(url, proxy.agent_id, Message("get")) == 5
    assert "restarting for commit" in alpha.stdout and "re-executing" in alpha.stdout
    assert alpha.terminate() == 0


def test_an_update_spreads_to_a_member_on_an_older_commit(
    repos: Repos, checkout_host: Callable[..., CheckoutHost], tmp_path: Path
) -> None:
    other = tmp_path / "git" / "other"
    git(tmp_path, "clone", "-q", str(repos.origin), str(other))
    beta = checkout_host("beta", other, args=UPDATE_ARGS)
    alpha = checkout_host("alpha", repos.work, args=[*UPDATE_ARGS, "--peer", beta.url])
    client = HostClient(timeout=10.0)

    def alpha_seen_by_beta() -> bool:
        members = client.get_json(f"{beta.url}/mesh/members")["members"]
        return any(m["name"] == "alpha" and m["status"] == "alive" for m in members)

    wait_until(alpha_seen_by_beta, timeout=RESTART_DEADLINE)
    new = repos.publish("spread.txt")
    assert client.post_json(f"{alpha.url}/admin/git-update", {})["status"] == "accepted"

    # alpha restarts on the new commit, rejoins beta and pushes the commit to it.
    wait_until(lambda: len(alpha.ready_urls()) >= 2, timeout=RESTART_DEADLINE)
    wait_until(lambda: len(beta.ready_urls()) >= 2, timeout=RESTART_DEADLINE)
    after = health(client, beta.ready_urls()[-1])
    assert after["git_head"] == new
    assert git(other, "rev-parse", "HEAD") == new


def test_auto_update_outside_a_checkout_is_a_usage_error(tmp_path: Path) -> None:
    done = run_paglets(
        "host", "--name", "alpha", "--port", "0", "--auto-update-from-git",
        home=tmp_path / "home", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not inside a git checkout" in done.stderr


def test_a_dirty_checkout_cancels_start_up(
    repos: Repos, checkout_host: Callable[..., CheckoutHost]
) -> None:
    (repos.work / "README.md").write_text("edited\n")
    alpha = checkout_host("alpha", repos.work, args=UPDATE_ARGS, start=False)
    with pytest.raises(RuntimeError, match="exited with 1"):
        alpha.start()
    assert "uncommitted changes" in alpha.stderr and "README.md" in alpha.stderr


def test_host_drain_refuses_creates_until_undone(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = host_process("alpha")
    home = tmp_path / "home"
    drained = run_paglets("host", "drain", "--entry", alpha.url, home=home)
    assert drained.returncode == 0, drained.stderr
    assert "draining" in drained.stdout
    with Http(alpha.url) as client:
        refused = client.post("/agents", {"agent_class_name": COUNTER})
        assert refused.status == 503 and refused.body["code"] == "draining"
        assert int(refused.headers["Retry-After"]) > 0
        assert client.get("/health").body["draining"] is True
        undone = run_paglets("host", "drain", "--entry", alpha.url, "--undo", "--json", home=home)
        assert undone.returncode == 0, undone.stderr
        assert '"draining": false' in undone.stdout
        assert client.post("/agents", {"agent_class_name": COUNTER}).status == 200
