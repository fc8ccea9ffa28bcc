"""What the `paglets jobs` modules share (cli.md §4): the compute-slots service they ask,
the `--long` option and how a duration is shown. The fan-out itself is `paglets.cli.fanout`.

The compute-slots package is imported only when a command runs, so `paglets --help` does
not pay for it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from paglets.cli.fanout import FanOut, ask_service
from paglets.cli.session import Session

__all__ = ["Long", "ask_slots", "compute_contract", "secs", "slots"]

Long = Annotated[bool, typer.Option("--long", help="Full ids.")]


def slots() -> Any:
    """The `paglets.system.compute_slots` package (its request and row classes)."""
    from paglets.system import compute_slots

    return compute_slots


def compute_contract() -> Any:
    from paglets.system.compute_slots.contract import COMPUTE_SLOTS_CONTRACT

    return COMPUTE_SLOTS_CONTRACT


def ask_slots(session: Session, hosts: list[str] | None, op: Any, request: Any) -> FanOut:
    """`op(request)` on every target host's `compute-slots`, in parallel, one deadline."""
    return ask_service(session, hosts, compute_contract(), op, request)


def secs(s: float | None) -> str:
    """A duration as a person reads it: `45s`, `12m`, `3.5h`; None → `-`."""
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"
