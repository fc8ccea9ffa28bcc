"""Itineraries: a route of hosts a paglet visits one after the other.

An `ItineraryPlan` lives inside the paglet's state (so it moves with the paglet), which is
why it is a plain dataclass of lists, strings, ints and bools. `dispatch_next(agent)` moves
the plan forward first and only then dispatches, so the state that travels already shows
the new position; if the dispatch fails the plan is put back exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from paglets.remote.proxy import PagletProxy

__all__ = [
    "EXECUTIONS",
    "PHASES",
    "ItineraryAgentMixin",
    "ItineraryPlan",
    "ItineraryTask",
    "TaskItineraryPlan",
]

PHASES = ("arrival", "dispatch", "reverting")
"""The phases a task can run in (the hooks `on_arrival`, `on_dispatching`, `on_reverting`)."""

EXECUTIONS = (*PHASES, "default")
"""Valid `ItineraryTask.execution` values; `"default"` follows the plan's default phases."""


def _check_destination(dest: Any) -> str:
    if not isinstance(dest, str) or not dest:
        raise TypeError(
            f"an itinerary destination must be a non-empty str (a host URL or mesh name), "
            f"got {dest!r}"
        )
    return dest


@dataclass(slots=True)
class ItineraryPlan:
    """A route of destinations (host URLs or mesh names) and the position on it.

    `current_index` is the index of the next destination to visit, `current_location` the
    destination last dispatched to, `visited_destinations` the ones visited so far (in
    circular mode: in the current loop only). With `circular=True` the route starts over
    after its last destination and `loop_count` counts the restarts.
    """

    destinations: list[str] = field(default_factory=list)
    current_index: int = 0
    current_location: str | None = None
    visited_destinations: list[str] = field(default_factory=list)
    mutable: bool = True
    circular: bool = False
    loop_count: int = 0
    completed: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.destinations, list):
            self.destinations = list(self.destinations)
        for dest in self.destinations:
            _check_destination(dest)
        if not 0 <= self.current_index <= len(self.destinations):
            raise ValueError(
                f"ItineraryPlan.current_index must be within 0..{len(self.destinations)} "
                f"(the number of destinations), got {self.current_index}"
            )

    # -- moving along the route --------------------------------------------------------

    def _peek(self) -> tuple[int, bool] | None:
        """(index of the next destination, whether reaching it starts a new loop), or None."""
        if self.current_index < len(self.destinations):
            return self.current_index, False
        if self.circular and self.destinations:
            return 0, True
        return None

    def next_destination(self) -> str | None:
        """The destination `dispatch_next` would go to, without moving; None when done."""
        peek = self._peek()
        return None if peek is None else self.destinations[peek[0]]

    def has_next_destination(self) -> bool:
        """True while `dispatch_next` has somewhere to go."""
        return self._peek() is not None

    def dispatch_next(self, agent: Any) -> PagletProxy | None:
        """Advance to the next destination and `agent.dispatch()` there; None when done.

        The index, `current_location` and visited list (and, on wrapping around, the loop
        count) change *before* the dispatch, so the state that travels shows the new
        position. If the dispatch raises, every field is restored and the error propagates.
        When nothing is left, `completed` is set and None returned without dispatching.
        """
        peek = self._peek()
        if peek is None:
            self.completed = True
            return None
        index, new_loop = peek
        dest = self.destinations[index]
        saved = (
            self.current_index,
            self.current_location,
            self.visited_destinations,
            self.loop_count,
            self.completed,
        )
        # A new list rather than an in-place append: the saved one stays intact for restore.
        if new_loop:
            self.loop_count += 1
            self.visited_destinations = [dest]
        else:
            self.visited_destinations = [*self.visited_destinations, dest]
        self.current_index = index + 1
        self.current_location = dest
        self.completed = False
        try:
            return agent.dispatch(dest)
        except BaseException:
            (
                self.current_index,
                self.current_location,
                self.visited_destinations,
                self.loop_count,
                self.completed,
            ) = saved
            raise

    def skip_next(self) -> str | None:
        """Skip the next destination without visiting it; returns it, or None when done.

        In circular mode skipping past the end starts the next loop, as a visit would.
        """
        peek = self._peek()
        if peek is None:
            return None
        index, new_loop = peek
        if new_loop:
            self.loop_count += 1
            self.visited_destinations = []
        self.current_index = index + 1
        return self.destinations[index]

    # -- editing the route -------------------------------------------------------------

    def _require_mutable(self) -> None:
        if not self.mutable:
            raise ValueError(
                "this itinerary is immutable (set_immutable() was called); "
                "build a new ItineraryPlan to change the route"
            )

    def set_immutable(self) -> None:
        """Forbid further route edits (add/remove raise `ValueError`); there is no undo."""
        self.mutable = False

    def add_next_destination(
        self,
        dest: str,
        *,
        index: int | None = None,
        after: str | None = None,
        allow_duplicate: bool = True,
    ) -> bool:
        """Insert `dest` into the route; returns False if it was a refused duplicate.

        Where: by default as the very next destination; `index=i` inserts at position `i`
        of `destinations` (0..len); `after=d` right after destination `d` (its first
        occurrence from the current location on, else its first occurrence anywhere;
        `ValueError` if absent). `index` and `after` are exclusive. With
        `allow_duplicate=False` a `dest` already anywhere in the route is not added.
        Inserting before the current position shifts `current_index`, so the next
        destination stays the same.
        """
        self._require_mutable()
        _check_destination(dest)
        if index is not None and after is not None:
            raise TypeError("add_next_destination(): pass either index= or after=, not both")
        if not allow_duplicate and dest in self.destinations:
            return False
        if after is not None:
            position = self._find(after) + 1
        elif index is not None:
            if not 0 <= index <= len(self.destinations):
                raise IndexError(
                    f"add_next_destination(): index must be within "
                    f"0..{len(self.destinations)}, got {index}"
                )
            position = index
        else:
            position = self.current_index
        self.destinations.insert(position, dest)
        if position < self.current_index:
            self.current_index += 1
        return True

    def add_next_destination_if_not_duplicated(
        self, dest: str, *, index: int | None = None, after: str | None = None
    ) -> bool:
        """`add_next_destination(..., allow_duplicate=False)`: True if `dest` was added."""
        return self.add_next_destination(dest, index=index, after=after, allow_duplicate=False)

    def _find(self, dest: str) -> int:
        """Index of `dest`: first occurrence from the current location on, else anywhere."""
        start = max(self.current_index - 1, 0)
        try:
            return self.destinations.index(dest, start)
        except ValueError:
            pass
        try:
            return self.destinations.index(dest)
        except ValueError:
            raise ValueError(f"destination {dest!r} is not in this itinerary") from None

    def remove_destination(self, dest: str) -> bool:
        """Remove one occurrence of `dest`: the first still ahead, else the first anywhere.

        Returns False if `dest` is not in the route.
        """
        self._require_mutable()
        try:
            index = self.destinations.index(dest, self.current_index)
        except ValueError:
            if dest not in self.destinations:
                return False
            index = self.destinations.index(dest)
        self._remove_at(index)
        return True

    def remove_destination_at(self, index: int) -> str:
        """Remove and return the destination at `index` (`IndexError` if out of range)."""
        self._require_mutable()
        if not 0 <= index < len(self.destinations):
            raise IndexError(
                f"remove_destination_at(): index must be within "
                f"0..{len(self.destinations) - 1}, got {index}"
            )
        return self._remove_at(index)

    def _remove_at(self, index: int) -> str:
        dest = self.destinations.pop(index)
        if index < self.current_index:
            # Keep pointing at the same next destination.
            self.current_index -= 1
        return dest

    # -- accessors ---------------------------------------------------------------------

    def get_destinations(self) -> list[str]:
        """A copy of the whole route."""
        return list(self.destinations)

    def get_destination(self, index: int) -> str:
        """The destination at `index` of the route."""
        return self.destinations[index]

    def get_destination_count(self) -> int:
        """How many destinations the route has."""
        return len(self.destinations)

    def get_current_index(self) -> int:
        """Index of the next destination to visit (== count once the route is used up)."""
        return self.current_index

    def get_current_location(self) -> str | None:
        """The destination last dispatched to; None before the first hop."""
        return self.current_location

    def get_visited_destinations(self) -> list[str]:
        """A copy of the destinations visited (in circular mode: in the current loop)."""
        return list(self.visited_destinations)

    def get_remaining_destinations(self) -> list[str]:
        """The destinations still ahead in the current loop (the whole route once a
        circular plan has reached its end)."""
        peek = self._peek()
        if peek is None:
            return []
        return self.destinations[peek[0] :]

    def get_loop_count(self) -> int:
        """How many times a circular plan has started over."""
        return self.loop_count

    def is_mutable(self) -> bool:
        """False once `set_immutable()` was called."""
        return self.mutable

    def is_circular(self) -> bool:
        """True if the route starts over after its last destination."""
        return self.circular

    def is_completed(self) -> bool:
        """True once `dispatch_next` found nothing left to visit."""
        return self.completed


@dataclass(slots=True)
class ItineraryTask:
    """A named piece of work to do at a destination, in one phase of the visit.

    `execution` is `"arrival"`, `"dispatch"`, `"reverting"` or `"default"` (run in the
    phases the plan's `execute_default_on_*` flags enable); `args` are its parameters.
    """

    name: str
    execution: str = "arrival"
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"ItineraryTask.name must be a non-empty str, got {self.name!r}")
        if self.execution not in EXECUTIONS:
            raise ValueError(
                f"ItineraryTask.execution must be one of: {', '.join(EXECUTIONS)}; "
                f"got {self.execution!r}"
            )
        if not isinstance(self.args, dict):
            raise TypeError(f"ItineraryTask.args must be a dict, got {type(self.args).__name__}")

    def runs_in(self, phase: str, default_phase: bool) -> bool:
        """True if this task runs in `phase`; `default_phase` says whether the plan runs
        `"default"` tasks in that phase."""
        return self.execution == phase or (self.execution == "default" and default_phase)


def _check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of: {', '.join(PHASES)}; got {phase!r}")
    return phase


@dataclass(slots=True)
class TaskItineraryPlan(ItineraryPlan):
    """An itinerary whose destinations carry tasks.

    `destination_tasks[dest]` are tasks for one destination; `default_tasks` apply at every
    destination (after its own). A task runs in phase P if its `execution` is P, or if it
    is `"default"` and the plan's `execute_default_on_<P>` flag is set (by default: on
    arrival only). Task lists are not affected by `set_immutable()`, which guards the route.
    """

    destination_tasks: dict[str, list[ItineraryTask]] = field(default_factory=dict)
    default_tasks: list[ItineraryTask] = field(default_factory=list)
    execute_default_on_arrival: bool = True
    execute_default_on_dispatch: bool = False
    execute_default_on_reverting: bool = False

    def add_task(self, dest: str, task: ItineraryTask) -> None:
        """Append `task` to the tasks of destination `dest` (which need not be routed yet)."""
        _check_destination(dest)
        if not isinstance(task, ItineraryTask):
            raise TypeError(f"add_task() takes an ItineraryTask, got {type(task).__name__}")
        self.destination_tasks.setdefault(dest, []).append(task)

    def add_destination_with_tasks(
        self, dest: str, tasks: list[ItineraryTask], *, index: int | None = None
    ) -> bool:
        """Add `dest` to the route (as `add_next_destination`) and append its `tasks`."""
        added = self.add_next_destination(dest, index=index)
        for task in tasks:
            self.add_task(dest, task)
        return added

    def remove_task(self, dest: str, name: str) -> bool:
        """Remove the first task called `name` from `dest`'s tasks; False if none."""
        tasks = self.destination_tasks.get(dest)
        if not tasks:
            return False
        for i, task in enumerate(tasks):
            if task.name == name:
                del tasks[i]
                if not tasks:
                    del self.destination_tasks[dest]
                return True
        return False

    def clear_tasks(self, dest: str) -> None:
        """Drop every task of destination `dest` (default tasks are kept)."""
        self.destination_tasks.pop(dest, None)

    def get_tasks(self, dest: str) -> list[ItineraryTask]:
        """A copy of the tasks of destination `dest` (without the default tasks)."""
        return list(self.destination_tasks.get(dest, ()))

    def add_default_task(self, task: ItineraryTask) -> None:
        """Append a task that applies at every destination."""
        if not isinstance(task, ItineraryTask):
            raise TypeError(f"add_default_task() takes an ItineraryTask, got {type(task).__name__}")
        self.default_tasks.append(task)

    def remove_default_task(self, name: str) -> bool:
        """Remove the first default task called `name`; False if none."""
        for i, task in enumerate(self.default_tasks):
            if task.name == name:
                del self.default_tasks[i]
                return True
        return False

    def get_default_tasks(self) -> list[ItineraryTask]:
        """A copy of the tasks that apply at every destination."""
        return list(self.default_tasks)

    def runs_default_in(self, phase: str) -> bool:
        """True if `"default"` tasks run in `phase` (the `execute_default_on_*` flags)."""
        _check_phase(phase)
        if phase == "arrival":
            return self.execute_default_on_arrival
        if phase == "dispatch":
            return self.execute_default_on_dispatch
        return self.execute_default_on_reverting

    def tasks_for_phase(self, dest: str | None, phase: str) -> list[ItineraryTask]:
        """The tasks to run at `dest` in `phase`, in order: `dest`'s own, then the defaults.

        `dest=None` (no current location yet) gives the default tasks only.
        """
        default_phase = self.runs_default_in(phase)
        own = self.destination_tasks.get(dest, ()) if dest is not None else ()
        return [t for t in (*own, *self.default_tasks) if t.runs_in(phase, default_phase)]


class ItineraryAgentMixin:
    """Adds itinerary helpers to a `Paglet` whose state holds an `ItineraryPlan`.

    The plan is `self.state.<itinerary_attr>` (or, failing that, an attribute of the
    paglet itself). Nothing calls `execute_itinerary_tasks` automatically: call it from the
    hooks you want (`on_arrival`, `on_dispatching`, `on_reverting`).
    """

    __slots__ = ()
    itinerary_attr: ClassVar[str] = "itinerary"

    def get_itinerary(self) -> ItineraryPlan:
        """The paglet's plan; `AttributeError` naming the attribute if there is none."""
        attr = self.itinerary_attr
        state = getattr(self, "state", None)
        plan = getattr(state, attr, None) if state is not None else None
        if plan is None:
            plan = getattr(self, attr, None)
        if not isinstance(plan, ItineraryPlan):
            raise AttributeError(
                f"{type(self).__name__} has no ItineraryPlan at state.{attr}; add a field "
                f"`{attr}: ItineraryPlan` to its State or set itinerary_attr"
            )
        return plan

    def go_to_next_destination(self) -> PagletProxy | None:
        """Dispatch this paglet to the plan's next destination; None when the route is done."""
        return self.get_itinerary().dispatch_next(self)

    def execute_itinerary_tasks(
        self, phase: str, event: Any, *, destination: str | None = None
    ) -> list[Any]:
        """Run the tasks for `phase` at `destination`, in order; returns their results.

        `destination` defaults to the plan's `current_location`: on arrival the host just
        reached; inside `on_dispatching` (which runs during `dispatch_next`) the host being
        dispatched to. A plain `ItineraryPlan` has no tasks.
        """
        _check_phase(phase)
        plan = self.get_itinerary()
        if not isinstance(plan, TaskItineraryPlan):
            return []
        dest = plan.current_location if destination is None else destination
        return [
            self.execute_itinerary_task(task, phase, event)
            for task in plan.tasks_for_phase(dest, phase)
        ]

    def execute_itinerary_task(self, task: ItineraryTask, phase: str, event: Any) -> Any:
        """Run one task; override it (the mixin cannot know what your tasks do)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override execute_itinerary_task(task, phase, event) "
            "to run itinerary tasks"
        )
