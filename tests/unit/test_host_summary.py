"""The host summary's wire form (jobs.md §1.1, §1.4): compact, coarsely rounded load bodies
that change only on real change, decoded back to jobs.md's names."""

from __future__ import annotations

import dataclasses

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from paglets.remote.host_summary import LoadSummary, decode_load, encode_load, resources_view
from paglets.remote.mesh_wire import Summary, encoded_size

GiB = 1024**3
MEMORY = 64 * GiB
TEMP = 512 * GiB
HOST_ID = "0123456789abcdef0123456789abcdef"

BUSY = LoadSummary(
    free_cpu_cores=13,
    free_memory_bytes=37 * GiB,
    free_temp_bytes=200 * GiB,
    free_gpus=2,
    external_busy_cores=1.3,
    running_jobs=9,
    queue_length=41,
    queued_core_seconds=36_000,
    next_release_seconds=125,
    cpu_percent=87,
    load_per_cpu=1.13,
    accepting=False,
    errors=("gpu",),
    active_count=250,
    inactive_count=1200,
    gpu_memory_used_mb=(30_000, 1_000, 0, 81_000),
    gpu_utilization_percent=(99, 12, 0, 100),
)


def test_a_busy_load_stays_near_100_bytes_as_a_summary() -> None:
    body = encode_load(BUSY, MEMORY, TEMP)
    # The whole summary as it rides a ping: host id, kind, version and the body.
    size = encoded_size(Summary(HOST_ID, "load", (7 << 32) | 12345, body))
    assert size <= 128, (size, body)
    assert len(msgspec.msgpack.encode(body)) < 100


def test_an_idle_load_leaves_defaults_out() -> None:
    body = encode_load(LoadSummary(free_cpu_cores=4, free_memory_bytes=MEMORY // 2), MEMORY, TEMP)
    assert body == {"c": 4, "m": 32, "t": 0, "p": 0, "l": 0}


def test_values_are_rounded_as_jobs_md_says() -> None:
    body = encode_load(BUSY, MEMORY, TEMP)
    assert body["m"] == 37  # 64ths of the total, rounded down
    assert body["p"] == 85  # CPU % in steps of 5
    assert body["l"] == 5  # load per CPU in quarters: 1.13 → 1.25
    assert body["x"] == 5  # external busy cores in quarters: 1.3 → 1.25
    assert body["gm"] == [117, 4, 0, 316]  # 256 MB units
    assert body["gu"] == [100, 10, 0, 100]
    # Small changes do not change the body: nothing new to send.
    nudged = dataclasses.replace(
        BUSY,
        free_memory_bytes=37 * GiB + 100 * 1024**2,
        cpu_percent=86,
        gpu_memory_used_mb=(30_010, 1_000, 0, 81_000),
        gpu_utilization_percent=(98, 12, 0, 100),
    )
    assert encode_load(nudged, MEMORY, TEMP) == body


def test_decode_gives_back_the_rounded_values_with_their_names() -> None:
    decoded = decode_load(encode_load(BUSY, MEMORY, TEMP), MEMORY, TEMP)
    assert decoded.free_memory_bytes == 37 * GiB
    assert decoded.free_temp_bytes == 200 * GiB
    assert decoded.cpu_percent == 85
    assert decoded.load_per_cpu == 1.25
    assert decoded.external_busy_cores == 1.25
    assert decoded.accepting is False
    assert decoded.errors == ("gpu",)
    assert decoded.next_release_seconds == 125
    assert (decoded.active_count, decoded.inactive_count) == (250, 1200)
    assert decoded.gpu_memory_used_mb == (117 * 256, 4 * 256, 0, 316 * 256)


def test_without_the_spec_byte_values_are_unknown() -> None:
    decoded = decode_load(encode_load(BUSY, MEMORY, TEMP), None, None)
    assert decoded.free_memory_bytes is None and decoded.free_temp_bytes is None
    assert decoded.free_cpu_cores == 13


def test_unknown_and_malformed_keys_are_ignored() -> None:
    decoded = decode_load({"c": "many", "zz": 1, "e": "not-a-list", "A": True}, MEMORY, TEMP)
    assert decoded == LoadSummary(free_memory_bytes=None, free_temp_bytes=None)


def test_resources_view_is_flat_with_jobs_md_names() -> None:
    spec = {
        "logical_cpus": 16,
        "job_cpu_ids": list(range(1, 16)),
        "memory_total_bytes": MEMORY,
        "temp_total_bytes": TEMP,
        "gpus": [{"index": 0, "uuid": "GPU-1", "name": "A100", "memory_total_mb": 40960}],
        "platform": "linux",
        "eligible_cpu_ids": list(range(16)),
    }
    view = resources_view(spec, encode_load(BUSY, MEMORY, TEMP), spec_version=3, load_age_s=1.5)
    assert view["logical_cpus"] == 16 and view["job_cores"] == 15
    assert view["free_memory_bytes"] == 37 * GiB and view["free_cpu_cores"] == 13
    assert view["gpus"][0]["name"] == "A100"
    assert view["spec_version"] == 3 and view["load_age_s"] == 1.5
    assert "eligible_cpu_ids" not in view  # long lists stay in the spec
    assert resources_view(None, None) == {}


@given(
    free=st.integers(0, MEMORY),
    temp=st.integers(0, TEMP),
    cores=st.integers(0, 512),
    percent=st.floats(0, 100),
    load=st.floats(0, 64),
)
def test_round_trip_never_promises_more_than_is_free(
    free: int, temp: int, cores: int, percent: float, load: float
) -> None:
    sent = LoadSummary(
        free_cpu_cores=cores,
        free_memory_bytes=free,
        free_temp_bytes=temp,
        cpu_percent=round(percent),
        load_per_cpu=load,
    )
    got = decode_load(encode_load(sent, MEMORY, TEMP), MEMORY, TEMP)
    assert got.free_cpu_cores == cores
    assert got.free_memory_bytes is not None and got.free_temp_bytes is not None
    assert free - MEMORY // 64 < got.free_memory_bytes <= free
    assert temp - TEMP // 64 < got.free_temp_bytes <= temp
    assert abs(got.load_per_cpu - load) <= 0.125
    assert abs(got.cpu_percent - percent) <= 3
