"""`paglets examples classic NAME` (jobs.md §7): the Aglets classics on a paglets mesh.

Each classic is an `ExampleDriver` (paglets.examples.runner) created on the entry host;
its helpers (paglets.examples.classic_agents) travel, clone and answer, and the driver
prints what happens, line by line, into the entry host's event stream, which the CLI
follows. Everything a classic creates is disposed at the end.

| NAME | shows |
|---|---|
| `hello` | a traveller says hello on every host and comes home |
| `clone-workers` | a prototype clones a worker to every host; the parts add up |
| `finder` | a registry (the Finder) is told where a traveller is; the driver finds it there |
| `itinerary` | an `ItineraryPlan` route over every host, one visit each |
| `master-slave` | a master sends a slave to every other host; each brings back a result |
| `message-patterns` | sync, future, one-way, `ReplySet` and multicast messages |
| `mobility-events` | the hook events of a round trip (with a clone on the way) |
"""

from __future__ import annotations

import time
from typing import Any

from paglets import Message
from paglets.core.itinerary import ItineraryPlan
from paglets.core.messages import ReplySet
from paglets.examples.runner import ExampleDriver, ExampleState

__all__ = [
    "CLASSICS",
    "CloneWorkersExample",
    "FinderExample",
    "HelloExample",
    "ItineraryExample",
    "MasterSlaveExample",
    "MessagePatternsExample",
    "MobilityEventsExample",
    "driver_class",
]

AGENTS = "paglets.examples.classic_agents"
HELPER_STATE = f"{AGENTS}:HelperState"


class _Classic(ExampleDriver):
    """What the classics share: making helpers that know their driver."""

    State = ExampleState

    def helper_state(self, **fields: Any) -> dict[str, Any]:
        return {"driver_id": self.agent_id, "driver_url": self.context.address, **fields}

    def make(
        self, cls: str, state: Any, host_url: str | None = None, *, moving: bool = False
    ) -> Any:
        """Create a helper (here, or on `host_url`) and track it for cleanup (on every
        host when it is `moving`: wherever the end finds it)."""
        proxy = self.context.create_paglet(cls, state, host_url=host_url)
        if moving:
            self.track_everywhere(proxy.get_agent_id())
        else:
            self.track(proxy.get_address(), proxy.get_agent_id())
        return proxy

    def others(self) -> list[Any]:
        """The other online hosts; at least this one when alone (the example still runs)."""
        rest = self.hosts(include_self=False)
        return rest or self.hosts()[:1]


class HelloExample(_Classic):
    """A traveller leaves home, says hello on every other host, and comes back."""

    def run_example(self) -> dict[str, Any]:
        home = self.context.address
        route = [h.url for h in self.others()] + [home]
        names = {h.url: h.name for h in self.hosts()}
        self.say(f"hello: a traveller visits {', '.join(names.get(u, u) for u in route)}")
        traveller = self.make(
            f"{AGENTS}:HelloTraveller", self.helper_state(route=route), moving=True
        )
        stops = []
        for i in range(len(route) + 1):
            stop = self.wait_report(f"stop-{i}")
            stops.append(stop["host"])
            self.say(f"  [{stop['host']}] {stop['text']}")
        self.untrack(traveller.get_agent_id())  # it disposed itself at home
        return {"stops": stops}


class CloneWorkersExample(_Classic):
    """A prototype clones one worker per host; each sums the squares of its share of
    0..N and reports; the driver checks the total against the closed formula."""

    def run_example(self) -> dict[str, Any]:
        from paglets.examples.classic_agents import sum_of_squares

        n = int(self.options.get("n", 200_000))
        hosts = self.hosts()
        prototype = self.make(f"{AGENTS}:CloneWorker", self.helper_state(role="prototype"))
        self.say(f"clone-workers: {len(hosts)} clone(s) share sum(i*i for i < {n})")
        step = -(-n // len(hosts))
        parts = []
        for part, host in enumerate(hosts):
            low, high = part * step, min(n, (part + 1) * step)
            clone = prototype.send(
                Message("clone-to", {"url": host.url, "part": part, "low": low, "high": high}),
                timeout=min(30.0, self.remaining()),
            )
            self.track(clone["url"], clone["agent_id"])
            parts.append((part, clone["agent_id"]))
        total = 0
        for part, agent_id in parts:
            report = self.wait_report(f"part-{part}")
            self.untrack(agent_id)
            total += int(report["sum"])
            self.say(
                f"  clone {part} on {report['host']}: [{report['low']}, {report['high']}) "
                f"-> {report['sum']} in {report['seconds'] * 1000:.1f} ms"
            )
        expected = sum_of_squares(0, n) if n <= 10_000 else (n - 1) * n * (2 * n - 1) // 6
        if total != expected:
            raise ValueError(f"the clones' parts add up to {total}, expected {expected}")
        self.say(f"  total {total} (checked)")
        return {"total": str(total), "clones": len(parts)}


class FinderExample(_Classic):
    """A registry paglet (the Finder) learns where a traveller is at each stop; the
    driver asks it, then talks to the traveller at that address."""

    def run_example(self) -> dict[str, Any]:
        home = self.context.address
        route = [h.url for h in self.others()] + [home]
        registry = self.make(f"{AGENTS}:FinderRegistry", None)
        self.make(  # disposed at the end, wherever it is
            f"{AGENTS}:FinderTraveller",
            self.helper_state(
                route=route,
                data={
                    "name": "traveller",
                    "registry_id": registry.get_agent_id(),
                    "registry_url": registry.get_address(),
                },
            ),
            moving=True,
        )
        self.say(f"finder: registry {registry.get_agent_id()[:12]} on {self.context.name}")
        found = []
        for i in range(len(route) + 1):
            self.wait_report(f"arrived-{i}")
            entry = registry.send(
                Message("lookup", {"name": "traveller"}), timeout=min(10.0, self.remaining())
            )
            proxy = self.context.get_proxy(entry["agent_id"], host_url=entry["url"])
            where = proxy.send(Message("where"), timeout=min(10.0, self.remaining()))
            found.append(where["host"])
            self.say(
                f"  finder says: traveller is on {entry['host']}; it answers from {where['host']}"
            )
            if i < len(route):
                proxy.send(Message("go"), timeout=min(10.0, self.remaining()))
        history = registry.send(Message("history"), timeout=min(10.0, self.remaining()))
        self.say(f"  registrations: {' -> '.join(h['host'] for h in history)}")
        return {"found": found}


class ItineraryExample(_Classic):
    """An `ItineraryPlan` over every other host, then home."""

    def run_example(self) -> dict[str, Any]:
        home = self.context.address
        destinations = [h.url for h in self.others()] + [home]
        plan = ItineraryPlan(destinations=destinations)
        names = {h.url: h.name for h in self.hosts()}
        self.say(f"itinerary: {' -> '.join(names.get(d, d) for d in destinations)}")
        state = self.helper_state(plan=plan)
        traveller = self.make(
            f"{AGENTS}:ItineraryTraveller",
            _typed(f"{AGENTS}:ItineraryState", state),
            moving=True,
        )
        visits = self.wait_report("visits")
        self.untrack(traveller.get_agent_id())
        for visit in visits:
            self.say(
                f"  leg {visit['leg']}: {visit['host']} "
                f"(load {visit['load1']}, {visit['paglets']} paglet(s) there)"
            )
        return {"visits": [v["host"] for v in visits]}


class MasterSlaveExample(_Classic):
    """The master sends one slave to every other host; each slave describes the host it
    visited, comes home and hands the result over."""

    def run_example(self) -> dict[str, Any]:
        home = self.context.address
        targets = self.others()
        self.say(f"master-slave: {len(targets)} slave(s) sent out")
        slaves = []
        for index, host in enumerate(targets):
            slave = self.make(
                f"{AGENTS}:Slave",
                self.helper_state(route=[host.url, home], data={"index": index}),
                moving=True,
            )
            slaves.append(slave.get_agent_id())
        results = []
        for index, agent_id in enumerate(slaves):
            result = self.wait_report(f"slave-{index}")
            self.untrack(agent_id)
            results.append(result)
            self.say(
                f"  slave {index} back from {result['host']}: python {result['python']}, "
                f"{result['cpus']} CPUs, {result['paglets']} paglet(s) there"
            )
        return {"results": results}


class MessagePatternsExample(_Classic):
    """Sync, future, one-way, `ReplySet` and multicast messages to `Echo` paglets."""

    def run_example(self) -> dict[str, Any]:
        hosts = self.hosts()
        echoes = [self.make(f"{AGENTS}:Echo", None, host_url=h.url) for h in hosts]
        local = self.make(f"{AGENTS}:Echo", None)  # a second one here, for the multicast
        first = echoes[-1]
        budget = min(10.0, self.remaining())
        shown: dict[str, Any] = {}

        began = time.perf_counter()
        reply = first.send(Message("echo", {"text": "hi"}), timeout=budget)
        shown["sync"] = reply
        self.say(
            f"sync:     echo from {reply['host']}: {reply['echo']!r} "
            f"({(time.perf_counter() - began) * 1000:.1f} ms)"
        )

        future = first.send_future(Message("slow", {"seconds": 0.2}), timeout=budget)
        self.say("future:   sent 'slow'; doing other things while it runs ...")
        reply = future.get_reply(timeout=budget)
        shown["future"] = reply
        self.say(f"future:   reply from {reply['host']} after {reply['slept']:g}s")

        for n in range(3):
            first.send_oneway(Message("note", {"text": f"note {n}"}))
        notes: list[str] = []
        deadline = time.monotonic() + budget
        while len(notes) < 3 and time.monotonic() < deadline:
            notes = first.send(Message("notes"), timeout=budget)
            if len(notes) < 3:
                time.sleep(0.05)  # one-way messages arrive in their own time
        shown["oneway"] = notes
        self.say(f"one-way:  3 notes sent without replies; the echo holds {notes}")

        replies = ReplySet(
            [
                e.send_future(Message("slow", {"seconds": 0.05 * (i + 1)}))
                for i, e in enumerate(echoes)
            ],
            timeout=budget,
        )
        order = []
        for future_reply in replies:
            value = future_reply.get_reply(timeout=budget)
            order.append(value["host"])
        shown["replyset"] = order
        self.say(f"ReplySet: {len(order)} replies in completion order: {', '.join(order)}")

        pongs = []
        for future_reply in self.multicast(
            "classic-ping", {"n": 1}, include_self=False, timeout=budget
        ):
            try:
                value = future_reply.get_reply(timeout=budget)
            except Exception:
                continue  # a paglet that does not answer this kind
            if isinstance(value, dict) and value.get("pong") == 1:
                pongs.append(value["agent_id"])
        shown["multicast"] = len(pongs)
        self.say(
            f"multicast: 'classic-ping' to this host's subscribers: {len(pongs)} pong(s) "
            f"(echo {local.get_agent_id()[:8]} among them: "
            f"{local.get_agent_id() in pongs})"
        )
        return shown


class MobilityEventsExample(_Classic):
    """The hooks a paglet sees on a round trip, with a clone made on the other host."""

    def run_example(self) -> dict[str, Any]:
        home = self.context.address
        other = self.others()[0]
        self.say(f"mobility-events: {self.context.name} -> {other.name} -> {self.context.name}")
        self.make(  # disposed at the end, wherever it is
            f"{AGENTS}:HookRecorder", self.helper_state(route=[other.url, home]), moving=True
        )
        clone = self.wait_report("clone")
        report = self.wait_report("events")
        for event in report["events"]:
            self.say(f"  {event['hook']:<16} on {event['host']}{_extra(event)}")
        self.say(f"  the clone (made on {clone['host']}) saw:")
        for event in clone["events"]:
            self.say(f"  {event['hook']:<16} on {event['host']}{_extra(event)}")
        return {
            "events": [[e["hook"], e["host"]] for e in report["events"]],
            "clone_events": [[e["hook"], e["host"]] for e in clone["events"]],
        }


def _extra(event: dict[str, Any]) -> str:
    rest = {k: v for k, v in event.items() if k not in ("hook", "host") and v}
    return "" if not rest else "  " + " ".join(f"{k}={v}" for k, v in rest.items())


def _typed(state_class: str, fields: dict[str, Any]) -> Any:
    """A state object of `state_class` (create_paglet takes the object)."""
    import importlib

    module, _, name = state_class.partition(":")
    return getattr(importlib.import_module(module), name)(**fields)


CLASSICS: dict[str, tuple[type[ExampleDriver], str]] = {
    "hello": (HelloExample, "a traveller says hello on every host and comes home"),
    "clone-workers": (CloneWorkersExample, "a prototype clones a worker to every host"),
    "finder": (FinderExample, "a registry paglet follows a traveller"),
    "itinerary": (ItineraryExample, "an ItineraryPlan over every host"),
    "master-slave": (MasterSlaveExample, "slaves go out, do a task, bring results home"),
    "message-patterns": (
        MessagePatternsExample,
        "sync, future, one-way, ReplySet and multicast messages",
    ),
    "mobility-events": (MobilityEventsExample, "the hook events of a round trip"),
}


def driver_class(name: str) -> str:
    """`module:qualname` of the classic `name` (KeyError if unknown)."""
    cls = CLASSICS[name][0]
    return f"{cls.__module__}:{cls.__qualname__}"
