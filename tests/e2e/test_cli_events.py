"""`paglets events` (cli.md section 9) against real hosts: the last events as a table or
JSON lines, `--since` an id or a time, filters, and `--follow` over SSE in a real process:
it resumes with `Last-Event-ID` across a host restart (nothing lost, nothing twice) and
ends on Ctrl-C with exit 130 and no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from paglets import Host
from paglets.cli.main import run
from support import messaging_models as echo
from support.processes import cli_env
from support.waiting import wait_until


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_logged(host: Host, count: int) -> None:
    """Events reach the durable log in group commits: wait until `count` are readable."""
    wait_until(lambda: host.list_events(count - 1, 1))


def test_last_events_table_json_and_filters(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [host.create(echo.Echo).agent_id for _ in range(40)]
    wait_logged(host, 41)  # context-start + 40 creates
    url = host.address

    code, out, _ = cli(capsys, "events", "--entry", url, "--limit", "5")
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == ["time", "host", "kind", "agent", "detail"]
    assert [row.split()[4] for row in rows] == [i[:12] for i in ids[-5:]]  # the last five
    assert all(row.split()[2:4] == ["alpha", "create"] for row in rows)

    code, out, _ = cli(capsys, "events", "--entry", url, "--json", "--limit", "500")
    events = json_lines(out)
    assert code == 0 and [e["kind"] for e in events] == ["context-start"] + ["create"] * 40
    numbers = [e["event_id"] for e in events]
    assert numbers == sorted(numbers)

    code, out, _ = cli(capsys, "events", "--entry", url, "--json", "--since", "3", "--limit", "2")
    shown = json_lines(out)
    assert code == 0 and [e["event_id"] for e in shown] == numbers[3:5]
    code, out, err = cli(capsys, "events", "--entry", url, "--since", "3", "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3
    assert err.strip() == f"more events follow: --since {numbers[4]}"

    code, out, _ = cli(capsys, "events", "--entry", url, "--json", "--since", "10m")
    assert code == 0 and len(json_lines(out)) == 41
    code, out, _ = cli(capsys, "events", "--entry", url, "--since", "2999-01-01T00:00:00Z")
    assert (code, out.strip()) == (1, "No events.")

    code, out, _ = cli(capsys, "events", "--entry", url, "--json", "--kind", "context-start")
    assert code == 0 and [e["kind"] for e in json_lines(out)] == ["context-start"]
    code, out, _ = cli(capsys, "events", "--entry", url, "--json", "--agent", ids[7][:8])
    assert code == 0 and [e["agent_id"] for e in json_lines(out)] == [ids[7]]
    code, out, _ = cli(capsys, "events", "--entry", url, "--kind", "no-such-kind")
    assert (code, out.strip()) == (1, "No events.")


def test_last_events_of_a_rare_kind_are_found_far_back(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    first = host.create(echo.Echo).agent_id
    host.dispose(first)
    for _ in range(1500):  # more than one window of ids behind the dispose
        host.events.emit("noise")
    wait_logged(host, 1503)
    code, out, _ = cli(capsys, "events", "--entry", host.address, "--json", "--kind", "dispose")
    assert code == 0 and [e["agent_id"] for e in json_lines(out)] == [first]
    code, out, _ = cli(capsys, "events", "--entry", host.address, "--json", "--limit", "3")
    assert code == 0 and [e["kind"] for e in json_lines(out)] == ["noise"] * 3


def test_bad_values_and_an_unreachable_entry(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "events", "--since", "yesterday-ish")
    assert code == 2 and err.startswith("paglets events: --since: cannot read")
    code, _, err = cli(capsys, "events", "--limit", "0")
    assert code == 2 and err.startswith("paglets events: --limit")
    for follow in ((), ("--follow",)):
        code, _, err = cli(capsys, "events", "--entry", "http://127.0.0.1:9", *follow)
        assert code == 2 and "Traceback" not in err
        assert err.startswith("paglets events: no paglets host at http://127.0.0.1:9")


# -- following ----------------------------------------------------------------------------------


class Follower:
    """`paglets events --follow --json` as a child process; its stdout lines collected."""

    def __init__(self, url: str, home: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "paglets", "events", "--follow", "--json", "--entry", url],
            env=cli_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(
                target=self._read, args=(self.proc.stderr, self.stderr_lines), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events()]

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        for thread in self._threads:
            thread.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_follow_resumes_across_a_restart_and_ctrl_c_exits_130(
    host_process: Any, tmp_path: Path
) -> None:
    alpha = host_process("alpha")
    follower = Follower(alpha.url, tmp_path / "home")
    try:
        wait_until(lambda: any("following events" in line for line in follower.stderr_lines), 30)
        from paglets.remote.client import HostClient

        with HostClient(in_process=False) as client:
            first = client.create_agent(alpha.url, "paglets.examples.counter:Counter").agent_id
            wait_until(lambda: "create" in follower.kinds(), 30)
            alpha.restart(same_port=True)  # the stream drops; the follower reconnects
            # `context-start` of the new run was logged before the follower got back: it
            # arrives through Last-Event-ID.
            wait_until(lambda: "context-start" in follower.kinds(), 60)
            second = client.create_agent(alpha.url, "paglets.examples.counter:Counter").agent_id
            wait_until(lambda: follower.kinds().count("create") == 2, 30)
        events = follower.events()
        numbers = [e["event_id"] for e in events]
        assert numbers == sorted(set(numbers))  # in order, none twice
        creates = [e["agent_id"] for e in events if e["kind"] == "create"]
        assert creates == [first, second]
        assert "context-shutdown" in follower.kinds()  # sent before the old stream closed
        code = follower.interrupt()
        assert code == 130
        stderr = "\n".join(follower.stderr_lines)
        assert "Traceback" not in stderr
        assert any("reconnect" in line for line in follower.stderr_lines)
    finally:
        follower.close()


def test_follow_in_text_shows_one_line_per_event(host: Host, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paglets",
            "events",
            "-f",
            "--entry",
            host.address,
            "--kind",
            "create",
        ],
        env=cli_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout or ()),
        daemon=True,
    )
    try:
        assert proc.stderr is not None
        assert "following events" in proc.stderr.readline()
        reader.start()
        agent_id = host.create(echo.Echo).agent_id
        host.events.emit("noise")  # filtered out by --kind
        wait_until(lambda: len(lines) >= 1, 30)
        fields = lines[0].split()
        assert fields[1:4] == ["alpha", "create", agent_id[:12]]
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 130
        reader.join(5)
        assert len(lines) == 1
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
