"""`paglets host drain [--target NAME|URL] [--undo] [--wait]` (cli.md 1.3).

Asks the entry host (or the member `--target` names) to stop admitting new paglets and jobs
(`POST /admin/drain {drain: true}`): creates are answered `503 draining`, moves towards it
are rejected, and the mesh stops placing work there; what it holds keeps running. `--undo`
admits again; `--wait` shows its running jobs until none is left.
"""

from __future__ import annotations

import time
from typing import Any

from paglets.cli.session import open_session, print_json

__all__ = ["run_drain"]

WAIT_POLL = 2.0


def _line(url: str, answer: dict[str, Any]) -> str:
    if not answer.get("draining"):
        return f"{url}: admits new paglets and jobs again"
    return (
        f"{url}: draining ({answer.get('running_jobs', 0)} running jobs, "
        f"{answer.get('queued', 0)} queued); undo with paglets host drain --undo"
    )


def run_drain(
    *,
    target: str | None,
    undo: bool,
    wait: bool,
    entry: str | None,
    json_: bool,
    timeout: float,
    api_key_env: str | None,
    quiet: bool,
) -> None:
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    url = session.host_url(target)

    def ask() -> dict[str, Any]:
        answer = session.call(
            lambda: session.client.post_json(f"{url}/admin/drain", {"drain": not undo})
        )
        return dict(answer or {})

    answer = ask()
    if wait and not undo:
        while answer.get("running_jobs"):
            session.info(f"{url}: {answer['running_jobs']} running jobs left")
            time.sleep(WAIT_POLL)
            answer = ask()
    if json_:
        print_json({"ok": True, "host": url, **answer})
    else:
        print(_line(url, answer))
