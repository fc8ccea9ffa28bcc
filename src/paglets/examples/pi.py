"""`paglets examples pi --digits N` (jobs.md §7, cli.md §8): digits of pi computed by batch
compute jobs, each holding a `compute-slots` slot on a compute host, streamed in order.

The driver (`PiDriver`, on the entry host) splits the digits `[start, start + digits)` of
pi's decimal expansion ("31415926...", position 0 is the 3) into batches of `batch_size`
and submits them as a job group of `PiBatchJob`s (collector on the entry host). Each job
computes its batch in its job process with `pi_digits` (Machin's formula in fixed-point
integers: pure Python, exact, a few milliseconds for thousands of digits) and reports it.
The driver reads the collector's summary, and as soon as the batches before one are in, it
streams that batch's digits (a `user-info.stream` line of digits; lines starting with `#`
are notes), so the CLI prints the digits in order while later batches still run.

A batch that fails, is lost or times out is re-created from its initial state with the
collector's `retry_failed` (up to `retries` rounds), and the failed copy is disposed.
`max_in_flight` submits at most that many batches at a time (waves of one group each).
`fail_batches` makes those batches fail on their first attempt: a way to see the retry.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from paglets import Message
from paglets.core.errors import PagletError
from paglets.examples.runner import ExampleDriver
from paglets.system.compute_slots import CollectingComputeJobPaglet, CollectingComputeJobState

__all__ = ["PiBatchJob", "PiBatchState", "PiDriver", "pi_digits"]

GUARD_DIGITS = 12
POLL_SECONDS = 0.25
RETRY_STATES = ("failed", "lost", "timed_out")
CANCEL_WAIT = 10.0


def _arctan_inverse(x: int, unity: int) -> int:
    """arctan(1/x) * unity, by its Taylor series in integers."""
    total = term = unity // x
    x2 = x * x
    k = 3
    sign = -1
    while term:
        term //= x2
        total += sign * (term // k)
        sign = -sign
        k += 2
    return total


def pi_digits(start: int, count: int) -> str:
    """Decimal digits `[start, start + count)` of pi ("31415926535..."; position 0 is 3).

    Machin: pi = 16 arctan(1/5) - 4 arctan(1/239), in fixed point with guard digits."""
    if start < 0 or count < 0:
        raise ValueError(f"pi_digits: start and count must be >= 0, got {start}, {count}")
    if count == 0:
        return ""
    digits = start + count
    unity = 10 ** (digits + GUARD_DIGITS)
    pi = 16 * _arctan_inverse(5, unity) - 4 * _arctan_inverse(239, unity)
    text = str(pi // 10**GUARD_DIGITS)
    return text[start:digits]


@dataclass
class PiBatchState(CollectingComputeJobState):
    batch: int = 0
    start: int = 0
    count: int = 0
    digits: str = ""
    fail_first_attempt: bool = False


class PiBatchJob(CollectingComputeJobPaglet):
    """One batch of digits, computed in the job's slot."""

    State = PiBatchState

    def run_compute_job(self) -> None:
        st = self.state
        if st.fail_first_attempt and st.attempt <= 1:
            raise RuntimeError(f"batch {st.batch}: failure injected on attempt {st.attempt}")
        st.digits = pi_digits(st.start, st.count)

    def build_result_payload(self) -> Any:
        st = self.state
        return {"batch": st.batch, "start": st.start, "digits": st.digits}


class PiDriver(ExampleDriver):
    """Options: `start` (0), `digits` (16), `batch_size` (1), `max_in_flight` (0: all),
    `retries` (3), `cores` (1), `mem` (32 MiB), `temp` (0), `fail_batches` ([])."""

    def run_example(self) -> dict[str, Any]:
        opts = self.options
        start = int(opts.get("start", 0))
        total = int(opts.get("digits", 16))
        size = max(1, int(opts.get("batch_size", 1)))
        in_flight = int(opts.get("max_in_flight", 0))
        fail = {int(b) for b in opts.get("fail_batches") or ()}
        batches = [
            (i, start + offset, min(size, total - offset))
            for i, offset in enumerate(range(0, total, size))
        ]
        wave = in_flight if in_flight > 0 else len(batches)
        self.say(
            f"# pi: digits {start}..{start + total - 1} in {len(batches)} batch job(s) of "
            f"{size}" + (f", at most {wave} at a time" if wave < len(batches) else "")
        )
        self.digits: dict[int, str] = {}
        self.ran_on: dict[str, int] = {}
        self.retried = 0
        self.next_batch = 0
        for first in range(0, len(batches), wave):
            self._wave(batches[first : first + wave], fail)
        text = "".join(self.digits[i] for i in range(len(batches)))
        return {
            "start": start,
            "count": total,
            "digits": text,
            "batches": len(batches),
            "retried": self.retried,
            "hosts": dict(self.ran_on),
        }

    def _wave(self, batches: list[tuple[int, int, int]], fail: set[int]) -> None:
        from paglets.system.compute_slots import submit_compute_job_group

        opts = self.options
        states = [
            PiBatchState(
                batch=i,
                start=s,
                count=c,
                fail_first_attempt=i in fail,
                cpu_cores=max(1, int(opts.get("cores", 1))),
                memory_bytes=int(opts.get("mem") or 32 << 20),
                temp_storage_bytes=int(opts.get("temp") or 0),
                estimated_runtime_seconds=1.0,
                wait_for_capable_host=True,
                placement_timeout_seconds=max(1.0, self.remaining()),
                max_attempts=1,  # a failure goes to the driver, which retries the batch
            )
            for i, s, c in batches
        ]
        sub = submit_compute_job_group(
            self.context, PiBatchJob, states, collector_host_url=self.context.address
        )
        collector = sub.collector
        self.track(self.context.address, collector.agent_id)
        keys = {f"{sub.group_id}-{n + 1:04d}": i for n, (i, _s, _c) in enumerate(batches)}
        try:
            self._follow(collector, keys)
        except BaseException:
            self._cancel(collector, keys)
            raise

    def _follow(self, collector: Any, keys: dict[str, int]) -> None:
        retries = int(self.options.get("retries", 3))
        rounds = 0
        while True:
            summary = collector.send(
                Message("summary", {"limit": 100_000, "details": True}),
                timeout=min(10.0, self.remaining()),
            )
            redo = []
            for member in summary.get("members", []):
                batch = keys.get(member["job_key"])
                if batch is None:
                    continue
                if member["state"] == "result" and batch not in self.digits:
                    self.digits[batch] = str((member.get("result") or {}).get("digits", ""))
                    host = member.get("host_name") or "?"
                    self.ran_on[host] = self.ran_on.get(host, 0) + 1
                elif member["state"] in RETRY_STATES:
                    redo.append(member)
            self._stream_ready()
            if all(i in self.digits for i in keys.values()):
                return
            if redo:
                if rounds >= retries:
                    failed = ", ".join(f"{keys[m['job_key']]} ({m.get('error')})" for m in redo)
                    raise PagletError(f"batches failed after {retries} retries: {failed}")
                rounds += 1
                self._retry(collector, redo, keys)
            time.sleep(POLL_SECONDS)  # the collector's summary is polled, on this host
            self.remaining()

    def _cancel(self, collector: Any, keys: dict[str, int]) -> None:
        """The example ends early (timeout, failure): stop the batches still pending, and
        dispose whatever copy is left (the collector goes with the cleanup)."""
        with contextlib.suppress(Exception):
            collector.send(Message("cancel", {"kill_running": True}), timeout=CANCEL_WAIT)
        end = time.monotonic() + CANCEL_WAIT
        summary: dict[str, Any] = {}
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                summary = collector.send(
                    Message("summary", {"limit": 100_000}), timeout=CANCEL_WAIT
                )
                if summary.get("status") == "CANCELLED":
                    break
            time.sleep(POLL_SECONDS)  # the cancel reaches every member in its own time
        for member in summary.get("members", []):
            if member.get("state") != "result" and member.get("agent_id"):
                self.track(self.context.address, member["agent_id"])  # the client follows moves

    def _retry(self, collector: Any, redo: list[dict[str, Any]], keys: dict[str, int]) -> None:
        for member in redo:
            self.say(
                f"# batch {keys[member['job_key']]} {member['state']} on "
                f"{member.get('host_name') or '?'} ({member.get('error') or 'no report'}); "
                "retrying"
            )
            if member.get("agent_id"):  # the failed copy is kept by its host: dispose it
                self.track_everywhere(member["agent_id"])
        reply = collector.send(
            Message(
                "retry_failed",
                {
                    "keys": [m["job_key"] for m in redo],
                    "include_lost": True,
                    "include_timed_out": True,
                },
            ),
            timeout=min(30.0, self.remaining()),
        )
        self.retried += len(reply.get("recreated") or ())
        for error in reply.get("errors") or ():
            self.say(f"# could not retry {error.get('job_key')}: {error.get('error')}")

    def _stream_ready(self) -> None:
        """Stream every batch whose predecessors are all in, in order."""
        while self.next_batch in self.digits:
            self.say(self.digits[self.next_batch])
            self.next_batch += 1
