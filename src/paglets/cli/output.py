"""Terminal output shared by the commands (cli.md section 0.4): rich consoles that drop
styling when asked (`--no-color`, `NO_COLOR`) or when the stream is not a terminal, IEC
sizes and relative ages.

rich is imported only when a console is first asked for, so commands that print plain
lines (and `paglets --version`) never pay for it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["color_enabled", "console", "format_age", "format_size", "set_color", "stderr_console"]

_color: bool = True
_consoles: dict[str, Console] = {}

_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def set_color(enabled: bool) -> None:
    """`--no-color` turns styling off for every console made after (and before) this."""
    global _color
    _color = enabled
    _consoles.clear()


def color_enabled(stream: object = None) -> bool:
    stream = stream if stream is not None else sys.stdout
    if not _color or "NO_COLOR" in os.environ:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _make(name: str, stream: object) -> Console:
    from rich.console import Console

    console = _consoles.get(name)
    if console is None:
        styled = color_enabled(stream)
        console = Console(
            file=stream,  # type: ignore[arg-type]
            no_color=not styled,
            color_system="auto" if styled else None,
            highlight=False,
            soft_wrap=not styled,
        )
        _consoles[name] = console
    return console


def console() -> Console:
    """The stdout console (tables, results)."""
    return _make("stdout", sys.stdout)


def stderr_console() -> Console:
    """The stderr console (progress, warnings)."""
    return _make("stderr", sys.stderr)


def format_size(n: int | float | None) -> str:
    """IEC sizes as a person reads them: `512 B`, `1.5 GiB`; None → `unlimited`."""
    if n is None:
        return "unlimited"
    value = float(n)
    for unit in _IEC:
        if abs(value) < 1024 or unit == _IEC[-1]:
            if unit == "B":
                return f"{int(value)} B"
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_age(timestamp: float | None, *, now: float | None = None) -> str:
    """`3s ago`, `5m ago`, `2h ago`, `4d ago`; a future time is `in 3s`; None → `-`."""
    if timestamp is None:
        return "-"
    delta = (time.time() if now is None else now) - timestamp
    future = delta < 0
    seconds = abs(delta)
    if seconds < 60:
        text = f"{int(seconds)}s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)}m"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)}h"
    else:
        text = f"{int(seconds // 86400)}d"
    return f"in {text}" if future else f"{text} ago"
