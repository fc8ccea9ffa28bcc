"""`make demo` (interim): one host on loopback creates paglets, messages them, puts one to
sleep on disk and wakes it, restarts and finds them all again, then stops by itself."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from paglets import Host, Message
from paglets.examples.counter import Counter, CounterState


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="paglets-demo-") as tmp:
        store = Path(tmp) / "alpha"
        with Host("alpha", persistence_dir=store, mesh_version="demo") as host:
            print(f"host alpha listening at {host.address}")
            counters = [host.create(Counter, CounterState(name=f"c{i}")) for i in range(5)]
            print(f"created {len(counters)} counters")
            for i, proxy in enumerate(counters):
                proxy.send(Message("add", {"n": i + 1}))
            peers = [p.agent_id for p in counters[1:]]
            total = counters[0].send(Message("total", {"peers": peers}))
            print(f"sum over all counters, asked of one of them: {total}")

            sleeper = counters[2]
            sleeper.deactivate()
            print(f"{sleeper.agent_id[:8]} is asleep on disk: active={sleeper.is_active()}")
            count = sleeper.send(Message("add", {"n": 100}))  # a message wakes it
            print(f"a message woke it: active={sleeper.is_active()}, count={count}")
            print(f"its history: {host.get_state(sleeper.agent_id).history}")

            start = time.perf_counter()
            n = 20_000
            for _ in range(n):
                counters[0].send(Message("add"))
            rate = n / (time.perf_counter() - start)
            print(f"{n} synchronous messages at {rate:,.0f} msg/s")
        print("host shut down; every paglet saved")

        with Host("alpha", persistence_dir=store, mesh_version="demo") as host:
            back = host.list_agents()
            print(
                f"restarted: {len(back)} counters back, counts "
                f"{sorted(host.get_state(a['agent_id']).count for a in back)}"
            )
    print(f"demo finished in {time.perf_counter() - started:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
