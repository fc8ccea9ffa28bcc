"""Waiting for a condition with a deadline (tests never sleep instead of waiting)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.005
) -> object:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"condition not met within {timeout}s: {getattr(predicate, '__name__', predicate)}"
            )
        time.sleep(interval)
