"""Reading command-line values: sizes, durations, times, `KEY=VALUE`, JSON arguments
(cli.md section 0.6).

Every parser takes the text the user typed and returns a plain value, or raises
`ValueFormatError` whose message names the text and shows accepted examples, e.g.
`cannot read "2XB" as a size (examples: 512M, 2GB, 1.5GiB, none)`. The CLI prefixes the
command and the option (`paglets host: --artifact-max-size: ...`) and exits 2.

The parsers are pure functions (no typer import) so other code can reuse them; `option()`
adapts one to a typer `parser=` that reports through typer's usage-error path.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ValueFormatError",
    "option",
    "parse_choice",
    "parse_duration",
    "parse_json_argument",
    "parse_int",
    "parse_key_value",
    "parse_size",
    "parse_time",
]

T = TypeVar("T")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
}
# `10K`, `10KB`, `10KiB`, `2 GiB`, `1.5g`: number, optional blanks, unit letter, optional
# `i`, optional `b` (all case-insensitive; every form means powers of 1024).
_SIZE_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(?:i?b|i)?|(b))?$", re.IGNORECASE)
_NO_LIMIT = ("none", "unlimited")

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)$")

# A bare number this large is a point in time (epoch seconds), not an age: 1e9 s is 2001.
_EPOCH_FLOOR = 1e9


class ValueFormatError(ValueError):
    """A command-line value that cannot be read; the message is shown to the user as is."""


def parse_size(text: str, *, allow_none: bool = False) -> int | None:
    """`512`, `512B`, `10K`, `10KB`, `10KiB`, `2 GiB`, `1.5G`, `1T` → bytes (powers of 1024).

    `none`/`unlimited` → None, only where a limit may be off (`allow_none`).
    """
    raw = text.strip()
    examples = "512M, 2GB, 1.5GiB, none" if allow_none else "512M, 2GB, 1.5GiB"
    if raw.lower() in _NO_LIMIT:
        if allow_none:
            return None
        raise ValueFormatError(
            f'cannot read "{text}" as a size: this limit cannot be turned off '
            f"(examples: {examples})"
        )
    match = _SIZE_RE.match(raw)
    if match is None:
        raise ValueFormatError(f'cannot read "{text}" as a size (examples: {examples})')
    number, unit, plain_b = match.groups()
    multiplier = _SIZE_UNITS[(unit or plain_b or "").lower()]
    try:
        value = Decimal(number) * multiplier
    except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
        raise ValueFormatError(f'cannot read "{text}" as a size (examples: {examples})') from None
    if value != value.to_integral_value() and multiplier == 1:
        raise ValueFormatError(
            f'cannot read "{text}" as a size: a number of bytes must be whole '
            f"(examples: {examples})"
        )
    return int(value.to_integral_value())


def parse_duration(text: str) -> float:
    """`30` (seconds), `30s`, `500ms`, `5m`, `2h`, `1d`, `1h30m` → seconds as a float."""
    raw = text.strip()
    if _BARE_NUMBER.match(raw):
        return float(raw)
    total = 0.0
    position = 0
    parts = 0
    for match in _DURATION_PART.finditer(raw):
        if raw[position : match.start()].strip():
            break  # garbage between parts
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        position = match.end()
        parts += 1
    if parts == 0 or raw[position:].strip() or not math.isfinite(total):
        raise ValueFormatError(
            f'cannot read "{text}" as a duration (examples: 30, 500ms, 5m, 1h30m)'
        )
    return total


def parse_time(text: str, *, now: float) -> float:
    """A point in time as epoch seconds: a duration ago (`10m`), ISO 8601
    (`2024-05-01T12:00:00Z`), or epoch seconds (a bare number ≥ 1e9)."""
    raw = text.strip()
    if _BARE_NUMBER.match(raw) and float(raw) >= _EPOCH_FLOOR:
        return float(raw)
    try:
        return now - parse_duration(raw)
    except ValueFormatError:
        pass
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueFormatError(
            f'cannot read "{text}" as a time (examples: 10m, 2024-05-01T12:00:00Z, 1714564800)'
        ) from None
    return moment.timestamp()  # naive values are local time, as a user at this machine means


def parse_key_value(text: str) -> tuple[str, str]:
    """`KEY=VALUE` → (key, value). The key is trimmed and must not be empty; the value is
    kept as typed (it may contain `=` and may be empty)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueFormatError(
            f'cannot read "{text}" as KEY=VALUE: there is no "=" (example: python=3.12)'
        )
    key = key.strip()
    if not key:
        raise ValueFormatError(
            f'cannot read "{text}" as KEY=VALUE: the key before "=" is empty (example: python=3.12)'
        )
    return key, value


def parse_int(
    text: str, *, low: int | None = None, high: int | None = None, what: str = "a number"
) -> int:
    """A whole number within `low`..`high` (inclusive; None: unbounded)."""
    raw = text.strip()
    if low is not None and high is not None:
        bounds = f"{low} to {high}"
    elif low is not None:
        bounds = f"at least {low}"
    elif high is not None:
        bounds = f"at most {high}"
    else:
        bounds = "a whole number"
    try:
        value = int(raw, 10)
    except ValueError:
        raise ValueFormatError(f'cannot read "{text}" as {what} ({bounds})') from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueFormatError(f"{what} must be {bounds}, got {value}")
    return value


def parse_choice(text: str, choices: tuple[str, ...]) -> str:
    """One of `choices`, case-insensitive; returns the canonical spelling."""
    lowered = text.strip().lower()
    for choice in choices:
        if choice.lower() == lowered:
            return choice
    raise ValueFormatError(f'cannot read "{text}" as one of: {", ".join(choices)}')


def parse_json_argument(text: str, *, stdin: Any = None) -> Any:
    """Inline JSON, `@file.json`, or `-` for standard input."""
    if text == "-":
        source = "standard input"
        body = (stdin or sys.stdin).read()
    elif text.startswith("@"):
        path = Path(text[1:]).expanduser()
        source = str(path)
        try:
            body = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueFormatError(f"cannot read JSON from {path}: {exc.strerror}") from None
    else:
        source = "the argument"
        body = text
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueFormatError(
            f"cannot read {source} as JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            "(examples: '{\"n\": 1}', @state.json, - for standard input)"
        ) from None


def option(parse: Callable[[str], T]) -> Callable[[Any], T]:
    """Adapt a parser to typer's `parser=`: a `ValueFormatError` becomes a usage error
    that the CLI prints as `paglets <command>: --option: <message>` with exit 2.

    Values that are not strings (already parsed defaults) are passed through unchanged.
    """
    import typer

    def convert(value: Any) -> T:
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ValueFormatError as exc:
            raise typer.BadParameter(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert
