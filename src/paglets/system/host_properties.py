"""Host property constraints (`required_host_properties`, jobs.md §1.3): parsing and checks.

Forms, keys case-insensitive: `KEY`, `!KEY`, `KEY==V`, `KEY!=V`, `KEY>=V`, `KEY<=V`,
`KEY>V`, `KEY<V`, `KEY in V1,V2`, `KEY~=GLOB`.

Ordering compares versions the way people write them: a dotted-number prefix is a tuple
of integers (missing parts are 0, a suffix such as `rc1` is ignored), so `3.12.4>=3.12`
and `3.9<3.12`; any other plain number (`-1`, `2.5e3`) compares numerically. Ordering any
other string is a mistake in the constraint, so `parse_constraint` refuses it when the job
(or selection request) is made, not silently at every host. A *host* value that cannot be
ordered simply fails the constraint.

Pure code: no I/O, no clock. Placement (`paglets.system.placement`) and admission use it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "Constraint",
    "check_constraints",
    "compare_keys",
    "lower_keys",
    "order_key",
    "parse_constraint",
    "parse_constraints",
]

_FORM = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_.\-]+)"
    r"(?:\s*(?P<op>==|!=|>=|<=|~=|>|<)\s*(?P<value>.*?)"
    r"|\s+(?P<in>[iI][nN])\s+(?P<values>.*?))?\s*$"
)
_DOTTED = re.compile(r"^\d+(?:\.\d+)*")
_ORDERING = frozenset({">=", "<=", ">", "<"})
FORMS = "KEY, !KEY, KEY==V, KEY!=V, KEY>=V, KEY<=V, KEY>V, KEY<V, 'KEY in V1,V2' or KEY~=GLOB"


def order_key(value: str) -> tuple[float, ...] | None:
    """The sort key of `value` for `>=`-style constraints, or None if it has none.

    `"3.12.4rc1"` → `(3, 12, 4)`; `"-1.5"` → `(-1.5,)`; `"linux"` → None. Compare two keys
    with `compare_keys` (it pads the shorter with zeros)."""
    text = value.strip()
    match = _DOTTED.match(text)
    if match:
        return tuple(float(part) for part in match.group(0).split("."))
    try:
        number = float(text)
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None  # nan and infinities do not order usefully
    return (number,)


def compare_keys(a: tuple[float, ...], b: tuple[float, ...]) -> int:
    """-1, 0 or 1 as `a` sorts before, with or after `b` (missing parts are 0)."""
    width = max(len(a), len(b))
    left = a + (0.0,) * (width - len(a))
    right = b + (0.0,) * (width - len(b))
    return (left > right) - (left < right)


_HOLDS = {
    ">=": lambda c: c >= 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    "<": lambda c: c < 0,
}


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed constraint. `op` is `"exists"`, `"missing"` or the operator; `key` is
    lower-cased; `values` holds one value (two or more for `in`)."""

    text: str
    key: str
    op: str
    values: tuple[str, ...] = ()

    def holds(self, properties: Mapping[str, str]) -> bool:
        """Whether `properties` (keys lower-cased) satisfy this constraint."""
        return self.failure(properties) is None

    def failure(self, properties: Mapping[str, str]) -> str | None:
        """None when `properties` (keys lower-cased) satisfy this; else why not, naming the
        host's value: "`python>=3.13`, host has 3.12.4"."""
        have = properties.get(self.key)
        if self.op == "exists":
            return None if have is not None else f"`{self.text}`, host has no {self.key}"
        if self.op == "missing":
            return None if have is None else f"`{self.text}`, host has {self.key}={have}"
        if have is None:
            return f"`{self.text}`, host has no {self.key}"
        return None if self._compare(str(have)) else f"`{self.text}`, host has {have}"

    def _compare(self, have: str) -> bool:
        op = self.op
        if op == "==":
            return have == self.values[0]
        if op == "!=":
            return have != self.values[0]
        if op == "in":
            return have in self.values
        if op == "~=":
            return fnmatch.fnmatchcase(have, self.values[0])
        left, right = order_key(have), order_key(self.values[0])
        if left is None or right is None:
            return False  # the host's value cannot be ordered: the constraint does not hold
        return _HOLDS[op](compare_keys(left, right))


def parse_constraint(text: str) -> Constraint:
    """Parse one constraint; a `ValueError` says what was wrong and lists the forms."""
    if not isinstance(text, str):
        raise ValueError(f"a host property constraint must be a string, got {text!r}")
    match = _FORM.match(text)
    if match is None or (match.group("neg") and (match.group("op") or match.group("in"))):
        raise ValueError(f"invalid host property constraint {text!r}: use {FORMS}")
    key = match.group("key").lower()
    shown = text.strip()
    if match.group("neg"):
        return Constraint(shown, key, "missing")
    if match.group("in"):
        op = "in"
        values = tuple(v.strip() for v in match.group("values").split(",") if v.strip())
    elif match.group("op"):
        op = match.group("op")
        values = (match.group("value").strip(),)
    else:
        return Constraint(shown, key, "exists")
    if not values or not values[0]:
        raise ValueError(f"host property constraint {text!r} has no value after {op!r}")
    if op in _ORDERING and order_key(values[0]) is None:
        raise ValueError(
            f"host property constraint {text!r} orders a value that is neither a number nor "
            f"a dotted version ({values[0]!r}); use == or ~= for other strings"
        )
    return Constraint(shown, key, op, values)


def parse_constraints(texts: Iterable[str]) -> tuple[Constraint, ...]:
    """Every constraint of `texts`, parsed (the first bad one raises `ValueError`)."""
    return tuple(parse_constraint(t) for t in texts)


def lower_keys(properties: Mapping[str, object]) -> dict[str, str]:
    """`properties` with lower-cased keys and string values (how constraints read them)."""
    return {str(k).lower(): str(v) for k, v in properties.items()}


def check_constraints(
    constraints: Iterable[Constraint | str], properties: Mapping[str, object]
) -> list[str]:
    """Every failing constraint against `properties` (any key case), as sentences. An
    unparsable constraint text fails with its parse error."""
    props = lower_keys(properties)
    failures = []
    for item in constraints:
        if isinstance(item, str):
            try:
                item = parse_constraint(item)
            except ValueError as exc:
                failures.append(str(exc))
                continue
        failure = item.failure(props)
        if failure is not None:
            failures.append(failure)
    return failures
