"""The helper paglets of `paglets examples classic NAME` (jobs.md §7: the Aglets classics).

Each classic has a driver (`paglets.examples.classic`) that stays on the entry host and
prints what happens; the paglets here do the travelling, cloning and answering, and tell
the driver about it with `"report"` messages (`Helper.report`). They live at module level
of an importable module because hosts load classes by `module:qualname`.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet
from paglets.core.agent import PagletState
from paglets.core.errors import PagletError
from paglets.core.itinerary import ItineraryPlan

__all__ = [
    "CloneWorker",
    "Echo",
    "FinderRegistry",
    "FinderTraveller",
    "HelloTraveller",
    "Helper",
    "HelperState",
    "HookRecorder",
    "ItineraryState",
    "ItineraryTraveller",
    "Slave",
    "sum_of_squares",
]

REPORT_TIMEOUT = 10.0


@dataclass
class HelperState(PagletState):
    """What every helper carries: where its driver is, a route, and its own data."""

    driver_id: str = ""
    driver_url: str = ""
    role: str = ""
    route: list[str] = field(default_factory=list)  # host URLs, visited in order
    stop: int = 0  # index of the next stop on `route`
    go: int = 0  # "go" messages received (the finder's traveller waits for them)
    data: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


class Helper(Paglet[HelperState]):
    """Base of the helpers: `report()` to the driver, `next_hop()` along the route."""

    State = HelperState

    def report(self, key: str, value: Any) -> None:
        state = self.state
        proxy = self.context.get_proxy(state.driver_id, host_url=state.driver_url)
        if proxy is None:
            raise PagletError(f"the driver {state.driver_id} is gone; nothing to report to")
        proxy.send(Message("report", {"key": key, "value": value}), timeout=REPORT_TIMEOUT)

    def here(self) -> dict[str, Any]:
        return {"host": self.context.name, "url": self.context.address, "at": time.time()}

    def next_hop(self) -> bool:
        """Dispatch to the next stop of the route; False when the route is done."""
        with self.locked_state() as s:
            if s.stop >= len(s.route):
                return False
            target = s.route[s.stop]
            s.stop += 1
        try:
            self.dispatch(target)
        except BaseException:
            with self.locked_state() as s:
                s.stop -= 1
            raise
        return True

    def _dispose_quietly(self) -> None:
        try:
            self.dispose()
        except PagletError:
            pass


# -- hello ---------------------------------------------------------------------------------


class HelloTraveller(Helper):
    """Says hello at every stop of its route (the last stop is home), then reports done."""

    def run(self) -> None:
        state = self.state
        index = state.stop  # stops already made (0 at home, before leaving)
        if index == 0:
            self.report("stop-0", {**self.here(), "text": "Hello! I am leaving home."})
        elif index < len(state.route):
            self.report(
                f"stop-{index}", {**self.here(), "text": f"Hello from {self.context.name}!"}
            )
        else:
            self.report(f"stop-{index}", {**self.here(), "text": "Back home. Goodbye!"})
            self._dispose_quietly()
            return
        self.next_hop()


# -- clone-workers ------------------------------------------------------------------------


def sum_of_squares(low: int, high: int) -> int:
    """sum(i*i for i in range(low, high)), the work the clone workers share."""
    return sum(i * i for i in range(low, high))


class CloneWorker(Helper):
    """The prototype stays home; `"clone-to"` `{url, low, high, part}` makes a clone that
    does that part of the work on `url`, reports it and disposes itself."""

    def handle_message(self, message: Message) -> Any:
        if message.kind != "clone-to":
            return self.not_handled()
        with self.locked_state() as s:
            s.role = "worker"
            s.data = {
                "part": int(message.get_arg("part")),
                "low": int(message.get_arg("low")),
                "high": int(message.get_arg("high")),
            }
        try:
            proxy = self.clone(str(message.get_arg("url")))
        finally:
            with self.locked_state() as s:
                s.role = "prototype"
                s.data = {}
        return {"agent_id": proxy.get_agent_id(), "url": proxy.get_address()}

    def run(self) -> None:
        state = self.state
        if state.role != "worker":
            return
        data = state.data
        began = time.perf_counter()
        total = sum_of_squares(data["low"], data["high"])
        self.report(
            f"part-{data['part']}",
            {
                **self.here(),
                "part": data["part"],
                "low": data["low"],
                "high": data["high"],
                "sum": str(total),  # may exceed 64 bits
                "seconds": time.perf_counter() - began,
                "pid": os.getpid(),
            },
        )
        self._dispose_quietly()


# -- finder --------------------------------------------------------------------------------


@dataclass
class RegistryState(PagletState):
    # name -> {"agent_id", "url", "host", "at"}
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


class FinderRegistry(Paglet[RegistryState]):
    """The Aglets Finder: travellers `"register"` where they are; `"lookup"` tells."""

    State = RegistryState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "register":
            entry = {
                "agent_id": str(message.get_arg("agent_id")),
                "url": str(message.get_arg("url")),
                "host": str(message.get_arg("host")),
                "at": time.time(),
            }
            name = str(message.get_arg("name"))
            self.state.entries[name] = entry
            self.state.history.append({"name": name, **entry})
            return True
        if message.kind == "lookup":
            return self.state.entries.get(str(message.get_arg("name")))
        if message.kind == "history":
            return list(self.state.history)
        return self.not_handled()


class FinderTraveller(Helper):
    """Registers its location with the finder at every stop, tells the driver, and waits
    for `"go"` before moving on (so the driver can find it there); answers `"where"`."""

    def handle_message(self, message: Message) -> Any:
        if message.kind == "where":
            return self.here()
        if message.kind == "go":
            with self.locked_state() as s:
                s.go += 1
            self.notify_all_state_changed()
            return True
        return self.not_handled()

    def run(self) -> None:
        state = self.state
        registry = self.context.get_proxy(
            str(state.data["registry_id"]), host_url=str(state.data["registry_url"])
        )
        assert registry is not None
        registry.send(
            Message(
                "register",
                {
                    "name": state.data.get("name", "traveller"),
                    "agent_id": self.agent_id,
                    "url": self.context.address,
                    "host": self.context.name,
                },
            ),
            timeout=REPORT_TIMEOUT,
        )
        index = state.stop
        self.report(f"arrived-{index}", self.here())
        if index >= len(state.route):
            return  # home again: the driver disposes it
        if not self.wait_state(lambda s: s.go > index, timeout=120.0):
            return  # the driver gave up; it disposes us
        self.next_hop()


# -- itinerary -----------------------------------------------------------------------------


@dataclass
class ItineraryState(HelperState):
    plan: ItineraryPlan = field(default_factory=ItineraryPlan)
    visits: list[dict[str, Any]] = field(default_factory=list)


class ItineraryTraveller(Paglet[ItineraryState]):
    """Follows an `ItineraryPlan` (paglets.core.itinerary): at each destination it notes
    the host and its load, then `plan.dispatch_next(self)`; when the plan is done it
    reports the visits to the driver and disposes itself."""

    State = ItineraryState

    def run(self) -> None:
        state = self.state
        if state.plan.current_location is not None:  # arrived somewhere on the route
            try:
                load = os.getloadavg()[0]
            except OSError:
                load = -1.0
            with self.locked_state() as s:
                s.visits.append(
                    {
                        "host": self.context.name,
                        "url": self.context.address,
                        "leg": len(s.visits) + 1,
                        "load1": round(load, 2),
                        "paglets": self.context.host.health().get("active_count"),
                    }
                )
        with self.locked_state() as s:
            proxy = s.plan.dispatch_next(self)
        if proxy is not None:
            return  # on its way
        driver = self.context.get_proxy(state.driver_id, host_url=state.driver_url)
        assert driver is not None
        driver.send(
            Message("report", {"key": "visits", "value": list(self.state.visits)}),
            timeout=REPORT_TIMEOUT,
        )
        try:
            self.dispose()
        except PagletError:
            pass


# -- master-slave --------------------------------------------------------------------------


class Slave(Helper):
    """Goes to `route[0]`, does its task there (describe the host), comes back home
    (`route[1]`), hands the result to its master and disposes itself."""

    def run(self) -> None:
        state = self.state
        if state.stop == 0:
            self.next_hop()
            return
        if state.stop == 1:
            with self.locked_state() as s:
                s.data["result"] = {
                    "host": self.context.name,
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "pid": os.getpid(),
                    "paglets": self.context.host.health().get("active_count"),
                }
            self.next_hop()
            return
        self.report(f"slave-{state.data['index']}", dict(state.data["result"]))
        self._dispose_quietly()


# -- message-patterns ----------------------------------------------------------------------


@dataclass
class EchoState(PagletState):
    notes: list[str] = field(default_factory=list)


class Echo(Paglet[EchoState]):
    """Answers `"echo"` at once, `"slow"` after `seconds`, records one-way `"note"`s
    (`"notes"` lists them), and answers the multicast `"classic-ping"`."""

    State = EchoState
    SUBSCRIBED_MESSAGES = ("classic-ping",)

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        host = self.context.name
        if kind == "echo":
            return {"host": host, "echo": message.get_arg("text")}
        if kind == "slow":
            seconds = min(5.0, float(message.get_arg("seconds", 0.2)))
            time.sleep(seconds)  # stands for work that takes a while
            return {"host": host, "slept": seconds}
        if kind == "note":
            self.state.notes.append(str(message.get_arg("text")))
            return None
        if kind == "notes":
            return list(self.state.notes)
        if kind == "classic-ping":
            return {"host": host, "agent_id": self.agent_id, "pong": message.get_arg("n")}
        return self.not_handled()


# -- mobility-events -----------------------------------------------------------------------


class HookRecorder(Helper):
    """Writes down every hook it sees with the host it ran on, during a round trip:
    home -> `route[0]` -> home (`route[1]`), with a clone made on the way."""

    def _note(self, hook: str, **extra: Any) -> None:
        self.state.events.append({"hook": hook, "host": self.context.name, **extra})

    def on_creation(self, event: Any) -> None:
        self._note("on_creation")

    def on_dispatching(self, event: Any) -> None:
        self._note("on_dispatching", to=getattr(event, "target_host_name", ""))

    def on_arrival(self, event: Any) -> None:
        self._note(
            "on_arrival",
            came_from=getattr(event, "source_host_name", ""),
            epoch=getattr(event, "epoch", 0),
        )

    def on_cloning(self, event: Any) -> None:
        self._note("on_cloning")

    def on_clone(self, event: Any) -> None:
        self._note("on_clone")
        self.state.role = "clone"

    def on_cloned(self, event: Any) -> None:
        self._note("on_cloned")

    def on_deactivating(self, event: Any) -> None:
        self._note("on_deactivating")

    def on_activation(self, event: Any) -> None:
        self._note("on_activation", reason=str(getattr(event, "reason", "") or ""))

    def run(self) -> None:
        state = self.state
        if state.role == "clone":
            self.report("clone", {"events": list(state.events), **self.here()})
            self._dispose_quietly()
            return
        if state.stop == 1 and not state.data.get("cloned"):
            with self.locked_state() as s:
                s.data["cloned"] = True
            self.clone()  # a copy here, which reports its own view and disposes itself
        if self.next_hop():
            return
        self.report("events", {"events": list(state.events), **self.here()})
