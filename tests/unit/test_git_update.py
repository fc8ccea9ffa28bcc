"""The git auto-update run and its updater on real temporary repositories (network.md §5).

Each test has a bare `origin`, a `publisher` clone that pushes new commits and a `work`
clone (the host's checkout): every status of the run comes from real git, and the
cross-process lock is held by a real other process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paglets.tooling import git_update as gu
from paglets.tooling.git_checkout import Checkout, CheckoutLock
from paglets.tooling.git_spread import Peer, Spreader
from support.git_repos import GIT_IDENTITY, Repos, git, make_repos
from support.waiting import wait_until

WAIT = 60.0


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(gu.SYNC_COMMAND_ENV, raising=False)


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return make_repos(tmp_path / "git")


def checkout_of(repos: Repos) -> Checkout:
    found = Checkout.find(repos.work)
    assert found is not None
    return found


# -- the run -------------------------------------------------------------------------------


def test_a_checkout_at_the_upstream_tip_is_current(repos: Repos) -> None:
    outcome = gu.update_checkout(checkout_of(repos))
    assert outcome.status == gu.CURRENT
    assert outcome.head_before == outcome.head_after == repos.head()


def test_a_pushed_commit_is_fetched_and_fast_forwarded(repos: Repos) -> None:
    before = repos.head()
    new = repos.publish("feature.txt", "new code\n")
    outcome = gu.update_checkout(checkout_of(repos))
    assert outcome.status == gu.UPDATED, outcome.message
    assert (outcome.head_before, outcome.head_after, outcome.target) == (before, new, new)
    assert repos.head() == new
    assert (repos.work / "feature.txt").read_text() == "new code\n"


def test_an_explicit_target_stops_at_that_commit(repos: Repos) -> None:
    first = repos.publish("a.txt")
    repos.publish("b.txt")
    outcome = gu.update_checkout(checkout_of(repos), first)
    assert outcome.status == gu.UPDATED
    assert repos.head() == first
    assert not (repos.work / "b.txt").exists()


def test_uncommitted_changes_stop_the_run_and_nothing_moves(repos: Repos) -> None:
    before = repos.head()
    repos.publish("feature.txt")
    (repos.work / "README.md").write_text("edited here\n")
    outcome = gu.update_checkout(checkout_of(repos))
    assert outcome.status == gu.DIRTY_WORKTREE
    assert "README.md" in outcome.message and "commit, stash" in outcome.message
    assert repos.head() == before


def test_untracked_files_do_not_make_the_tree_dirty(repos: Repos) -> None:
    new = repos.publish("feature.txt")
    (repos.work / "run.log").write_text("log\n")
    assert gu.update_checkout(checkout_of(repos)).status == gu.UPDATED
    assert repos.head() == new


def test_a_local_commit_ahead_of_upstream_is_not_a_fast_forward(repos: Repos) -> None:
    local = repos.commit_local()
    outcome = gu.update_checkout(checkout_of(repos))
    assert outcome.status == gu.NOT_FAST_FORWARD
    assert "older than HEAD" in outcome.message
    assert repos.head() == local


def test_a_diverged_checkout_is_not_a_fast_forward(repos: Repos) -> None:
    local = repos.commit_local()
    repos.publish("upstream.txt")
    outcome = gu.update_checkout(checkout_of(repos))
    assert outcome.status == gu.NOT_FAST_FORWARD
    assert "does not descend" in outcome.message
    assert repos.head() == local


def test_an_older_target_is_never_a_downgrade(repos: Repos) -> None:
    older = repos.publish("a.txt")
    newer = repos.publish("b.txt")
    checkout = checkout_of(repos)
    assert gu.update_checkout(checkout).status == gu.UPDATED
    outcome = gu.update_checkout(checkout, older)
    assert outcome.status == gu.NOT_FAST_FORWARD
    assert repos.head() == newer


def test_an_unknown_target_is_missing(repos: Repos) -> None:
    outcome = gu.update_checkout(checkout_of(repos), "deadbeef" * 5)
    assert outcome.status == gu.TARGET_MISSING
    assert "push it to origin/main" in outcome.message


def test_a_commit_only_on_another_branch_is_not_on_upstream(repos: Repos) -> None:
    git(repos.publisher, "checkout", "-q", "-b", "feature")
    side = repos.publish("side.txt", branch="feature")
    before = repos.head()
    outcome = gu.update_checkout(checkout_of(repos), side)
    assert outcome.status == gu.NOT_ON_UPSTREAM
    assert repos.head() == before


def test_a_branch_without_upstream_is_not_on_upstream(repos: Repos) -> None:
    git(repos.work, "checkout", "-q", "--detach")
    outcome = gu.update_checkout(checkout_of(repos))
    assert outcome.status == gu.NOT_ON_UPSTREAM
    assert "detached" in outcome.message


def test_an_unreachable_remote_is_a_failed_fetch(repos: Repos, tmp_path: Path) -> None:
    git(repos.work, "remote", "set-url", "origin", str(tmp_path / "nowhere.git"))
    outcome = gu.update_checkout(checkout_of(repos))
    assert outcome.status == gu.FETCH_FAILED
    assert "git fetch failed" in outcome.message


def test_unsigned_commits_are_refused_when_signatures_are_required(repos: Repos) -> None:
    before = repos.head()
    repos.publish("feature.txt")
    outcome = gu.update_checkout(checkout_of(repos), verify_signatures=True)
    assert outcome.status == gu.SIGNATURE_INVALID
    assert repos.head() == before  # verified before the merge: nothing moved


# -- the sync step -----------------------------------------------------------------------------


def test_the_sync_runs_in_a_python_project_after_the_merge(tmp_path: Path) -> None:
    repos = make_repos(tmp_path / "git", files={"pyproject.toml": "[project]\nname = 'x'\n"})
    repos.publish("feature.txt")
    sync = [sys.executable, "-c", "open('synced.flag', 'w').write('yes')"]
    outcome = gu.update_checkout(checkout_of(repos), sync=sync)
    assert outcome.status == gu.UPDATED
    assert (repos.work / "synced.flag").read_text() == "yes"


def test_no_sync_without_a_pyproject(repos: Repos) -> None:
    repos.publish("feature.txt")
    sync = [sys.executable, "-c", "open('synced.flag', 'w').write('yes')"]
    assert gu.update_checkout(checkout_of(repos), sync=sync).status == gu.UPDATED
    assert not (repos.work / "synced.flag").exists()


def test_a_failed_sync_is_reported_and_owed_to_the_next_run(tmp_path: Path) -> None:
    repos = make_repos(tmp_path / "git", files={"pyproject.toml": "[project]\nname = 'x'\n"})
    new = repos.publish("feature.txt")
    checkout = checkout_of(repos)
    failing = [sys.executable, "-c", "import sys; print('resolution failed'); sys.exit(3)"]
    outcome = gu.update_checkout(checkout, sync=failing)
    assert outcome.status == gu.UV_SYNC_FAILED
    assert "exit code 3" in outcome.message and "resolution failed" in outcome.message
    assert repos.head() == new  # the code is checked out; only the install is missing
    ok = [sys.executable, "-c", "open('synced.flag', 'w').write('yes')"]
    assert gu.update_checkout(checkout, sync=ok).status == gu.CURRENT
    assert (repos.work / "synced.flag").exists()


def test_the_sync_command_can_be_replaced_by_a_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert gu.sync_command() == ["uv", "sync"]
    monkeypatch.setenv(gu.SYNC_COMMAND_ENV, "pip install -e '.[dev]'")
    assert gu.sync_command() == ["pip", "install", "-e", ".[dev]"]


# -- the updater -------------------------------------------------------------------------------


class LockHolder:
    """Another process holding the checkout's update lock until `release()`."""

    def __init__(self, path: Path) -> None:
        code = (
            "import fcntl, sys\n"
            f"f = open({str(path)!r}, 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def holder(repos: Repos) -> Iterator[LockHolder]:
    held = LockHolder(checkout_of(repos).lock_path)
    try:
        yield held
    finally:
        held.kill()


def test_a_request_runs_on_its_own_thread_and_flags_a_restart(repos: Repos) -> None:
    finished: list[gu.UpdateResult] = []
    updater = gu.GitUpdater(checkout_of(repos), on_finish=finished.append)
    start = updater.start_head
    new = repos.publish("feature.txt")
    answer = updater.request(new, source_name="beta")
    assert answer.status == gu.ACCEPTED and answer.update_id
    result = updater.wait(WAIT)
    assert result is not None and result.update_id == answer.update_id
    assert result.status == gu.UPDATED
    assert (result.head_before, result.head_after) == (start, new)
    assert result.restart and result.source_name == "beta"
    assert finished == [result]
    assert updater.status()["head"] == new and updater.status()["start_head"] == start


def test_a_current_run_right_after_start_needs_no_restart(repos: Repos) -> None:
    updater = gu.GitUpdater(checkout_of(repos))
    updater.request()
    result = updater.wait(WAIT)
    assert result is not None and result.status == gu.CURRENT and not result.restart


def test_a_second_request_within_the_interval_is_rate_limited(repos: Repos) -> None:
    updater = gu.GitUpdater(checkout_of(repos), min_interval=3600)
    assert updater.request().status == gu.ACCEPTED
    updater.wait(WAIT)
    refused = updater.request()
    assert refused.status == gu.RATE_LIMITED
    assert refused.update_id is None
    assert refused.retry_after_s is not None and 3500 < refused.retry_after_s <= 3600


def test_the_interval_counts_from_the_last_run(repos: Repos) -> None:
    now = [1000.0]
    updater = gu.GitUpdater(checkout_of(repos), min_interval=60, clock=lambda: now[0])
    updater.request()
    updater.wait(WAIT)
    now[0] += 59
    assert updater.request().status == gu.RATE_LIMITED
    now[0] += 2
    assert updater.request().status == gu.ACCEPTED
    updater.wait(WAIT)


def test_a_bad_target_is_refused_before_any_git_runs(repos: Repos) -> None:
    updater = gu.GitUpdater(checkout_of(repos))
    with pytest.raises(ValueError, match="not a commit hash"):
        updater.request("--upload-pack=touch /tmp/x")


def test_requests_during_a_run_coalesce(repos: Repos, holder: LockHolder) -> None:
    updater = gu.GitUpdater(checkout_of(repos), min_interval=0)
    new = repos.publish("feature.txt")
    first = updater.request()
    again = updater.request(new)
    assert first.status == gu.ACCEPTED
    assert again.status == gu.COALESCED and again.update_id == first.update_id
    holder.release()
    result = updater.wait(WAIT)
    assert result is not None and result.status == gu.UPDATED


def test_a_run_waits_for_another_process_holding_the_lock(repos: Repos, holder: LockHolder) -> None:
    updater = gu.GitUpdater(checkout_of(repos))
    new = repos.publish("feature.txt")
    answer = updater.request()

    def waiting() -> bool:
        current = updater.current
        return current is not None and "another process" in current.message

    wait_until(waiting, timeout=WAIT)
    current = updater.current
    assert current is not None and current.status == gu.RUNNING
    assert current.update_id == answer.update_id
    assert updater.status()["update"]["status"] == gu.RUNNING
    assert repos.head() != new  # nothing ran while the other process held the lock
    holder.release()
    result = updater.wait(WAIT)
    assert result is not None and result.status == gu.UPDATED and repos.head() == new


def test_a_lock_held_too_long_ends_the_run_as_locked(repos: Repos, holder: LockHolder) -> None:
    updater = gu.GitUpdater(checkout_of(repos), lock_wait=0.3)
    updater.request()
    result = updater.wait(WAIT)
    assert result is not None and result.status == gu.LOCKED
    assert "locked" in result.message and not result.restart


def test_closing_the_updater_ends_a_waiting_run(repos: Repos, holder: LockHolder) -> None:
    updater = gu.GitUpdater(checkout_of(repos))
    updater.request()
    wait_until(lambda: "another process" in (updater.current or gu.UpdateResult("", "")).message)
    updater.close()
    result = updater.wait(WAIT)
    assert result is not None and result.status == gu.LOCKED


def test_the_lock_is_free_again_after_a_run(repos: Repos) -> None:
    checkout = checkout_of(repos)
    gu.GitUpdater(checkout).run_now()
    lock = CheckoutLock(checkout.lock_path)
    assert lock.acquire(0)
    lock.release()


def test_the_lock_lives_in_the_common_dir_of_a_worktree(repos: Repos, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    git(repos.work, "worktree", "add", "-q", "-b", "other", str(tree))
    in_tree = Checkout.find(tree)
    assert in_tree is not None
    assert in_tree.root == tree.resolve() or in_tree.root == tree
    assert in_tree.lock_path == checkout_of(repos).lock_path


# -- spreading ---------------------------------------------------------------------------------


def _spreader(repos: Repos, peers: list[Peer], pushed: list[str], now: list[float]) -> Spreader:
    checkout = checkout_of(repos)
    head = checkout.head()
    assert head is not None
    return Spreader(
        checkout,
        head,
        peers=lambda: peers,
        push=lambda peer, target: pushed.append(f"{peer.name}@{target[:7]}"),
        clock=lambda: now[0],
    )


def test_spreading_pushes_only_to_members_on_older_commits(repos: Repos) -> None:
    old = repos.head()
    repos.publish("a.txt")
    gu.update_checkout(checkout_of(repos))
    git(repos.publisher, "checkout", "-q", "-b", "side", old)
    (repos.publisher / "side.txt").write_text("side\n")
    git(repos.publisher, "add", "side.txt")
    git(repos.publisher, "commit", "-q", "-m", "side")
    git(repos.publisher, "push", "-q", "origin", "side")
    git(repos.work, "fetch", "-q")
    diverged = git(repos.publisher, "rev-parse", "HEAD")
    head = repos.head()
    peers = [
        Peer("1", "older", "http://192.0.2.1:1", old),
        Peer("2", "same", "http://192.0.2.2:1", head),
        Peer("3", "unknown", "http://192.0.2.3:1", "ab" * 20),
        Peer("4", "diverged", "http://192.0.2.4:1", diverged),
        Peer("5", "no-head", "http://192.0.2.5:1", None),
    ]
    pushed: list[str] = []
    spreader = _spreader(repos, peers, pushed, [0.0])
    assert [p.name for p in spreader.step()] == ["older"]
    assert pushed == [f"older@{head[:7]}"]


def test_spreading_pushes_to_at_most_four_at_once_and_each_once_a_minute(repos: Repos) -> None:
    old = repos.head()
    repos.publish("a.txt")
    gu.update_checkout(checkout_of(repos))
    peers = [Peer(str(i), f"h{i}", f"http://192.0.2.{i}:1", old) for i in range(6)]
    pushed: list[str] = []
    now = [100.0]
    spreader = _spreader(repos, peers, pushed, now)
    assert len(spreader.step()) == 4
    assert len(spreader.step()) == 2
    assert spreader.step() == []  # each peer once per target per 60 s
    now[0] += 59
    assert spreader.step() == []
    now[0] += 2
    assert len(spreader.step()) == 4
    assert len(pushed) == 10
