"""Importable job classes for the job-group tests (paglets import classes by name)."""

from __future__ import annotations

from dataclasses import dataclass

from paglets import Message, Paglet, PagletState


@dataclass
class FakeGroupJobState(PagletState):
    """What `submit_compute_job_group` fills in, without the compute runtime."""

    group_id: str = ""
    job_key: str = ""
    collector_agent_id: str = ""
    collector_host_url: str = ""
    collector_host_id: str = ""
    owner: str = ""
    priority: int = 0
    attempt: int = 1
    value: int = 0


class FakeGroupJob(Paglet[FakeGroupJobState]):
    """Answers `report`: sends its own `job_result` to the collector, as a job would."""

    State = FakeGroupJobState

    def handle_message(self, message: Message) -> object:
        if message.kind == "report":
            state = self.state
            proxy = self.context.get_proxy(state.collector_agent_id, state.collector_host_url)
            assert proxy is not None
            return proxy.send(
                Message(
                    "job_result",
                    {
                        "group_id": state.group_id,
                        "job_key": state.job_key,
                        "agent_id": self.agent_id,
                        "host_name": self.context.name,
                        "host_url": self.context.address,
                        "result": {"value": state.value * 2},
                        "report_id": message.get_arg("report_id", self.agent_id),
                        "attempt": state.attempt,
                        "artifacts": [],
                        "usage": {},
                    },
                )
            )
        return self.not_handled()


# -- collecting compute jobs (need the compute runtime) ------------------------------------

from paglets.system.compute_slots import (  # noqa: E402
    CollectingComputeJobPaglet,
    CollectingComputeJobState,
)


@dataclass
class GatedJobState(CollectingComputeJobState):
    """`gate`: a file the job waits for (the test opens it); `fail`: raise at the end."""

    gate: str = ""
    fail: bool = False
    label: str = ""


class GatedJob(CollectingComputeJobPaglet):
    """Writes an output, stages it, waits for the gate file, then returns or raises."""

    State = GatedJobState

    def run_compute_job(self) -> None:
        import time
        from pathlib import Path

        st = self.state
        out = self.context.work_dir() / f"{st.label or 'out'}.txt"
        out.write_text(f"output of {st.label}\n")
        self.report_compute_artifact(out, result={"label": st.label}, move=True)
        deadline = time.monotonic() + 60
        while st.gate and not Path(st.gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # the job's own work: waiting for the test's signal
        if st.fail:
            raise ValueError(f"bundle {st.label} is broken")
