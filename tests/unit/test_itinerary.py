"""Unit tests for paglets.core.itinerary: plans, tasks and the agent mixin."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

from paglets.core.itinerary import (
    ItineraryAgentMixin,
    ItineraryPlan,
    ItineraryTask,
    TaskItineraryPlan,
)


class FakeAgent:
    """Records dispatches; can be told to fail. `dispatch` is the only thing a plan calls."""

    def __init__(self, plan: ItineraryPlan | None = None, fail: bool = False) -> None:
        self.plan = plan
        self.fail = fail
        self.dispatched: list[str] = []
        self.seen_during_dispatch: list[tuple[int, str | None, list[str], int]] = []

    def dispatch(self, dest: str) -> str:
        if self.plan is not None:
            p = self.plan
            self.seen_during_dispatch.append(
                (p.current_index, p.current_location, list(p.visited_destinations), p.loop_count)
            )
        if self.fail:
            raise ConnectionError(f"cannot reach {dest}")
        self.dispatched.append(dest)
        return f"proxy@{dest}"


def _fields(plan: ItineraryPlan) -> dict[str, Any]:
    return {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}


# -- construction --------------------------------------------------------------------------


def test_defaults() -> None:
    plan = ItineraryPlan(["a", "b"])
    assert plan.destinations == ["a", "b"]
    assert plan.current_index == 0
    assert plan.current_location is None
    assert plan.visited_destinations == []
    assert plan.mutable and not plan.circular and not plan.completed
    assert plan.loop_count == 0
    assert ItineraryPlan().destinations == []


def test_plans_are_slotted_and_mutable() -> None:
    plan = ItineraryPlan(["a"])
    assert not hasattr(plan, "__dict__")
    plan.circular = True
    assert plan.circular


def test_validation() -> None:
    with pytest.raises(TypeError, match="destination"):
        ItineraryPlan(["a", ""])
    with pytest.raises(TypeError, match="destination"):
        ItineraryPlan(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="current_index"):
        ItineraryPlan(["a"], current_index=2)
    assert ItineraryPlan(("a", "b")).destinations == ["a", "b"]  # type: ignore[arg-type]


# -- dispatch_next -------------------------------------------------------------------------


def test_dispatch_next_advances_before_dispatching() -> None:
    plan = ItineraryPlan(["a", "b"])
    agent = FakeAgent(plan)
    assert plan.next_destination() == "a"
    assert plan.dispatch_next(agent) == "proxy@a"
    assert plan.dispatch_next(agent) == "proxy@b"
    assert agent.dispatched == ["a", "b"]
    # The state seen while moving already shows the new position.
    assert agent.seen_during_dispatch == [(1, "a", ["a"], 0), (2, "b", ["a", "b"], 0)]
    assert not plan.completed
    assert plan.next_destination() is None
    assert plan.dispatch_next(agent) is None
    assert plan.completed and plan.is_completed()
    assert agent.dispatched == ["a", "b"]


def test_empty_plan_completes_at_once() -> None:
    plan = ItineraryPlan()
    assert plan.dispatch_next(FakeAgent()) is None
    assert plan.completed


def test_failed_dispatch_restores_every_field() -> None:
    plan = ItineraryPlan(["a", "b"])
    plan.dispatch_next(FakeAgent())
    before = _fields(plan)
    visited = plan.visited_destinations
    with pytest.raises(ConnectionError, match="cannot reach b"):
        plan.dispatch_next(FakeAgent(fail=True))
    assert _fields(plan) == before
    assert plan.visited_destinations is visited and visited == ["a"]
    assert plan.dispatch_next(FakeAgent()) == "proxy@b"


def test_failed_dispatch_on_a_loop_restart_restores_the_loop() -> None:
    plan = ItineraryPlan(["a", "b"], circular=True)
    agent = FakeAgent()
    plan.dispatch_next(agent)
    plan.dispatch_next(agent)
    before = _fields(plan)
    with pytest.raises(ConnectionError):
        plan.dispatch_next(FakeAgent(fail=True))
    assert _fields(plan) == before
    assert plan.loop_count == 0 and plan.visited_destinations == ["a", "b"]


def test_circular_plan_keeps_only_the_current_loop() -> None:
    plan = ItineraryPlan(["a", "b", "c"], circular=True)
    agent = FakeAgent(plan)
    for _ in range(7):
        assert plan.dispatch_next(agent) is not None
    assert agent.dispatched == ["a", "b", "c", "a", "b", "c", "a"]
    assert plan.loop_count == 2
    assert plan.visited_destinations == ["a"]
    assert plan.current_location == "a"
    assert not plan.completed
    assert agent.seen_during_dispatch[3] == (1, "a", ["a"], 1)
    assert plan.next_destination() == "b"


def test_circular_empty_plan_completes() -> None:
    plan = ItineraryPlan(circular=True)
    assert plan.dispatch_next(FakeAgent()) is None and plan.completed


def test_skip_next() -> None:
    plan = ItineraryPlan(["a", "b", "c"])
    assert plan.skip_next() == "a"
    assert plan.dispatch_next(FakeAgent()) == "proxy@b"
    assert plan.visited_destinations == ["b"]
    assert plan.skip_next() == "c"
    assert plan.skip_next() is None
    circular = ItineraryPlan(["a", "b"], circular=True, current_index=2)
    assert circular.skip_next() == "a"
    assert circular.loop_count == 1 and circular.next_destination() == "b"


def test_adding_after_completion_allows_more_hops() -> None:
    plan = ItineraryPlan(["a"])
    agent = FakeAgent()
    plan.dispatch_next(agent)
    assert plan.dispatch_next(agent) is None and plan.completed
    plan.add_next_destination("b")
    assert plan.dispatch_next(agent) == "proxy@b"
    assert not plan.completed


# -- editing -------------------------------------------------------------------------------


def test_add_next_destination_defaults_to_the_very_next() -> None:
    plan = ItineraryPlan(["a", "b", "c"])
    plan.dispatch_next(FakeAgent())  # at a, next is b
    assert plan.add_next_destination("x") is True
    assert plan.destinations == ["a", "x", "b", "c"]
    assert plan.next_destination() == "x"


def test_add_next_destination_at_index_and_after() -> None:
    plan = ItineraryPlan(["a", "b", "c"])
    plan.dispatch_next(FakeAgent())
    plan.dispatch_next(FakeAgent())  # at b, next is c (index 2)
    plan.add_next_destination("early", index=0)  # in the past: the index shifts
    assert plan.destinations == ["early", "a", "b", "c"]
    assert plan.current_index == 3 and plan.next_destination() == "c"
    plan.add_next_destination("end", index=4)
    assert plan.destinations[-1] == "end"
    plan.add_next_destination("after-b", after="b")
    assert plan.destinations == ["early", "a", "b", "after-b", "c", "end"]
    assert plan.next_destination() == "after-b"
    with pytest.raises(ValueError, match="'zzz' is not in this itinerary"):
        plan.add_next_destination("x", after="zzz")
    with pytest.raises(IndexError, match="index"):
        plan.add_next_destination("x", index=99)
    with pytest.raises(TypeError, match="either index= or after="):
        plan.add_next_destination("x", index=0, after="a")


def test_after_prefers_an_occurrence_ahead() -> None:
    plan = ItineraryPlan(["a", "b", "a", "c"], current_index=2)
    plan.add_next_destination("x", after="a")
    assert plan.destinations == ["a", "b", "a", "x", "c"]
    assert plan.current_index == 2


def test_duplicates() -> None:
    plan = ItineraryPlan(["a", "b"])
    assert plan.add_next_destination("a") is True
    assert plan.destinations == ["a", "a", "b"]
    assert plan.add_next_destination("b", allow_duplicate=False) is False
    assert plan.add_next_destination_if_not_duplicated("a") is False
    assert plan.add_next_destination_if_not_duplicated("c", index=3) is True
    assert plan.destinations == ["a", "a", "b", "c"]


def test_remove_destination() -> None:
    plan = ItineraryPlan(["a", "b", "a", "c"])
    plan.dispatch_next(FakeAgent())  # visited a (index 0)
    assert plan.remove_destination("a") is True  # the one ahead goes
    assert plan.destinations == ["a", "b", "c"] and plan.current_index == 1
    assert plan.remove_destination("a") is True  # only the visited one left
    assert plan.destinations == ["b", "c"] and plan.current_index == 0
    assert plan.next_destination() == "b"
    assert plan.remove_destination("zzz") is False


def test_remove_destination_at() -> None:
    plan = ItineraryPlan(["a", "b", "c"], current_index=2)
    assert plan.remove_destination_at(0) == "a"
    assert plan.current_index == 1 and plan.next_destination() == "c"
    assert plan.remove_destination_at(1) == "c"
    assert plan.current_index == 1 and plan.next_destination() is None
    with pytest.raises(IndexError, match="index"):
        plan.remove_destination_at(5)


def test_immutable_plans_refuse_edits() -> None:
    plan = ItineraryPlan(["a"])
    plan.set_immutable()
    assert not plan.is_mutable()
    for edit in (
        lambda: plan.add_next_destination("b"),
        lambda: plan.add_next_destination_if_not_duplicated("b"),
        lambda: plan.remove_destination("a"),
        lambda: plan.remove_destination_at(0),
    ):
        with pytest.raises(ValueError, match="immutable"):
            edit()
    assert plan.destinations == ["a"]
    assert plan.dispatch_next(FakeAgent()) == "proxy@a"  # moving is still allowed


def test_accessors_return_copies() -> None:
    plan = ItineraryPlan(["a", "b", "c"], circular=True)
    plan.dispatch_next(FakeAgent())
    assert plan.get_destinations() == ["a", "b", "c"]
    plan.get_destinations().append("x")
    plan.get_visited_destinations().append("x")
    assert plan.destinations == ["a", "b", "c"] and plan.visited_destinations == ["a"]
    assert plan.get_destination(1) == "b"
    assert plan.get_destination_count() == 3
    assert plan.get_current_index() == 1
    assert plan.get_current_location() == "a"
    assert plan.get_remaining_destinations() == ["b", "c"]
    assert plan.get_loop_count() == 0
    assert plan.is_circular()
    assert plan.has_next_destination()
    plan.current_index = 3
    assert plan.get_remaining_destinations() == ["a", "b", "c"]  # next loop
    linear = ItineraryPlan(["a"], current_index=1)
    assert linear.get_remaining_destinations() == []
    assert not linear.has_next_destination()


# -- state encoding ------------------------------------------------------------------------


@dataclasses.dataclass
class TravelState:
    itinerary: TaskItineraryPlan = dataclasses.field(default_factory=TaskItineraryPlan)
    found: list[str] = dataclasses.field(default_factory=list)


def test_plans_round_trip_through_msgspec_inside_a_state() -> None:
    plan = TaskItineraryPlan(["a", "b"], circular=True)
    plan.add_task("a", ItineraryTask("scan", "default", {"depth": 2}))
    plan.add_default_task(ItineraryTask("report", "dispatch"))
    plan.dispatch_next(FakeAgent())
    state = TravelState(plan, ["x"])
    for module in (msgspec.msgpack, msgspec.json):
        back = module.decode(module.encode(state), type=TravelState)
        assert back == state
    back = msgspec.json.decode(msgspec.json.encode(ItineraryPlan(["a"])), type=ItineraryPlan)
    assert back == ItineraryPlan(["a"])


# -- tasks ---------------------------------------------------------------------------------


def test_task_validation() -> None:
    task = ItineraryTask("t")
    assert (task.execution, task.args) == ("arrival", {})
    with pytest.raises(ValueError, match="execution must be one of"):
        ItineraryTask("t", "sometimes")
    with pytest.raises(TypeError, match="name"):
        ItineraryTask("")
    with pytest.raises(TypeError, match="args"):
        ItineraryTask("t", "arrival", [])  # type: ignore[arg-type]


def test_task_helpers() -> None:
    plan = TaskItineraryPlan(["a"])
    t1, t2 = ItineraryTask("t1"), ItineraryTask("t2", "dispatch")
    plan.add_task("a", t1)
    plan.add_task("b", t2)  # b not routed yet: allowed
    assert plan.get_tasks("a") == [t1]
    plan.get_tasks("a").append(t2)
    assert plan.get_tasks("a") == [t1]
    assert plan.get_tasks("nowhere") == []
    assert plan.remove_task("a", "nope") is False
    assert plan.remove_task("a", "t1") is True
    assert "a" not in plan.destination_tasks
    plan.clear_tasks("b")
    assert plan.get_tasks("b") == []
    d = ItineraryTask("d", "default")
    plan.add_default_task(d)
    assert plan.get_default_tasks() == [d]
    assert plan.remove_default_task("d") is True
    assert plan.remove_default_task("d") is False
    with pytest.raises(TypeError, match="ItineraryTask"):
        plan.add_task("a", "t1")  # type: ignore[arg-type]
    assert plan.add_destination_with_tasks("c", [t1, t2]) is True
    assert plan.destinations == ["c", "a"] and plan.get_tasks("c") == [t1, t2]


def test_tasks_for_phase() -> None:
    plan = TaskItineraryPlan(["a", "b"])
    arrive = ItineraryTask("arrive", "arrival")
    leave = ItineraryTask("leave", "dispatch")
    back = ItineraryTask("back", "reverting")
    default = ItineraryTask("default", "default")
    common = ItineraryTask("common", "default")
    for task in (arrive, leave, back, default):
        plan.add_task("a", task)
    plan.add_default_task(common)
    assert plan.tasks_for_phase("a", "arrival") == [arrive, default, common]
    assert plan.tasks_for_phase("a", "dispatch") == [leave]
    assert plan.tasks_for_phase("a", "reverting") == [back]
    assert plan.tasks_for_phase("b", "arrival") == [common]
    assert plan.tasks_for_phase(None, "arrival") == [common]
    plan.execute_default_on_arrival = False
    plan.execute_default_on_dispatch = True
    plan.execute_default_on_reverting = True
    assert plan.tasks_for_phase("a", "arrival") == [arrive]
    assert plan.tasks_for_phase("a", "dispatch") == [leave, default, common]
    assert plan.tasks_for_phase("a", "reverting") == [back, default, common]
    with pytest.raises(ValueError, match="phase must be one of"):
        plan.tasks_for_phase("a", "default")


# -- mixin ---------------------------------------------------------------------------------


class Traveller(ItineraryAgentMixin):
    """A stand-in for a Paglet subclass: a `state` with the plan, and a `dispatch`."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.dispatched: list[str] = []
        self.ran: list[tuple[str, str, Any]] = []

    def dispatch(self, dest: str) -> str:
        self.dispatched.append(dest)
        return f"proxy@{dest}"

    def execute_itinerary_task(self, task: ItineraryTask, phase: str, event: Any) -> str:
        self.ran.append((task.name, phase, event))
        return task.name.upper()


def test_mixin_moves_along_the_plan_in_its_state() -> None:
    agent = Traveller(TravelState(TaskItineraryPlan(["a", "b"])))
    assert agent.get_itinerary() is agent.state.itinerary
    assert agent.go_to_next_destination() == "proxy@a"
    assert agent.go_to_next_destination() == "proxy@b"
    assert agent.go_to_next_destination() is None
    assert agent.dispatched == ["a", "b"]
    assert agent.state.itinerary.completed


def test_mixin_runs_tasks_for_the_current_location() -> None:
    plan = TaskItineraryPlan(["a", "b"])
    plan.add_task("a", ItineraryTask("count"))
    plan.add_task("b", ItineraryTask("sum"))
    plan.add_default_task(ItineraryTask("log", "default"))
    agent = Traveller(TravelState(plan))
    agent.go_to_next_destination()
    assert agent.execute_itinerary_tasks("arrival", "evt") == ["COUNT", "LOG"]
    assert agent.ran == [("count", "arrival", "evt"), ("log", "arrival", "evt")]
    assert agent.execute_itinerary_tasks("dispatch", "evt") == []
    assert agent.execute_itinerary_tasks("arrival", None, destination="b") == ["SUM", "LOG"]
    with pytest.raises(ValueError, match="phase"):
        agent.execute_itinerary_tasks("departure", None)


def test_mixin_with_a_plain_plan_has_no_tasks() -> None:
    @dataclasses.dataclass
    class PlainState:
        route: ItineraryPlan = dataclasses.field(default_factory=lambda: ItineraryPlan(["a"]))

    class RouteTraveller(Traveller):
        itinerary_attr = "route"

    agent = RouteTraveller(PlainState())
    agent.go_to_next_destination()
    assert agent.execute_itinerary_tasks("arrival", None) == []


def test_mixin_without_a_plan_says_where_it_looked() -> None:
    agent = Traveller(state=object())
    with pytest.raises(AttributeError, match=r"state\.itinerary"):
        agent.get_itinerary()


def test_mixin_task_execution_must_be_overridden() -> None:
    class Lazy(ItineraryAgentMixin):
        def __init__(self) -> None:
            plan = TaskItineraryPlan(["a"], current_location="a")
            plan.add_task("a", ItineraryTask("t"))
            self.state = TravelState(plan)

    with pytest.raises(NotImplementedError, match="execute_itinerary_task"):
        Lazy().execute_itinerary_tasks("arrival", None)
