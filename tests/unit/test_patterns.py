"""paglets.patterns pieces that need no host: value types, standalone task and fan-out
book-keeping, atomic copies, planning checks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets import Message, Paglet
from paglets.core.errors import HostError
from paglets.core.messages import NOT_HANDLED
from paglets.examples.patterns import ManualTask, SquareTask, SurveyState
from paglets.patterns.coordination import MeshFanoutMixin
from paglets.patterns.file_mobility import (
    FileTransferMode,
    FileTransferRequest,
    SingleFileTransferPaglet,
    format_bytes,
)
from paglets.patterns.notifications import NotificationSeverity, user_info_request
from paglets.patterns.tasks import TaskStatus, TaskStatusReply


def test_status_reply_round_trips_and_parses_strictly() -> None:
    reply = TaskStatusReply(TaskStatus.COMPLETED, True, {"x": 1}, "", 1.0, 2.0, "a", "h", "u")
    wire = reply.to_wire()
    assert wire["status"] == "COMPLETED"
    assert TaskStatusReply.from_wire(wire) == reply
    with pytest.raises(ValueError, match="status must be one of"):
        TaskStatusReply.from_wire({**wire, "status": "DONE"})
    with pytest.raises(TypeError, match="TaskStatus member"):
        TaskStatusReply("COMPLETED", True)  # type: ignore[arg-type]


def start(task: object, request: dict[str, object] | None) -> dict[str, object]:
    return task.handle_message(Message("start", {"request": request}))  # type: ignore[attr-defined]


def test_standalone_task_completes_fails_or_keeps_running() -> None:
    done = start(SquareTask(), {"n": 7})
    assert done["status"] == "COMPLETED" and done["done"] is True
    assert done["result"] == {"square": 49}

    failed = start(SquareTask(), {"n": -1})
    assert failed["status"] == "FAILED" and failed["done"] is True
    assert "n must be >= 0" in failed["error"]

    manual = ManualTask()
    running = start(manual, {})
    assert running["status"] == "RUNNING" and running["done"] is False
    with pytest.raises(HostError, match="already RUNNING"):
        start(manual, {})
    assert manual.handle_message(Message("finish", {"value": 3})) is True
    assert manual.state.status is TaskStatus.COMPLETED and manual.state.result == {"value": 3}
    assert manual.handle_message(Message("other")) is NOT_HANDLED


def test_start_refuses_a_request_that_is_not_a_dict() -> None:
    with pytest.raises(TypeError, match="'start' needs"):
        SquareTask().handle_message(Message("start", {"request": [1, 2]}))


def test_set_task_status_rejects_raw_strings() -> None:
    task = SquareTask()
    with pytest.raises(TypeError):
        task.set_task_status("RUNNING")  # type: ignore[arg-type]
    task.set_task_status(TaskStatus.RUNNING)
    assert task.state.status is TaskStatus.RUNNING and not task.state.done


class Fanout(MeshFanoutMixin, Paglet[SurveyState]):
    """A standalone paglet with the fan-out mixin (no host needed for the book-keeping)."""

    State = SurveyState


def fanout() -> Fanout:
    paglet = Fanout()
    paglet.fanout_reset(timeout=60.0)
    paglet.state.pending_hosts = ["beta", "gamma", "delta"]
    return paglet


def test_fanout_records_done_and_errors() -> None:
    paglet = fanout()
    assert paglet.state.deadline > time.time() + 50  # epoch time, not monotonic
    assert paglet.fanout_record_child_done("beta") is True
    assert paglet.fanout_record_child_done("beta") is False  # a repeat changes nothing
    paglet.fanout_record_child_error("gamma", RuntimeError("disk full"))
    assert paglet.state.pending_hosts == ["delta"]
    assert paglet.state.done_hosts == ["beta"]
    assert paglet.state.errors == {"gamma": "disk full"}
    assert not paglet.fanout_complete()


def test_fanout_expires_pending_hosts_only_after_the_deadline() -> None:
    paglet = fanout()
    assert paglet.fanout_expire_pending() == []
    assert paglet.state.pending_hosts == ["beta", "gamma", "delta"]
    paglet.state.deadline = time.time() - 0.001
    assert paglet.fanout_expire_pending("silent") == ["beta", "gamma", "delta"]
    assert paglet.state.errors == {"beta": "silent", "gamma": "silent", "delta": "silent"}
    assert paglet.fanout_complete() and paglet.fanout_remaining() < 0


def test_fanout_reset_clears_the_previous_round() -> None:
    paglet = fanout()
    paglet.fanout_record_child_proxy("beta", {"host_url": "http://b", "agent_id": "x"})
    paglet.fanout_reset(timeout=1.0)
    state = paglet.state
    assert (state.pending_hosts, state.done_hosts, state.child_proxies, state.errors) == (
        [],
        [],
        {},
        {},
    )
    assert state.role == "parent"
    with pytest.raises(ValueError):
        paglet.fanout_reset(timeout=-1)


def test_fanout_parent_has_no_parent() -> None:
    paglet = fanout()
    assert not paglet.fanout_is_child()
    assert paglet.fanout_parent_proxy() is None
    assert paglet.fanout_notify_parent({"x": 1}) is None


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (3 << 30, "3.0 GiB")],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


@given(st.integers(min_value=0, max_value=1 << 62))
def test_format_bytes_is_short_for_any_size(size: int) -> None:
    number, unit = format_bytes(size).split(" ")
    assert unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    assert float(number) < 1024 or unit == "PiB"


def test_atomic_copy_refuses_to_overwrite_and_leaves_no_temporary(tmp_path: Path) -> None:
    mixin = SingleFileTransferPaglet()
    source = tmp_path / "src.txt"
    source.write_text("new")
    target = tmp_path / "out" / "dst.txt"
    assert mixin.atomic_copy_file(source, target) == target  # parents made
    assert target.read_text() == "new"
    source.write_text("newer")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        mixin.atomic_copy_file(source, target)
    assert target.read_text() == "new"
    mixin.atomic_copy_file(source, target, overwrite=True)
    assert target.read_text() == "newer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["dst.txt"]
    with pytest.raises(FileNotFoundError, match="create_parents=True"):
        mixin.atomic_copy_file(source, tmp_path / "missing" / "x", create_parents=False)
    with pytest.raises(IsADirectoryError):
        mixin.atomic_copy_file(source, tmp_path / "out")


def test_destination_planning_checks_the_shape() -> None:
    mixin = SingleFileTransferPaglet()
    assert mixin.plan_destination_path("/data/", "a.bin") == "/data/a.bin"
    assert mixin.plan_destination_path("~/in/b.bin", "a.bin") == "~/in/b.bin"
    with pytest.raises(ValueError, match="absolute"):
        mixin.plan_destination_path("relative/x", "a.bin")
    with pytest.raises(ValueError, match="destination_path"):
        mixin.plan_destination_path("  ", "a.bin")


def test_request_mode_must_be_a_member() -> None:
    assert FileTransferRequest(mode=FileTransferMode.MOVE).mode is FileTransferMode.MOVE
    with pytest.raises(TypeError):
        FileTransferRequest(mode="move")  # type: ignore[arg-type]


def test_notify_user_info_without_a_host_is_false() -> None:
    from support.pattern_models import Notifier

    assert Notifier().notify_user_info(NotificationSeverity.INFO, "t", "m") is False
    assert Notifier().notify_user_info("bogus", "t", "m") is False  # never raises


def test_user_info_request_shape() -> None:
    wire = user_info_request("warning", "t", "m", source_agent_id="a", job_id="j", timestamp=5)
    assert wire == {
        "severity": "warning",
        "title": "t",
        "message": "m",
        "source_agent_id": "a",
        "job_id": "j",
        "timestamp": 5.0,
        "metadata": {},
    }


def test_patterns_package_is_lazy_and_reexports() -> None:
    code = (
        "import sys, paglets.patterns as p\n"
        "assert 'paglets.patterns.tasks' not in sys.modules\n"
        "assert p.TaskPaglet is p.tasks.TaskPaglet\n"
        "assert p.format_bytes is p.file_mobility.format_bytes\n"
        "assert 'paglets.patterns.coordination' not in sys.modules\n"
        "assert p.coordination.MeshFanoutMixin is p.MeshFanoutMixin\n"
        "try:\n    p.NoSuchThing\nexcept AttributeError:\n    pass\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
