"""`python -m bench`: run the row groups, print the table, write the run's JSON.

Each group runs in a fresh interpreter (`--child`, internal) so that one group's garbage,
threads and freed-but-kept heap never flatter or burden the next one's figures, memory
figures above all. `--no-isolate` runs them all in this process instead (for profiling).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .compute import GROUPS as COMPUTE_GROUPS
from .harness import Result, git_commit, machine_info
from .inprocess import GROUPS as INPROCESS_GROUPS
from .mesh import GROUPS as MESH_GROUPS
from .network import GROUPS as NETWORK_GROUPS
from .network_load import GROUPS as LOAD_GROUPS

# Every row group, in targets.md's order (a1, a2, ..., g1, g2, h1, h2, i1, i2).
GROUPS = dict(
    sorted(
        {
            **INPROCESS_GROUPS,
            **NETWORK_GROUPS,
            **LOAD_GROUPS,
            **MESH_GROUPS,
            **COMPUTE_GROUPS,
        }.items()
    )
)
# Names for several groups at once in --only.
SETS = {
    "inprocess": [name for name in GROUPS if name in INPROCESS_GROUPS],
    "network": [name for name in GROUPS if name not in INPROCESS_GROUPS],
}

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results"
# A group that runs longer than this is stuck, not slow.
CHILD_TIMEOUT = {True: 300.0, False: 3600.0}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure paglets against targets.md and write the figures as JSON.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, for CI (well under a minute)"
    )
    parser.add_argument(
        "--only",
        default="",
        help=(
            f"comma-separated row groups to run (default all): {', '.join(GROUPS)}; "
            f"or {' / '.join(SETS)} for all groups of that kind"
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="directory for the run's JSON (default bench/results)",
    )
    parser.add_argument(
        "--no-isolate",
        action="store_true",
        help="run every group in this process (for profilers); memory figures get less clean",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _selected(only: str) -> list[str]:
    if not only.strip():
        return list(GROUPS)
    names = [name.strip().lower() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPS and name not in SETS]
    if unknown:
        raise SystemExit(
            f"python -m bench: unknown row group(s) {', '.join(unknown)} in --only; "
            f"choose from {', '.join(GROUPS)} (or {', '.join(SETS)})"
        )
    names = [member for name in names for member in SETS.get(name, [name])]
    return [name for name in GROUPS if name in names]  # table order, not argument order


# -- running groups ------------------------------------------------------------------


def _run_child(name: str, quick: bool) -> list[Result]:
    """Run one group in a fresh interpreter; its results come back through a temp file."""
    with tempfile.TemporaryDirectory(prefix="paglets-bench-child-") as tmp:
        out = Path(tmp, "results.json")
        cmd = [sys.executable, "-m", "bench", "--child", name, "--child-out", str(out)]
        if quick:
            cmd.append("--quick")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        try:
            done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, timeout=CHILD_TIMEOUT[quick])
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"group {name} ran longer than {CHILD_TIMEOUT[quick]:.0f} s and was killed; "
                f"rerun it with --only {name} --no-isolate under py-spy to see where it hangs"
            ) from None
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"group {name} failed in its process (exit {done.returncode}); its traceback is above"
            )
        return [Result.from_json(item) for item in json.loads(out.read_text("utf-8"))]


def _child_main(name: str, out: Path, quick: bool) -> int:
    results = GROUPS[name].run(quick)
    out.write_text(json.dumps([r.to_json() for r in results]), "utf-8")
    return 0


# -- the table -----------------------------------------------------------------------


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    if unit == "ms" and abs(value) < 0.1:
        return f"{value * 1000:.1f} µs"
    return f"{value:.3g} {unit}"


def _verdict(result: Result) -> str:
    met = result.met
    return "info" if met is None else ("PASS" if met else "MISS")


def _table(results: list[Result]) -> str:
    head = ("row", "measurement", "ours (median)", "p95", "target", "")
    rows = [head]
    for r in results:
        target = "-" if r.target is None else f"{r.target.op} {_fmt(r.target.value, r.unit)}"
        rows.append(
            (r.key, r.measurement, _fmt(r.median, r.unit), _fmt(r.p95, r.unit), target, _verdict(r))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    widths[1] = min(widths[1], 72)
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1][: widths[1]].ljust(widths[1])]
        cells += [row[j].rjust(widths[j]) for j in (2, 3, 4)]
        cells.append(row[5])
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.child:
        if args.child not in GROUPS or args.child_out is None:
            raise SystemExit("--child needs a known group and --child-out")
        return _child_main(args.child, args.child_out, args.quick)

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # keep order with the stderr progress
    names = _selected(args.only)
    mode = "quick" if args.quick else "full"
    started = datetime.now(UTC)
    machine = machine_info()
    print(
        f"paglets bench ({mode}): {', '.join(names)} on {machine['cpu_count']} CPUs, "
        f"Python {sys.version.split()[0]}",
        flush=True,
    )
    results: list[Result] = []
    errors: list[dict[str, str]] = []
    timings: dict[str, float] = {}
    t_run = time.perf_counter()
    for name in names:
        print(f"- {name}: {GROUPS[name].title}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            if args.no_isolate:
                results.extend(GROUPS[name].run(args.quick))
            else:
                results.extend(_run_child(name, args.quick))
        except Exception as exc:
            traceback.print_exc()
            errors.append({"group": name, "error": f"{type(exc).__name__}: {exc}"})
        timings[name] = time.perf_counter() - t0
    duration = time.perf_counter() - t_run

    print()
    print(_table(results))
    misses = [r.key for r in results if r.met is False]
    print(
        f"\n{len(results)} figures, {sum(r.met is True for r in results)} PASS, {len(misses)} MISS"
        f"{' (' + ', '.join(misses) + ')' if misses else ''}; {duration:.1f} s"
    )
    for error in errors:
        print(f"ERROR in group {error['group']}: {error['error']}")

    record: dict[str, Any] = {
        "schema": 1,
        "mode": mode,
        "started_at": started.isoformat(),
        "duration_seconds": duration,
        "group_seconds": timings,
        "groups": names,
        "machine": machine,
        "python": sys.version,
        "git": git_commit(REPO_ROOT),
        "argv": sys.argv[1:] if argv is None else argv,
        "results": [r.to_json() for r in results],
        "errors": errors,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{mode}-{os.getpid()}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    print(f"wrote {path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
