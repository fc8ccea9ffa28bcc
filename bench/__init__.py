"""paglets benchmarks: the figures of docs targets.md, measured.

Run `uv run python -m bench [--quick] [--only a1,b2] [--out bench/results]`. Each row group
runs in a fresh Python process, prints a table (PASS / MISS against its target) and the run
is written as JSON under `bench/results/`. A missed target is reported, never raised; only
an exception inside a benchmark makes the run exit non-zero.

The in-process rows live in `bench.inprocess`; the rows that need real `paglets host`
processes in `bench.network` (latency) and `bench.network_load` (throughput, start-up,
memory), with the host processes managed by `bench.hostprocs` and the multi-sender loads by
`bench.senders`. `--only inprocess` or `--only network` selects either half.
"""
