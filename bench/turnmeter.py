"""`python -m bench.turnmeter host ...`: `paglets host` with the compute scheduler's CPU
metered, for row i1 ("scheduler turn CPU per job").

The runtime keeps no such counter, so this launcher adds one from outside before the
usual CLI runs (the host is otherwise exactly `paglets host`):

* **turns**: every scheduler turn runs under `SlotsRuntime.lock` (one writer: requests,
  releases, ticks, usage folds, status reads, sweeps). The lock is replaced by a
  re-entrant lock that adds the holding thread's CPU time (`time.thread_time()`) from the
  outermost acquire to the last release, and counts the turns.
* **placement**: `candidate_hosts` (ranking the gossip table for a job being placed, and
  the service operation) runs outside the lock; its thread CPU is counted apart.

Every 0.1 s a daemon thread writes the totals as JSON to `<persistence dir>.turns.json`
(beside the host's persistence dir), which the benchmark reads. Metering costs two
`thread_time()` calls per turn (about a microsecond).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MeteredLock", "meter_file", "read_meter"]

WRITE_EVERY = 0.1


class _Totals:
    __slots__ = ("lock", "placement_calls", "placement_cpu", "turn_cpu", "turns")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.turns = 0
        self.turn_cpu = 0.0
        self.placement_calls = 0
        self.placement_cpu = 0.0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "turns": self.turns,
                "turn_cpu_seconds": self.turn_cpu,
                "placement_calls": self.placement_calls,
                "placement_cpu_seconds": self.placement_cpu,
                "written_at": time.time(),
            }


TOTALS = _Totals()


class MeteredLock:
    """A `threading.RLock` that meters the CPU of the outermost hold, per thread."""

    __slots__ = ("_depth", "_lock", "_started")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # only touched by the holder
        self._started = 0.0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self._depth += 1
            if self._depth == 1:
                self._started = time.thread_time()
        return got

    def release(self) -> None:
        if self._depth == 1:
            spent = time.thread_time() - self._started
            with TOTALS.lock:
                TOTALS.turns += 1
                TOTALS.turn_cpu += spent
        self._depth -= 1
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _metered(fn: Callable[..., Any]) -> Callable[..., Any]:
    def placement(*args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.thread_time() - t0
            with TOTALS.lock:
                TOTALS.placement_calls += 1
                TOTALS.placement_cpu += spent

    return placement


def meter_file(persistence_dir: str | Path) -> Path:
    path = Path(persistence_dir)
    return path.with_name(path.name + ".turns.json")


def read_meter(persistence_dir: str | Path) -> dict[str, Any]:
    return json.loads(meter_file(persistence_dir).read_text("utf-8"))


def _install(out: Path) -> None:
    from paglets.system.compute_slots import host_slots, job_flow, service

    original_init = host_slots.SlotsRuntime.__init__

    def init(self: Any, host: Any) -> None:
        original_init(self, host)
        self.lock = MeteredLock()  # before start(): nothing holds the old one yet

    host_slots.SlotsRuntime.__init__ = init  # type: ignore[method-assign]
    job_flow.candidate_hosts = _metered(job_flow.candidate_hosts)  # type: ignore[attr-defined]
    service.candidate_hosts = _metered(service.candidate_hosts)  # type: ignore[attr-defined]

    def write() -> None:
        tmp = out.with_suffix(".tmp")
        while True:
            try:  # the dir appears when the host makes its persistence dir
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(TOTALS.snapshot()), "utf-8")
                os.replace(tmp, out)
            except OSError:
                pass
            time.sleep(WRITE_EVERY)

    threading.Thread(target=write, name="bench-turnmeter", daemon=True).start()


def main() -> None:
    argv = sys.argv[1:]
    if "--persistence-dir" not in argv:
        raise SystemExit("bench.turnmeter: pass --persistence-dir (the meter writes beside it)")
    _install(meter_file(argv[argv.index("--persistence-dir") + 1]))
    from paglets.cli.main import main as paglets_main

    sys.argv[0] = "paglets"
    paglets_main(argv)


if __name__ == "__main__":
    main()
