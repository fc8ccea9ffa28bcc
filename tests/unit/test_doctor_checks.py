"""The checks of `paglets doctor` (paglets.tooling.doctor) on hand-made surveys: one test
per kind of fault, and the healthy case. The end-to-end runs are in
tests/e2e/test_doctor.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from paglets.tooling.doctor import (
    FAIL,
    JOBS_MISSING,
    PASS,
    SKIP,
    WARN,
    HostFacts,
    JobsView,
    Survey,
    check_code,
    check_collector,
    check_groups,
    check_hosts,
    check_imports,
    check_placement,
    check_storage,
    check_tags,
    check_versions,
    run_checks,
    worst,
)

ENTRY = "http://127.0.0.1:8765"
GiB = 1024**3
HEALTH = {
    "artifacts": {"quota_bytes": 10 * GiB, "max_artifact_bytes": GiB, "disk_free_bytes": 50 * GiB}
}


def host(name: str, **kw: Any) -> HostFacts:
    kw.setdefault("url", ENTRY if kw.get("entry") else f"http://127.0.0.1:{8766 + len(name)}")
    kw.setdefault("code_version", "dev")
    kw.setdefault("health", HEALTH)
    return HostFacts(name=name, **kw)


def survey(*others: HostFacts, **kw: Any) -> Survey:
    alpha = kw.pop("alpha", None) or host("alpha", entry=True)
    return Survey(entry_url=ENTRY, hosts=(alpha, *others), **kw)


def result(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "ok": True, "error": None, **kw}


def test_a_healthy_mesh_passes_or_skips_everything() -> None:
    checks = run_checks(survey(host("beta", tags=("linux",))))
    assert [(c.name, c.status) for c in checks] == [
        ("hosts", PASS),
        ("mesh-version", PASS),
        ("imports", SKIP),
        ("code", SKIP),
        ("tags", PASS),
        ("placement", SKIP),
        ("groups", SKIP),
        ("storage", PASS),
        ("collector", SKIP),
    ]
    assert checks[5].detail == JOBS_MISSING
    assert worst(checks) == PASS


def test_dead_silent_absent_and_left_hosts() -> None:
    check = check_hosts(
        survey(
            host("beta", status="dead", health=None, last_heard_age_s=12.0),
            host("gamma", health=None, health_error="connection refused"),
            host("delta", status="left", health=None),
            HostFacts(
                name="http://127.0.0.1:9",
                url="http://127.0.0.1:9",
                status="absent",
                health_error="no paglets host",
            ),
        )
    )
    assert check.status == FAIL
    assert check.hosts == ("beta", "gamma", "http://127.0.0.1:9")
    assert check.notes[0] == "beta (http://127.0.0.1:8770) is dead, last heard 12s ago"
    assert "start beta again: paglets host --name beta --port 8770 --mesh-version dev" in check.fix
    assert "delta (http://127.0.0.1:8771) left the mesh (stopped)" in check.notes
    only_left = check_hosts(survey(host("delta", status="left", health=None)))
    assert (only_left.status, only_left.hosts) == (WARN, ("delta",))
    lonely = check_hosts(survey(mesh=False))
    assert lonely.status == PASS and "--no-mesh" in lonely.detail


def test_versions_name_both_values_and_other_incompatibilities() -> None:
    check = check_versions(
        survey(
            host("beta", code_version="other", incompatible_reason="code_version differs"),
            host("gamma", incompatible_reason="wire protocol 2 differs from this host's 3"),
            host("old", code_version="other", status="dead"),  # not running: not compared
        )
    )
    assert check.status == FAIL and check.hosts == ("beta", "gamma")
    assert "beta runs mesh version 'other', alpha (entry) runs 'dev'" in check.detail
    assert "gamma is incompatible: wire protocol 2" in check.detail
    assert check.fix.startswith("restart beta, gamma with --mesh-version dev")


def test_imports_fail_with_the_seed_steps_for_the_first_failure() -> None:
    reports = (
        {"host": "alpha", "url": ENTRY, "results": [result("app:Job"), result("app:JobState")]},
        {
            "host": "beta",
            "url": "http://b:8765",
            "results": [
                result(
                    "app:Job",
                    ok=False,
                    error_type="ClassImportError",
                    error="cannot import app:Job on host 'beta': No module named 'app'",
                )
            ],
        },
        {"host": "gamma", "url": "http://c:8765", "error": {"error": "timed out"}},
    )
    check = check_imports(survey(classes=("app:Job",), imports=reports))
    assert check.status == FAIL and check.hosts == ("beta", "gamma")
    assert check.notes == (
        "beta cannot import app:Job: ClassImportError: cannot import app:Job on host 'beta': "
        "No module named 'app'",
        "gamma could not be asked: timed out",
    )
    assert (
        'on beta (http://b:8765): 1. the class path is app:Job; 2. run there: uv run python -c "from app import Job; print(Job)"'
        in check.fix
    )
    good = check_imports(survey(classes=("app:Job",), imports=reports[:1]))
    assert (good.status, good.detail) == (PASS, "alpha import app:Job, app:JobState")


def test_code_warns_on_other_versions_and_modules_newer_than_the_host() -> None:
    def report(name: str, version: str, mtime: float) -> dict[str, Any]:
        return {
            "host": name,
            "answered_at": 1000.0,
            "started_at_age_s": 100.0,  # started at 900
            "results": [
                result(
                    "app:Job",
                    distribution="app",
                    version=version,
                    module_mtime=mtime,
                    module_file=f"/{name}/app.py",
                )
            ],
        }

    same = check_code(survey(classes=("app:Job",), imports=(report("alpha", "1", 800.0),)))
    assert same.status == PASS
    check = check_code(
        survey(
            classes=("app:Job",), imports=(report("alpha", "1", 800.0), report("beta", "2", 950.0))
        )
    )
    assert check.status == WARN and check.hosts == ("alpha", "beta")
    assert check.notes == (
        "app:Job comes from app 1 on alpha; app 2 on beta",
        "beta: /beta/app.py changed after the host started",
    )
    assert "restart beta" in check.fix


def test_tags_expected_missing_and_none_at_all() -> None:
    tagged = survey(
        host("beta", tags=("linux", "gpu")), host("dead", tags=("collector",), status="dead")
    )
    assert check_tags(tagged).detail == "gpu (beta); linux (beta)"
    missing = check_tags(dataclasses.replace(tagged, expect_tags=("gpu", "collector")))
    assert missing.status == FAIL
    assert missing.detail.startswith("no running host advertises 'collector'")
    assert missing.fix.startswith("add --tag collector to the paglets host command")
    assert check_tags(survey(host("beta"))).status == WARN


def test_placement_and_groups_from_the_jobs_views() -> None:
    """The documents of `paglets jobs hosts --json` and `jobs groups --group G --json`."""
    rejected = {
        "host": "beta",
        "reasons": [{"code": "cores", "message": "needs 64 cores, has 8"}],
    }
    group = {
        "group_id": "g1",
        "status": "ACTIVE",
        "collector_host_name": "beta",
        "home_host_name": "alpha",
        "return_home_when_complete": True,
    }
    jobs = {
        "hosts": JobsView(1, {"candidates": [], "rejected": [rejected], "selected": None}),
        "groups": JobsView(0, group),
    }
    s = survey(host("beta"), jobs=jobs, needs=("--cores", "64"), group="g1")
    placement = check_placement(s)
    assert placement.status == FAIL and placement.detail == "no candidate host for --cores 64"
    assert placement.notes == ("beta: needs 64 cores, has 8",)
    fits = {"candidates": [{"host_id": "b1", "host_name": "beta"}], "rejected": []}
    ok = check_placement(dataclasses.replace(s, jobs={"hosts": JobsView(0, fits)}))
    assert (ok.status, ok.detail) == (PASS, "1 candidate host(s) for --cores 64: beta")
    assert check_groups(s).detail == "group g1: ACTIVE, collector on beta, home alpha"
    lost = check_groups(
        dataclasses.replace(s, jobs={"groups": JobsView(1, None, "no collector for group 'g1'")})
    )
    assert lost.status == FAIL and "'g1' is not visible" in lost.detail
    everything = {"groups": [group], "errors": [{"host": "http://c:8765", "error": "timed out"}]}
    listed = check_groups(
        dataclasses.replace(s, group=None, jobs={"groups": JobsView(1, everything)})
    )
    assert listed.status == PASS and listed.notes == ("no answer from http://c:8765: timed out",)
    broken = check_placement(dataclasses.replace(s, jobs={"hosts": JobsView(2, None, "bad --mem")}))
    assert broken.status == FAIL and "could not run: bad --mem" in broken.detail


def test_a_host_whose_summary_has_not_arrived_is_a_warning_not_a_failure() -> None:
    waiting = {
        "host": "beta",
        "reasons": [{"code": "no-summary", "message": "no resource summary heard yet"}],
    }
    itself = {"host": "alpha", "reasons": [{"code": "self", "message": "this host is excluded"}]}
    view = JobsView(1, {"candidates": [], "rejected": [itself, waiting], "selected": None})
    s = survey(host("beta"), jobs={"hosts": view})
    placement = check_placement(s)
    assert placement.status == WARN and "has not sent its resource summary" in placement.detail
    assert placement.fix is not None and "again" in placement.fix
    only_self = JobsView(1, {"candidates": [], "rejected": [itself], "selected": None})
    assert check_placement(dataclasses.replace(s, jobs={"hosts": only_self})).status == FAIL


def test_storage_room_for_the_expected_result_and_low_disk() -> None:
    s = survey(host("beta"))
    assert check_storage(s).status == PASS
    big = check_storage(dataclasses.replace(s, result_size=2 * GiB))  # over max_artifact_bytes
    assert big.status == FAIL and big.detail == "no host can store a result of 2 GiB"
    small = check_storage(dataclasses.replace(s, result_size=GiB // 2))
    assert (small.status, small.detail) == (PASS, "alpha, beta can store a result of 512 MiB")
    tight = {"artifacts": {"quota_bytes": 10 * GiB, "disk_free_bytes": GiB // 2}}
    low = check_storage(survey(host("beta", health=tight)))
    assert low.status == WARN and low.hosts == ("beta",)


def test_a_laptop_collector_without_return_home_warns() -> None:
    jobs: dict[str, JobsView] = {}
    laptop = host("alpha", entry=True, tags=("laptop",))
    warned = check_collector(survey(alpha=laptop, jobs=jobs))
    assert warned.status == WARN and warned.hosts == ("alpha",)
    assert "tagged laptop, without return home" in warned.detail
    assert check_collector(survey(alpha=laptop, jobs=jobs, return_home=True)).status == PASS
    with_collector = survey(host("beta", tags=("collector",)), alpha=laptop, jobs=jobs)
    assert check_collector(with_collector).detail == "collectors go to beta"
    group = {
        "groups": JobsView(
            0, {"group_id": "g", "collector_host_name": "alpha", "return_home_when_complete": False}
        )
    }
    assert check_collector(survey(alpha=laptop, jobs=group, group="g")).status == WARN
    assert check_collector(survey(alpha=laptop)).status == SKIP
