"""`paglets host --auto-update-from-git`: the update before serving and the graceful restart
after an update (network.md section 5, "restart", "graceful restart", "at start").

A restart happens only when a run succeeded and HEAD differs from the commit the process
started from. It goes: (1) drain: gossip `draining`, creates get `503 draining`, PREPAREs
`REJECTED draining`; (2) open transfers decide (up to `TRANSFER_WAIT`; COMMITTED ones stay in
the outbox and resume after the restart); running compute jobs get `--restart-grace` to
finish, then are stopped without using up an attempt (`Host.shutdown` does this through
`paglets.system.compute_slots.graceful`; they run again after the restart); (3) every
live paglet is saved by `Host.shutdown` (after its turn if that ends within
`--shutdown-grace`, else from its last checkpoint; all come back at the next start); (4) the
listeners close; (5) the process re-executes itself with the same arguments: `uv run paglets
…` when the checkout has a `uv.lock` (and uv is on PATH), else `python -m paglets …`.
`os.execve` keeps the PID, so a supervisor (systemd, a test) sees one process throughout.

The mesh key the host holds goes to the new program in its environment only (the variable
`--api-key-env` names, else `PAGLETS_API_KEY`): the host removed the key variables from its
own environment when it read them, so a key read from a variable would otherwise be lost.
The persistence dir keeps the host id; the next start raises the incarnation.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from paglets.tooling.git_checkout import Checkout
from paglets.tooling.git_update import DIRTY_WORKTREE, GitUpdater, UpdateResult

if TYPE_CHECKING:
    from paglets.cli.host_options import HostOptions
    from paglets.runtime.host import Host
    from paglets.tooling.auto_update import AutoUpdate

__all__ = [
    "TRANSFER_WAIT",
    "child_environment",
    "drain_and_stop",
    "ready_line",
    "reexec",
    "reexec_command",
    "restart_host",
    "update_before_serving",
]

log = logging.getLogger("paglets.host")

TRANSFER_WAIT = 30.0  # longer than a default ticket (10 s) and its retries
DEFAULT_RESTART_GRACE = 600.0
_POLL = 0.05


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def reexec_command(argv: Sequence[str], checkout_root: Path | None) -> list[str]:
    """The command that runs this `paglets` invocation again: `argv[1:]` (the arguments
    after the program) behind `uv run paglets` or `python -m paglets`."""
    args = list(argv[1:])
    if checkout_root is not None and (checkout_root / "uv.lock").is_file():
        uv = shutil.which("uv")
        if uv is not None:
            return [uv, "run", "paglets", *args]
        log.warning("%s has uv.lock but uv is not on PATH; re-executing with python", checkout_root)
    return [sys.executable, "-m", "paglets", *args]


def child_environment(
    key: str | None, api_key_env: str | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """This process's environment plus the mesh key, for the re-executed program only."""
    env = dict(os.environ if base is None else base)
    if key:
        env[api_key_env or "PAGLETS_API_KEY"] = key
    return env


def reexec(command: list[str], env: dict[str, str]) -> NoReturn:
    """Replace this process by `command` (same PID); only returns by raising `OSError`."""
    sys.stdout.flush()
    sys.stderr.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execve(command[0], command, env)


def _open_transfers(host: Host) -> int:
    log_ = host.transfers.log
    return len(log_.open_records("source", ("PREPARING",))) + len(
        log_.open_records("target", ("PREPARED",))
    )


def drain_and_stop(
    host: Host,
    *,
    shutdown_grace: float,
    restart_grace: float = DEFAULT_RESTART_GRACE,
    transfer_wait: float = TRANSFER_WAIT,
) -> int:
    """Steps 1 to 4 of a graceful restart. Returns the transfers still open when the wait
    ended (they are persisted and resume after the restart)."""
    host.drain.set(True, reason="restart")
    deadline = time.monotonic() + transfer_wait
    open_now = _open_transfers(host)
    while open_now and time.monotonic() < deadline:
        time.sleep(_POLL)
        open_now = _open_transfers(host)
    # Running compute jobs get `restart_grace` to finish inside shutdown (jobs.md §3.7).
    host.shutdown(grace=shutdown_grace, restart_grace=restart_grace)
    return open_now


def restart_host(host: Host, options: HostOptions, key: str | None) -> int:
    """Restart `host` after an update: drain, save, close, re-exec. Returns an exit code
    only when the re-exec itself failed (the host is stopped by then)."""
    auto: AutoUpdate | None = getattr(host, "git_update", None)
    root = auto.checkout.root if auto is not None else None
    current = auto.updater.current if auto is not None else None
    head = (current.head_after if current is not None else None) or "?"
    _say(
        f"paglets host {host.name!r} restarting for commit {head[:12]}: draining, saving "
        f"every paglet (up to {options.shutdown_grace:g}s for busy ones)"
    )
    still_open = drain_and_stop(
        host,
        shutdown_grace=options.shutdown_grace,
        restart_grace=(
            DEFAULT_RESTART_GRACE if options.restart_grace is None else options.restart_grace
        ),
    )
    if still_open:
        _say(f"  {still_open} transfer(s) still undecided; they resume after the restart")
    command = reexec_command(sys.argv, root)
    _say(f"paglets host {host.name!r} re-executing: {' '.join(command)}")
    try:
        reexec(command, child_environment(key, options.api_key_env))
    except OSError as exc:
        sys.stderr.write(
            f"paglets host: cannot re-execute {command[0]}: {exc.strerror or exc}; the host "
            "stopped with every paglet saved, start it again by hand\n"
        )
        return 1


def update_before_serving(options: HostOptions, key: str | None) -> UpdateResult:
    """The update at start (as paglets 2.0): a dirty tree cancels start-up (exit 1); a
    moved HEAD re-executes first; any other failure is reported and the host starts on
    the commit it has."""
    from paglets.cli.errors import EXIT_FAILED, CliError

    checkout = Checkout.find(Path.cwd())
    if checkout is None:
        raise CliError(
            f"--auto-update-from-git: {Path.cwd()} is not inside a git checkout",
            hint="start the host from the checkout it should keep up to date (cd <checkout>)",
        )
    updater = GitUpdater(checkout, verify_signatures=options.auto_update_verify_signatures)
    result = updater.run_now()
    if result.status == DIRTY_WORKTREE:
        raise CliError(
            f"--auto-update-from-git: {result.message}",
            hint="or start without --auto-update-from-git",
            code=EXIT_FAILED,
        )
    if result.restart:
        command = reexec_command(sys.argv, checkout.root)
        _say(
            f"paglets host: updated {checkout.root} to {(result.head_after or '?')[:12]} "
            f"before serving; re-executing: {' '.join(command)}"
        )
        try:
            reexec(command, child_environment(key, options.api_key_env))
        except OSError as exc:
            raise CliError(
                f"cannot re-execute {command[0]} after the update: {exc.strerror or exc}",
                code=EXIT_FAILED,
            ) from None
    return result


def ready_line(auto: AutoUpdate) -> str:
    """The line `paglets host` prints about auto-update after its ready line."""
    status: dict[str, Any] = auto.updater.status()
    head = (status["start_head"] or "no commit")[:12]
    line = f"  auto-update from git: {status['checkout']} at {head}"
    if status["upstream"]:
        line += f", following {status['upstream']}"
    update = status["update"]
    if update is not None and update["status"] not in ("current", "updated"):
        line += f"; warning: update at start: {update['status']}: {update['message']}"
    return line
