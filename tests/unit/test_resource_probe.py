"""Sampling this host (jobs.md §1.1-1.2) and the load part built from a sample.

GPUs are read through a stand-in `nvidia-smi` (a small script in tmp_path that prints what
the real one prints), run as a real subprocess with the probe's timeout."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import psutil
import pytest

from paglets.runtime.resource_monitor import base_load, memory_headroom, temp_headroom
from paglets.runtime.resource_probe import (
    CpuMeter,
    GpuProbe,
    GpuSpec,
    automatic_properties,
    eligible_cpu_ids,
    parse_gpu_selection,
    parse_nvidia_smi,
    sample,
)

SMI_OUTPUT = (
    "0, GPU-11111111-aaaa, NVIDIA A100-SXM4-40GB, 40960, 1024, 57\n"
    "1, GPU-22222222-bbbb, Tesla V100, with, commas, 16384, [N/A], [Not Supported]\n"
)


def fake_smi(tmp_path: Path, body: str) -> str:
    """An executable `nvidia-smi` stand-in running `body` (POSIX shell)."""
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def printing(tmp_path: Path, output: str = SMI_OUTPUT) -> str:
    data = tmp_path / "smi.txt"
    data.write_text(output)
    return fake_smi(
        tmp_path,
        f'case "$1" in --query-gpu=driver_version) echo 550.54.15 ;; *) cat "{data}" ;; esac\n',
    )


# -- the sample ---------------------------------------------------------------------------


def test_sample_describes_this_machine(tmp_path: Path) -> None:
    resources = sample(tmp_path / "work", cpu_interval=0.05)
    spec, load = resources.spec, resources.load
    eligible, _ = eligible_cpu_ids()
    assert spec.eligible_cpu_ids == eligible and spec.job_cpu_ids == eligible
    assert spec.logical_cpus == psutil.cpu_count(logical=True)
    assert spec.memory_total_bytes == psutil.virtual_memory().total
    assert 0 < load.memory_available_bytes <= spec.memory_total_bytes
    assert spec.temp_path == str(tmp_path / "work")  # not created: its volume is measured
    assert spec.temp_total_bytes == psutil.disk_usage(str(tmp_path)).total
    assert 0 <= load.temp_free_bytes <= spec.temp_total_bytes
    assert 0.0 <= load.cpu_percent <= 100.0
    assert 0.0 <= load.busy_cores <= len(eligible)
    assert len(load.load_average) == 3 and load.load_per_cpu >= 0
    assert spec.gpus == () and load.errors == ()
    assert spec.platform == sys.platform and spec.python_version.startswith("3.")


def test_reserved_cores_are_the_lowest_eligible_ones(tmp_path: Path) -> None:
    eligible, _ = eligible_cpu_ids()
    resources = sample(tmp_path, reserved_cores=1, cpu=CpuMeter())
    if len(eligible) > 1:
        assert resources.spec.job_cpu_ids == eligible[1:]
    else:  # never all of them: one CPU stays usable
        assert resources.spec.job_cpu_ids == eligible


def test_the_load_part_keeps_headroom_and_counts_external_cores(tmp_path: Path) -> None:
    resources = sample(tmp_path, cpu=CpuMeter())
    spec, load = resources.spec, resources.load
    summary = base_load(resources, external_busy_cores=1.1)
    assert summary.external_busy_cores == 1.0  # quarters
    assert summary.free_cpu_cores == max(0, len(spec.job_cpu_ids) - 1)
    assert summary.free_memory_bytes == max(
        0, load.memory_available_bytes - memory_headroom(spec.memory_total_bytes)
    )
    assert summary.free_temp_bytes == max(
        0, load.temp_free_bytes - temp_headroom(spec.temp_total_bytes)
    )
    assert memory_headroom(64 * 1024**3) == 4 * 1024**3  # min(10 %, 4 GiB)
    assert memory_headroom(8 * 1024**3) == 8 * 1024**3 // 10
    assert summary.accepting and base_load(resources, 0.0, accepting=False).accepting is False


def test_automatic_properties_name_python_paglets_os_and_arch() -> None:
    import platform

    import paglets

    props = automatic_properties()
    assert props["python"] == platform.python_version()
    assert props["paglets"] == paglets.__version__
    assert props["os"] == sys.platform and props["arch"]
    props["python"] = "changed"  # a copy: the cache is not changed by its callers
    assert automatic_properties()["python"] == platform.python_version()


# -- GPUs ---------------------------------------------------------------------------------


def test_nvidia_smi_output_is_parsed_from_both_ends() -> None:
    specs, usage = parse_nvidia_smi(SMI_OUTPUT + "garbage line\n\n")
    assert specs == (
        GpuSpec(0, "GPU-11111111-aaaa", "NVIDIA A100-SXM4-40GB", 40960),
        GpuSpec(1, "GPU-22222222-bbbb", "Tesla V100, with, commas", 16384),
    )
    assert [(u.memory_used_mb, u.utilization_percent) for u in usage] == [(1024, 57), (0, 0)]


def test_no_nvidia_smi_means_no_gpus_and_no_error(tmp_path: Path) -> None:
    probe = GpuProbe(command=str(tmp_path / "missing-nvidia-smi"))
    reading = probe.poll()
    assert reading.gpus == () and reading.error is None and reading.present is False
    probe.start()  # nothing to run: no thread
    probe.stop()
    assert sample(tmp_path, gpu=probe, cpu=CpuMeter()).load.errors == ()


@pytest.mark.skipif(os.name != "posix", reason="the stand-in is a shell script")
def test_a_probe_reads_devices_usage_and_the_driver(tmp_path: Path) -> None:
    probe = GpuProbe(command=printing(tmp_path), use_environment=False)
    reading = probe.poll()
    assert [g.index for g in reading.gpus] == [0, 1]
    assert reading.usage[0].utilization_percent == 57
    assert reading.driver_version == "550.54.15" and reading.error is None
    resources = sample(tmp_path, gpu=probe, cpu=CpuMeter())
    assert resources.spec.gpus == reading.gpus
    assert base_load(resources, 0.0).free_gpus == 2


@pytest.mark.skipif(os.name != "posix", reason="the stand-in is a shell script")
@pytest.mark.parametrize(
    ("selection", "visible", "indices"),
    [
        ("none", None, []),
        ("1", None, [1]),
        ("GPU-11111111", None, [0]),  # a UUID prefix of 8+ characters
        ("auto", "1", [1]),  # the host's CUDA_VISIBLE_DEVICES limits what is offered
        ("0,1", "GPU-22222222-bbbb", [1]),
        ("auto", "", []),
        ("auto", "0,-1,1", [0]),  # CUDA stops at the first entry it cannot read
    ],
)
def test_gpus_and_cuda_visible_devices_limit_what_is_offered(
    tmp_path: Path, selection: str, visible: str | None, indices: list[int]
) -> None:
    probe = GpuProbe(
        selection, command=printing(tmp_path), cuda_visible_devices=visible, use_environment=False
    )
    assert [g.index for g in probe.poll().gpus] == indices


@pytest.mark.skipif(os.name != "posix", reason="the stand-in is a shell script")
def test_a_failing_probe_keeps_the_devices_and_reports_gpu(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    data = tmp_path / "smi.txt"
    data.write_text(SMI_OUTPUT)
    command = fake_smi(
        tmp_path,
        f'if [ -e "{flag}" ]; then echo "NVIDIA-SMI has failed" >&2; exit 9; fi\ncat "{data}"\n',
    )
    probe = GpuProbe(command=command, use_environment=False)
    assert len(probe.poll().gpus) == 2
    flag.touch()
    reading = probe.poll()
    assert len(reading.gpus) == 2  # running leases go on
    assert reading.error is not None and "NVIDIA-SMI has failed" in reading.error
    resources = sample(tmp_path, gpu=probe, cpu=CpuMeter())
    assert "gpu" in resources.load.errors
    assert base_load(resources, 0.0).free_gpus == 0  # no new GPU lease until it recovers


@pytest.mark.skipif(os.name != "posix", reason="the stand-in is a shell script")
def test_a_hanging_probe_times_out(tmp_path: Path) -> None:
    probe = GpuProbe(command=fake_smi(tmp_path, "exec sleep 30\n"), timeout=0.3)
    reading = probe.poll()
    assert reading.error is not None and "timed out" in reading.error


@pytest.mark.skipif(os.name != "posix", reason="the stand-in is a shell script")
def test_the_probe_thread_polls_at_start(tmp_path: Path) -> None:
    from support.waiting import wait_until

    probe = GpuProbe(command=printing(tmp_path), use_environment=False, interval=60)
    probe.start()
    try:
        wait_until(lambda: len(probe.latest.gpus) == 2, timeout=10)
    finally:
        probe.stop()


@pytest.mark.parametrize("text", ["0,", "gpu 0", "0;1", ","])
def test_a_bad_gpus_value_names_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--gpus"):
        parse_gpu_selection(text)


def test_gpu_selection_values() -> None:
    assert parse_gpu_selection(None).mode == "auto"
    assert parse_gpu_selection("AUTO").mode == "auto"
    assert parse_gpu_selection("None").mode == "none"
    assert parse_gpu_selection(" 0, 2 ").items == ("0", "2")
