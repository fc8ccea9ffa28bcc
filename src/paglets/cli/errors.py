"""How the CLI fails: one line on stderr, `paglets <group> <command>: <message>`, then
`hint: ...` when there is one, and the exit code of cli.md section 0.5. A traceback only
with `--debug` or `PAGLETS_DEBUG=1`.

Commands raise `CliError` (or `Refused`, `Unavailable`) and let `paglets.cli.main` print
it: the prefix is the command that ran, found from the command line, so a command never
has to know its own path.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TextIO

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "debug_enabled",
    "print_error",
    "set_debug",
]

EXIT_OK = 0
EXIT_FAILED = 1  # ran, but the result is negative or the runtime failed
EXIT_USAGE = 2  # could not run: usage, invalid value, unreachable, auth
EXIT_INTERRUPTED = 130

_debug: bool | None = None


class CliError(Exception):
    """A failure to report as one line plus an optional hint; `code` is the exit code."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    """`--debug`, else `PAGLETS_DEBUG` set to something other than empty/0/false/no."""
    if _debug is not None and _debug:
        return True
    value = os.environ.get("PAGLETS_DEBUG", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def print_error(
    prefix: str,
    message: str,
    hint: str | None = None,
    *,
    exc: BaseException | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print the error line (and hint); the traceback of `exc` first when debugging."""
    out = stream or sys.stderr
    if exc is not None and debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=out)
    # One line, whatever the message holds: a newline would break `2>&1 | tail -1` users.
    line = " ".join(message.split("\n")).strip()
    out.write(f"{prefix}: {line}\n")
    if hint:
        out.write(f"hint: {' '.join(hint.split(chr(10))).strip()}\n")
    out.flush()
