"""`paglets host` as a user runs it (cli.md section 1): a real process, its ready line,
`/health`, a graceful stop that saves every paglet, and one-line failures with exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.processes import READY_RE, HostProcess, run_paglets
from support.waiting import wait_until as wait_for

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"


def call(url: str, method: str = "GET", body: Any = None, key: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        exc.msg = f"{exc.msg}: {exc.read().decode(errors='replace')}"  # the error body
        raise


def assert_one_line_failure(result: Any, *, code: int = 2, prefix: str = "paglets host: ") -> str:
    """The failure is one error line (plus at most a hint line), never a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines, "no error line on stderr"
    assert lines[0].startswith(prefix), lines
    assert len(lines) <= 2, lines
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), lines
    return result.stderr


# -- running ---------------------------------------------------------------------------


def test_ready_line_names_the_url_and_health_answers(host_process: Any) -> None:
    alpha: HostProcess = host_process("alpha")
    first = alpha.stdout_lines[0]
    match = READY_RE.match(first)
    assert match and match.group("name") == "alpha"
    assert "(mesh on, version test)" in first
    assert alpha.url.startswith("http://127.0.0.1:")
    assert int(alpha.url.rsplit(":", 1)[1]) > 0  # --port 0 picked a real port
    health = call(f"{alpha.url}/health")
    assert health["name"] == "alpha"
    assert health["code_version"] == "test"


def test_sigterm_saves_paglets_and_restart_brings_them_back(host_process: Any) -> None:
    alpha: HostProcess = host_process("alpha")
    created = call(
        f"{alpha.url}/agents",
        "POST",
        {
            "agent_class_name": COUNTER,
            "state_class_name": COUNTER_STATE,
            "state": {"name": "kept", "count": 41, "history": []},
        },
    )
    agent_id = created["proxy"]["agent_id"]
    assert (
        call(f"{alpha.url}/agents/{agent_id}/messages", "POST", {"message": {"kind": "add"}})
        is not None
    )

    assert alpha.terminate() == 0
    assert "Traceback" not in alpha.stderr
    assert any("stopped" in line for line in alpha.stdout_lines)

    alpha.restart()
    info = call(f"{alpha.url}/agents/{agent_id}")
    assert info["agent_id"] == agent_id
    state = call(f"{alpha.url}/agents/{agent_id}/state")
    assert state["state"]["count"] == 42
    assert state["state"]["name"] == "kept"


TESTS_DIR = str(Path(__file__).resolve().parents[1])


def _busy_paglet(alpha: HostProcess) -> str:
    """A paglet (tests/support Echo, importable in the child via PYTHONPATH) whose handler
    is blocked when the host is told to stop; its count is 1 in the last checkpoint."""
    created = call(
        f"{alpha.url}/agents",
        "POST",
        {"agent_class_name": "support.messaging_models:Echo", "state": {"count": 0, "log": []}},
    )
    agent_id = created["proxy"]["agent_id"]
    messages = f"{alpha.url}/agents/{agent_id}/messages"
    assert call(messages, "POST", {"message": {"kind": "count"}})["result"] == 1
    call(messages, "POST", {"message": {"kind": "block"}, "oneway": True})
    return agent_id


def test_shutdown_grace_bounds_the_wait_for_a_busy_paglet(host_process: Any) -> None:
    alpha: HostProcess = host_process(
        "alpha", args=["--shutdown-grace", "500ms"], env={"PYTHONPATH": TESTS_DIR}
    )
    agent_id = _busy_paglet(alpha)
    assert alpha.terminate() == 0  # the blocked handler (30 s) is not waited for
    alpha.restart()
    assert call(f"{alpha.url}/agents/{agent_id}/state")["state"]["count"] == 1


def test_second_sigint_stops_waiting(host_process: Any) -> None:
    alpha: HostProcess = host_process(
        "alpha", args=["--shutdown-grace", "10m"], env={"PYTHONPATH": TESTS_DIR}
    )
    agent_id = _busy_paglet(alpha)
    alpha.signal(signal.SIGINT)
    wait_for(lambda: any("stopping" in line for line in alpha.stdout_lines))
    alpha.signal(signal.SIGINT)
    assert alpha.wait() == 130
    assert "Traceback" not in alpha.stderr
    alpha.restart()
    assert call(f"{alpha.url}/agents/{agent_id}/state")["state"]["count"] == 1


def test_sigint_is_a_clean_stop(host_process: Any) -> None:
    alpha: HostProcess = host_process("alpha")
    assert alpha.interrupt() == 0
    assert "Traceback" not in alpha.stderr


def test_the_key_variable_is_removed_and_required_by_the_server(host_process: Any) -> None:
    alpha: HostProcess = host_process("alpha", api_key="s3cret-test-key")
    assert any("mesh key from $PAGLETS_API_KEY" in line for line in alpha.stdout_lines)
    assert "s3cret-test-key" not in alpha.stdout + alpha.stderr
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(f"{alpha.url}/agents")
    assert refused.value.code == 401
    assert call(f"{alpha.url}/health", key="s3cret-test-key")["name"] == "alpha"


def test_the_host_forgets_the_key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    # network.md 1.3: read once, then gone from the host's environment, so paglet code and
    # its child processes never see it.
    from paglets.cli.keys import forget_key_variables, read_mesh_key

    monkeypatch.setenv("MY_MESH_KEY", "k-123")
    monkeypatch.setenv("PAGLETS_API_KEY", "other")
    key = read_mesh_key("MY_MESH_KEY")
    assert (key.value, key.source) == ("k-123", "$MY_MESH_KEY")
    assert "k-123" not in repr(key)
    forget_key_variables("MY_MESH_KEY")
    assert "MY_MESH_KEY" not in os.environ
    assert "PAGLETS_API_KEY" not in os.environ


def test_key_file_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paglets.cli.keys import read_mesh_key

    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_mesh_key().value is None
    key_file = tmp_path / ".paglets" / "mesh.key"
    key_file.parent.mkdir()
    key_file.write_text("file-key\n")
    key_file.chmod(0o600)
    key = read_mesh_key()
    assert (key.value, key.source) == ("file-key", str(key_file))
    monkeypatch.setenv("PAGLETS_API_KEY", "env-key")
    assert read_mesh_key().value == "env-key"


# -- failures: one line, exit code of cli.md 0.5 / 1.2 ------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--artifact-max-size", "2XB"], '--artifact-max-size: cannot read "2XB" as a size'),
        (["--max-state-size", "lots"], '--max-state-size: cannot read "lots" as a size'),
        (["--checkpoint-interval", "5x"], '--checkpoint-interval: cannot read "5x"'),
        (["--shutdown-grace", "soon"], '--shutdown-grace: cannot read "soon" as a duration'),
        (["--property", "python"], '--property: cannot read "python" as KEY=VALUE'),
        (["--port", "http"], '--port: cannot read "http" as a port'),
        (["--port", "70000"], "--port: a port must be 0 to 65535"),
        (["--durability", "maybe"], '--durability: cannot read "maybe"'),
        (["--peer", "alpha:8765"], "--peer:"),
        (["--no-such-flag"], "No such option: --no-such-flag"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_paglets("host", "--name", "alpha", "--port", "0", *args, home=tmp_path)
    stderr = assert_one_line_failure(result)
    assert expected in stderr


def test_bad_name_is_refused(tmp_path: Path) -> None:
    result = run_paglets("host", "--name", "../etc", home=tmp_path)
    assert "--name:" in assert_one_line_failure(result)


def test_missing_name_is_refused(tmp_path: Path) -> None:
    result = run_paglets("host", "--port", "0", home=tmp_path)
    assert "--name is required" in assert_one_line_failure(result)


def test_api_key_env_naming_an_unset_variable_is_exit_2(tmp_path: Path) -> None:
    result = run_paglets(
        "host", "--name", "alpha", "--port", "0", "--api-key-env", "PAGLETS_TEST_NO_SUCH_KEY",
        home=tmp_path,
    )  # fmt: skip
    assert "PAGLETS_TEST_NO_SUCH_KEY" in assert_one_line_failure(result)


def test_api_key_env_naming_an_empty_variable_is_exit_2(tmp_path: Path) -> None:
    result = run_paglets(
        "host", "--name", "alpha", "--port", "0", "--api-key-env", "PAGLETS_TEST_EMPTY_KEY",
        home=tmp_path, env={"PAGLETS_TEST_EMPTY_KEY": ""},
    )  # fmt: skip
    assert "PAGLETS_TEST_EMPTY_KEY" in assert_one_line_failure(result)


@pytest.mark.parametrize(
    "args",
    [
        ["--host", "0.0.0.0"],
        ["--bind-public", "auto", "--mesh-version", "ds-dia-dev"],  # the seed's command
    ],
)
def test_non_loopback_bind_without_key_gives_the_recipe(tmp_path: Path, args: list[str]) -> None:
    result = run_paglets("host", "--name", "linux-a", "--port", "0", *args, home=tmp_path)
    stderr = assert_one_line_failure(result)
    assert "paglets certs key --write" in stderr
    assert "PAGLETS_API_KEY" in stderr
    assert "--insecure" in stderr


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / ".paglets" / "mesh.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("a-key\n")
    key_file.chmod(0o644)
    result = run_paglets("host", "--name", "alpha", "--port", "0", home=tmp_path)
    assert "chmod 600" in assert_one_line_failure(result)


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_paglets(
            "host", "--name", "alpha", "--port", str(port),
            "--persistence-dir", str(tmp_path / "alpha"), home=tmp_path,
        )  # fmt: skip
    # cli.md 1.2: a port in use is a runtime failure (exit 1), not a usage error.
    stderr = assert_one_line_failure(result, code=1)
    assert str(port) in stderr
    assert "--port 0" in stderr


def test_debug_shows_the_traceback_of_a_runtime_failure(tmp_path: Path) -> None:
    # A persistence dir that cannot be made: a failure of the run, not a usage error.
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    args = ["host", "--name", "alpha", "--port", "0", "--persistence-dir", str(blocker / "x")]
    plain = run_paglets(*args, home=tmp_path)
    assert "persistence dir" in assert_one_line_failure(plain, code=1)
    debug = run_paglets(*args, home=tmp_path, env={"PAGLETS_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    flag = run_paglets("--debug", *args, home=tmp_path)
    assert "Traceback" in flag.stderr


def test_version_with_python_dash_m(tmp_path: Path) -> None:
    result = run_paglets("--version", home=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("paglets ")


def test_root_help_lists_host_and_no_command_loads_the_runtime(tmp_path: Path) -> None:
    result = run_paglets("--help", home=tmp_path)
    assert result.returncode == 0
    assert "host" in result.stdout
    # `import paglets.cli.main` and parsing `paglets host` flags stay light (targets.md
    # g1): no runtime, no aiohttp, and none of typer's pydantic conversion.
    probe = (
        "import sys, io, contextlib\n"
        "import paglets.cli.main as m\n"
        "heavy = [n for n in sys.modules if n.startswith('paglets.runtime') or n == 'aiohttp']\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    code = m.run(['host', '--name', 'a', '--port', 'x', '--max-state-size', '1G'])\n"
        "print(heavy, code, 'pydantic' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[] 2 False", out.stdout + out.stderr


def test_limit_and_retention_flags_are_taken(host_process: Any, tmp_path: Path) -> None:
    roots = tmp_path / "data"
    roots.mkdir()
    alpha: HostProcess = host_process(
        "alpha",
        args=[
            "--max-connections", "64", "--pointer-ttl", "1d",
            "--transfer-log-retention", "2d", "--artifact-owner-cleanup", "keep",
            "--file-root", str(roots),
        ],
    )  # fmt: skip
    assert call(f"{alpha.url}/health")["name"] == "alpha"
    assert alpha.interrupt() == 0


def test_a_bad_cleanup_policy_is_one_line(tmp_path: Path) -> None:
    result = run_paglets(
        "host", "--name", "alpha", "--port", "0", "--artifact-owner-cleanup", "later",
        home=tmp_path,
    )  # fmt: skip
    assert "--artifact-owner-cleanup" in assert_one_line_failure(result)
