"""The collector's rules (jobs.md §4.2): de-duplication by job_key, member and group
statuses, the paged summary."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paglets.system.compute_slots.group_models import (
    MEMBER_CANCELLED,
    MEMBER_FAILED,
    MEMBER_PLACING,
    MEMBER_RESULT,
    MEMBER_RUNNING,
    MEMBER_WAITING,
    REPORT_ACCEPTED,
    REPORT_DUPLICATE,
    GroupMember,
    accept_report,
    apply_progress,
    is_complete,
    member_from_registration,
    summary_payload,
)


def report(key: str, report_id: str, **extra: object) -> dict[str, object]:
    return {"job_key": key, "report_id": report_id, "agent_id": "a1", "attempt": 1, **extra}


def test_first_report_wins_and_a_repeat_of_it_is_accepted_again() -> None:
    members = {"k1": GroupMember(job_key="k1")}
    dups: list[dict[str, object]] = []
    first = accept_report(members, dups, report("k1", "r1", result=1), failure=False)
    assert (first.status, first.stand_down, first.newly_accepted) == (REPORT_ACCEPTED, False, True)
    again = accept_report(members, dups, report("k1", "r1", result=1), failure=False)
    assert (again.status, again.stand_down, again.newly_accepted) == (REPORT_ACCEPTED, False, False)
    other = accept_report(members, dups, report("k1", "r2", result=99), failure=False)
    assert (other.status, other.stand_down) == (REPORT_DUPLICATE, True)
    assert members["k1"].result == 1 and members["k1"].state == MEMBER_RESULT
    assert [d["report_id"] for d in dups] == ["r2"]


def test_a_failure_after_a_result_is_a_duplicate_and_unknown_keys_join() -> None:
    members: dict[str, GroupMember] = {}
    dups: list[dict[str, object]] = []
    accept_report(members, dups, report("new", "r1", result="x"), failure=False)
    assert "new" in members
    late = accept_report(members, dups, report("new", "r9", error="boom"), failure=True)
    assert late.status == REPORT_DUPLICATE
    assert members["new"].state == MEMBER_RESULT


def test_failure_and_cancel_states_and_partial_artifacts() -> None:
    members: dict[str, GroupMember] = {}
    accept_report(
        members,
        [],
        report("f", "r", error="E", kind="exception", stage="run", partial_artifacts=[{"a": 1}]),
        failure=True,
    )
    accept_report(members, [], report("c", "r", cancelled=True), failure=True)
    assert members["f"].state == MEMBER_FAILED and members["f"].artifacts == [{"a": 1}]
    assert members["f"].kind == "exception" and members["f"].stage == "run"
    assert members["c"].state == MEMBER_CANCELLED


def test_progress_advances_within_an_attempt_and_restarts_with_a_new_one() -> None:
    member = member_from_registration({"job_key": "k", "agent_id": "a"}, 0.0)
    assert apply_progress(member, {"attempt": 1, "compute_status": "RUNNING"}, 1.0)
    assert member.state == MEMBER_RUNNING
    # A stale, earlier state of the same attempt does not move it back.
    assert not apply_progress(member, {"attempt": 1, "compute_status": "PLACING"}, 2.0)
    assert member.state == MEMBER_RUNNING
    assert apply_progress(member, {"attempt": 2, "compute_status": "PLACING"}, 3.0)
    assert (member.state, member.attempt) == (MEMBER_PLACING, 2)
    assert not apply_progress(member, {"attempt": 1, "compute_status": "RUNNING"}, 4.0)
    accept_report({"k": member}, [], report("k", "r"), failure=False)
    assert not apply_progress(member, {"attempt": 3, "compute_status": "WAITING_FOR_SLOT"}, 5.0)
    assert member.state == MEMBER_RESULT


def test_summary_counts_pages_and_artifact_bytes() -> None:
    members = {f"k{i:02d}": GroupMember(job_key=f"k{i:02d}") for i in range(25)}
    for i in range(10):
        accept_report(
            members,
            [],
            report(
                f"k{i:02d}",
                "r",
                artifacts=[
                    {"artifact_id": f"{i}", "size_bytes": 100, "host_id": "home" if i < 4 else "b"}
                ],
            ),
            failure=False,
        )
    apply_progress(members["k20"], {"attempt": 1, "compute_status": "WAITING_FOR_SLOT"}, 1.0)
    page = summary_payload({"group_id": "g"}, members, offset=20, limit=10, home_host_id="home")
    assert page["group_id"] == "g" and page["expected"] == 25 and page["done"] == 10
    assert page["counts"][MEMBER_WAITING] == 1 and page["waiting"] == 1
    assert [r["job_key"] for r in page["members"]] == [f"k{i}" for i in range(20, 25)]
    assert page["next_offset"] is None
    assert summary_payload({}, members, offset=0, limit=10)["next_offset"] == 10
    assert (page["artifact_bytes_home"], page["artifact_bytes_elsewhere"]) == (400, 600)
    assert not page["complete"]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["r1", "r2", "r3"]))))
def test_exactly_one_report_is_kept_per_key(reports: list[tuple[str, str]]) -> None:
    members: dict[str, GroupMember] = {}
    dups: list[dict[str, object]] = []
    firsts: dict[str, str] = {}
    for key, rid in reports:
        firsts.setdefault(key, rid)
        outcome = accept_report(members, dups, report(key, rid), failure=False)
        assert (outcome.status == REPORT_ACCEPTED) == (rid == firsts[key])
    assert {k: m.report_id for k, m in members.items()} == firsts
    assert is_complete(members) == bool(members)
