"""`paglets agents` (cli.md section 2) against real hosts: in-process hosts driven through
the CLI's own `run()` (exit code, stdout, stderr as a user sees them), and one real
`paglets host` process driven by a real `paglets` process."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets import Host
from paglets.cli.main import run
from support import messaging_models as echo
from support import move_models as mm
from support.processes import run_paglets
from support.waiting import wait_until

COUNTER = "paglets.examples.counter:Counter"
ECHO = "support.messaging_models:Echo"


@pytest.fixture(autouse=True)
def _reset_move_models() -> None:
    mm.HOOKS.clear()
    mm.FAIL_ARRIVAL.clear()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_failure(err: str, prefix: str) -> str:
    """One error line (plus at most a hint line), never a traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith(prefix), lines
    assert len(lines) <= 2, lines
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), lines
    return lines[0]


# -- one host ---------------------------------------------------------------------------------


def test_create_ls_info_state_and_send(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    url = host.address
    code, out, _ = cli(
        capsys,
        "agents",
        "create",
        COUNTER,
        "--state",
        '{"count": 3}',
        "--id",
        "counter-one",
        "--entry",
        url,
    )
    assert (code, out.strip()) == (0, f"created counter-one on {url}")
    assert host.get_state("counter-one").count == 3
    code, out, _ = cli(capsys, "agents", "create", ECHO, "--entry", url, "--json")
    echo_id = json.loads(out)["agent_id"]
    assert code == 0 and echo_id in host.registry.live

    code, out, _ = cli(capsys, "agents", "ls", "--entry", url)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["agent", "class", "state", "host", "mailbox", "since", "error"]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id["counter-one"][1:5] == ["Counter", "active", "alpha", "0/0"]
    assert by_id[echo_id[:12]][1] == "Echo"
    assert echo_id not in out  # 12 characters unless --long
    code, out, _ = cli(capsys, "agents", "ls", "--entry", url, "--long", "--class", "Echo")
    assert code == 0 and echo_id in out and "counter-one" not in out
    assert ECHO in out
    code, out, _ = cli(capsys, "agents", "ls", "--entry", url, "--json", "--query", "counter")
    listed = json.loads(out)["agents"]
    assert [a["agent_id"] for a in listed] == ["counter-one"]
    assert listed[0]["class_name"] == COUNTER and listed[0]["mailbox"]["queued"] == 0

    code, out, _ = cli(capsys, "agents", "send", "counter-o", "add", "--set", "n=5", "--entry", url)
    assert (code, out.strip()) == (0, "8")
    code, out, _ = cli(
        capsys,
        "agents",
        "send",
        "counter-one",
        "add",
        "--args",
        '{"n": 2}',
        "--json",
        "--entry",
        url,
    )
    assert (code, json.loads(out)) == (0, {"result": 10})
    code, out, _ = cli(
        capsys,
        "agents",
        "send",
        "counter-one",
        "add",
        "--oneway",
        "--priority",
        "9",
        "--entry",
        url,
    )
    assert (code, out.strip()) == (0, "sent add to counter-one")
    wait_until(lambda: host.get_state("counter-one").count == 11)

    code, out, _ = cli(capsys, "agents", "state", "counter-one", "--entry", url)
    shown = json.loads(out)
    assert code == 0 and (shown["count"], shown["history"]) == (11, ["created"])
    code, out, _ = cli(capsys, "agents", "state", "counter-one", "--entry", url, "--json")
    doc = json.loads(out)
    assert doc["state_source"] == "live" and doc["state"]["count"] == 11

    code, out, _ = cli(capsys, "agents", "info", "counter-", "--entry", url)
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
    assert fields["agent"].strip() == "counter-one"
    assert fields["class"].strip() == COUNTER
    assert fields["host"].strip() == f"alpha ({url})"
    assert "delivered" in out and "transfer      none" in out
    code, out, _ = cli(capsys, "agents", "info", "counter-one", "--entry", url, "--json")
    doc = json.loads(out)
    assert doc["location"]["state"] == "live" and doc["transfers"] == []
    assert doc["agent"]["agent_id"] == "counter-one"


def test_binary_arguments_travel_and_state_shows_bytes(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = host.create(echo.Echo)
    blob = '{"__paglets_binary__": "bytes", "base64": "AAEC"}'
    code, out, _ = cli(
        capsys,
        "agents",
        "send",
        proxy.agent_id,
        "inspect",
        "--entry",
        host.address,
        "--json",
        "--set",
        'point={"x": 1, "y": 2}',
        "--set",
        f"blob={blob}",
        "--set",
        "items=[1]",
        "--arg",
        '{"x": 3}',
    )
    assert code == 0
    seen = json.loads(out)["result"]
    assert seen["types"]["blob"] == "bytes"
    assert seen["blob"] == {"__paglets_binary__": "bytes", "base64": "AAEC"}


def test_id_prefixes(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    for agent_id in ("abcdef-one", "abcdef-two", "abc"):
        host.create(echo.Echo, agent_id=agent_id)
    url = host.address
    code, _, err = cli(capsys, "agents", "info", "abcdef", "--entry", url)
    line = one_line_failure(err, "paglets agents info: ")
    assert code == 2
    assert "ambiguous" in line and "abcdef-one" in line and "abcdef-two" in line
    code, out, _ = cli(capsys, "agents", "send", "abcdef-t", "count", "--entry", url)
    assert (code, out.strip()) == (0, "1")
    # An exact id wins, however short; a short prefix does not.
    assert cli(capsys, "agents", "send", "abc", "count", "--entry", url)[:2] == (0, "1\n")
    code, _, err = cli(capsys, "agents", "info", "abcd", "--entry", url)
    assert code == 2 and "at least 6 characters" in one_line_failure(err, "paglets agents info")
    code, _, err = cli(capsys, "agents", "info", "zzzzzzzz", "--entry", url)
    assert code == 1
    assert "no paglet 'zzzzzzzz'" in one_line_failure(err, "paglets agents info: ")
    code, _, err = cli(capsys, "agents", "info", "bad/id", "--entry", url)
    assert code == 2 and "invalid agent id" in one_line_failure(err, "paglets agents info: ")


def test_handler_errors_show_type_message_and_remote_frames(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    agent_id = host.create(echo.Echo).agent_id
    url = host.address
    code, out, err = cli(
        capsys, "agents", "send", agent_id, "fail", "--set", 'why="x"', "--entry", url
    )
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "paglets agents send: ValueError: bad input: x (on host 'alpha')"
    assert lines[1] == "remote traceback, last frames:"
    assert any("raise ValueError" in line for line in lines[2:])
    code, out, _ = cli(capsys, "agents", "send", agent_id, "fail", "--entry", url, "--json")
    error = json.loads(out)["error"]
    assert (
        code == 1
        and error["error_type"] == "ValueError"
        and "raise ValueError" in (error["traceback"] or "")
    )
    code, _, err = cli(capsys, "agents", "send", agent_id, "no-such-kind", "--entry", url)
    assert code == 1
    assert one_line_failure(err, "paglets agents send: NotHandledError: ")


def test_deactivate_activate_and_dispose(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    url = host.address
    first = host.create(echo.Echo, agent_id="sleeper-1").agent_id
    second = host.create(echo.Echo, agent_id="sleeper-2").agent_id
    code, out, _ = cli(
        capsys,
        "agents",
        "deactivate",
        "sleeper-1",
        "--after",
        "1h",
        "--reason",
        "nap",
        "--no-activate-on-message",
        "--entry",
        url,
    )
    assert code == 0 and out.startswith(f"deactivated {first} on {url}; wakes in 59m")
    policy = host.agent_info(first)["policy"]
    assert policy["activate_on_message"] is False and policy["activate_at"] > 0
    code, out, _ = cli(capsys, "agents", "ls", "--state", "inactive", "--entry", url)
    assert code == 0 and [r.split()[:3] for r in out.splitlines()[1:]] == [
        [first, "Echo", "inactive"]
    ]
    code, _, err = cli(
        capsys, "agents", "deactivate", "sleeper-2", "--after", "1h", "--at", "2h", "--entry", url
    )
    assert code == 2 and one_line_failure(err, "paglets agents deactivate: ")
    code, _, err = cli(
        capsys, "agents", "deactivate", "sleeper-2", "--at", "2001-01-01T00:00:00Z", "--entry", url
    )
    assert code == 2 and "in the past" in one_line_failure(err, "paglets agents deactivate: ")
    code, out, _ = cli(capsys, "agents", "activate", "sleeper-1", "--entry", url)
    assert (code, out.strip()) == (0, f"activated {first} on {url}")
    assert first in host.registry.live

    # Not a terminal and no --force: refused, nothing disposed.
    code, _, err = cli(capsys, "agents", "dispose", "sleeper-1", "--entry", url)
    assert code == 2 and "--force" in err and first in host.registry.live
    code, out, _ = cli(capsys, "agents", "dispose", "sleeper-1", "sleeper-2", "-f", "--entry", url)
    assert (code, out.splitlines()) == (0, [f"disposed {first}", f"disposed {second}"])
    assert not host.registry.live
    code, out, _ = cli(capsys, "agents", "ls", "--entry", url)
    assert (code, out.strip()) == (1, "No paglets.")
    code, out, _ = cli(capsys, "agents", "dispose", "--state", "crashed", "-f", "--entry", url)
    assert (code, out.strip()) == (1, "No crashed paglets.")
    code, _, err = cli(capsys, "agents", "dispose", "--entry", url)
    assert code == 2 and one_line_failure(err, "paglets agents dispose: ")


def test_dispose_by_state_takes_every_match(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    sleepers = [host.create(echo.Echo).agent_id for _ in range(3)]
    awake = host.create(echo.Echo).agent_id
    for agent_id in sleepers:
        host.deactivate(agent_id)
    code, out, _ = cli(
        capsys, "agents", "dispose", "--state", "inactive", "-f", "--json", "--entry", host.address
    )
    assert code == 0 and sorted(json.loads(out)["disposed"]) == sorted(sleepers)
    assert list(host.registry.live) == [awake]
    assert host.store.count_agents("inactive") == 0


# -- two hosts ----------------------------------------------------------------------------------


def test_dispatch_clone_retract_and_transfers(
    make_host: Callable[..., Host], capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(mm.Traveller).agent_id
    entry = ("--entry", alpha.address)

    code, out, _ = cli(capsys, "agents", "dispatch", agent_id[:8], beta.address, *entry)
    assert (code, out.strip()) == (0, f"moved {agent_id} to {beta.address} (epoch 2)")
    assert agent_id in beta.registry.live and agent_id not in alpha.registry.live
    # The entry only holds a forwarding pointer now: the full id is followed there.
    code, out, _ = cli(capsys, "agents", "info", agent_id, *entry, "--json")
    assert code == 0 and json.loads(out)["agent"]["host"] == "beta"
    code, out, _ = cli(capsys, "agents", "send", agent_id, "where", *entry)
    assert (code, out.strip()) == (0, '"beta"')

    code, out, _ = cli(capsys, "agents", "retract", agent_id, *entry)
    assert (code, out.strip()) == (0, f"retracted {agent_id} to {alpha.address}")
    assert agent_id in alpha.registry.live and alpha.agent_info(agent_id)["epoch"] == 3

    code, out, _ = cli(capsys, "agents", "clone", agent_id[:10], beta.address, *entry)
    clone_id = out.strip()
    assert code == 0 and clone_id in beta.registry.live and agent_id in alpha.registry.live
    code, out, _ = cli(capsys, "agents", "clone", agent_id, *entry)
    assert code == 0 and out.strip() in alpha.registry.live

    code, out, _ = cli(capsys, "agents", "transfers", "--role", "source", *entry)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["transfer", "role", "agent", "kind", "status"]
    kinds = sorted(row.split()[3] for row in rows)
    assert kinds == ["clone", "dispatch"]
    code, out, _ = cli(capsys, "agents", "transfers", "--json", "--entry", beta.address)
    records = json.loads(out)["transfers"]
    assert code == 0 and {r["role"] for r in records} == {"target", "source"}
    wait_for_acks = [r for r in records if r["status"] not in ("COMMITTED", "ACKED")]
    assert wait_for_acks == []
    code, out, _ = cli(capsys, "agents", "transfers", "--open", "--role", "target", *entry)
    assert (code, out.strip()) == (1, "No open transfers.")


def test_dispatch_with_ticket_options(
    make_host: Callable[..., Host], capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(mm.Traveller).agent_id
    code, out, _ = cli(
        capsys,
        "agents",
        "dispatch",
        agent_id,
        beta.address,
        "--retries",
        "1",
        "--ticket-timeout",
        "20s",
        "--entry",
        alpha.address,
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and doc == {
        "agent_id": agent_id,
        "host_url": beta.address,
        "epoch": 2,
        "acknowledged": True,
    }
    code, _, err = cli(
        capsys,
        "agents",
        "dispatch",
        agent_id,
        alpha.address,
        "--require-capability",
        "no-such-capability",
        "--entry",
        beta.address,
    )
    assert code == 1 and one_line_failure(err, "paglets agents dispatch: TransferError: ")
    assert agent_id in beta.registry.live


def test_dispatch_inactive_arrives_asleep(
    make_host: Callable[..., Host], capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(mm.Traveller).agent_id
    args = ("agents", "dispatch", agent_id, beta.address, "--inactive", "--entry", alpha.address)
    assert cli(capsys, *args)[0] == 0
    assert agent_id not in beta.registry.live
    assert beta.agent_info(agent_id)["active"] is False


def test_a_refused_move_is_exit_1_with_the_remote_reason(
    make_host: Callable[..., Host], capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(mm.Traveller).agent_id
    mm.FAIL_ARRIVAL.add(agent_id)
    code, _, err = cli(
        capsys, "agents", "dispatch", agent_id, beta.address, "--entry", alpha.address
    )
    line = one_line_failure(err, "paglets agents dispatch: TransferError: ")
    assert code == 1 and "on_arrival refused on purpose" in line
    assert agent_id in alpha.registry.live
    code, out, _ = cli(
        capsys, "agents", "dispatch", agent_id, beta.address, "--entry", alpha.address, "--json"
    )
    error = json.loads(out)["error"]
    assert code == 1 and error["error_type"] == "TransferError"


# -- failures before anything runs -------------------------------------------------------------


def test_unreachable_entry_and_bad_values(
    host: Host, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(capsys, "agents", "ls", "--entry", "http://127.0.0.1:9")
    line = one_line_failure(err, "paglets agents ls: no paglets host at http://127.0.0.1:9 (")
    assert code == 2 and line
    assert 'start one with "paglets host --name NAME", or pass --entry URL' in err
    code, out, _ = cli(capsys, "agents", "ls", "--entry", "http://127.0.0.1:9", "--json")
    assert code == 2 and json.loads(out)["ok"] is False
    monkeypatch.setenv("PAGLETS_ENTRY", host.address)
    host.create(echo.Echo, agent_id="via-env")
    code, out, _ = cli(capsys, "agents", "ls")
    assert code == 0 and "via-env" in out
    code, _, err = cli(capsys, "agents", "ls", "--entry", "nosuchname")
    assert code == 2 and "known: alpha" in one_line_failure(err, "paglets agents ls: ")

    bad = [
        (["agents", "ls", "--timeout", "soon"], "--timeout"),
        (["agents", "ls", "--state", "sleepy"], "--state"),
        (["agents", "send", "via-env", "count", "--priority", "11"], "--priority"),
        (["agents", "send", "via-env", "count", "--set", "n"], "--set"),
        (["agents", "send", "via-env", "count", "--args", "[1]"], "--args"),
        (["agents", "send", "via-env", "count", "--arg", "{oops"], "--arg"),
        (["agents", "create", COUNTER, "--state", "[1, 2]"], "--state"),
        (["agents", "create", "no-colon"], "CLASS"),
    ]
    for args, what in bad:
        code, _, err = cli(capsys, *args)
        assert code == 2, (args, err)
        assert what in one_line_failure(err, f"paglets agents {args[1]}"), (args, err)
    code, _, err = cli(capsys, "agents", "create", "no_such_module_xyz:Thing")
    line = one_line_failure(err, "paglets agents create: ")
    assert code == 1 and "No module named 'no_such_module_xyz'" in line


def test_a_keyed_host_needs_the_key(
    make_host: Callable[..., Host],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keyed = make_host("keyed", api_key="right-key")
    keyed.create(echo.Echo, agent_id="secret-1")
    entry = ("--entry", keyed.address)
    code, _, err = cli(capsys, "agents", "ls", *entry)
    assert code == 2 and "requires the mesh key" in one_line_failure(err, "paglets agents ls: ")
    monkeypatch.setenv("PAGLETS_API_KEY", "wrong-key")
    code, _, err = cli(capsys, "agents", "ls", *entry)
    assert code == 2 and "$PAGLETS_API_KEY" in one_line_failure(err, "paglets agents ls: ")
    monkeypatch.setenv("MY_KEY", "right-key")
    code, out, _ = cli(capsys, "agents", "ls", "--api-key-env", "MY_KEY", *entry)
    assert code == 0 and "secret-1" in out
    monkeypatch.delenv("PAGLETS_API_KEY")
    key_file = Path(os.environ["HOME"]) / ".paglets" / "mesh.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("right-key\n")
    key_file.chmod(0o644)
    code, _, err = cli(capsys, "agents", "ls", *entry)
    assert code == 2 and "mode 0600" in one_line_failure(err, "paglets agents ls: ")
    key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    code, out, _ = cli(capsys, "agents", "ls", *entry)
    assert code == 0 and "secret-1" in out


# -- a real process ----------------------------------------------------------------------------


def test_as_a_user_runs_it(host_process: Any, tmp_path: Path) -> None:
    alpha = host_process("alpha")
    home = tmp_path / "home"
    created = run_paglets("agents", "create", COUNTER, "--entry", alpha.url, home=home)
    assert created.returncode == 0, created.stderr
    agent_id = created.stdout.split()[1]
    sent = run_paglets("agents", "send", agent_id[:6], "add", "--entry", alpha.url, home=home)
    assert (sent.returncode, sent.stdout.strip()) == (0, "1")
    listed = run_paglets("agents", "ls", "--entry", alpha.url, home=home)
    assert listed.returncode == 0 and agent_id[:12] in listed.stdout
    missing = run_paglets("agents", "info", "nothere1", "--entry", alpha.url, home=home)
    assert missing.returncode == 1 and missing.stdout == ""
    assert one_line_failure(missing.stderr, "paglets agents info: InvalidAgentError: ")
    gone = run_paglets("agents", "ls", "--entry", "http://127.0.0.1:9", home=home)
    assert gone.returncode == 2
    assert one_line_failure(gone.stderr, "paglets agents ls: no paglets host at ")
