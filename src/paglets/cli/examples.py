"""`paglets examples`: the examples we ship (cli.md §8, jobs.md §7), one module each.

This module is only the group: `list`, and the sub-commands of the example modules that
exist in this build (`file` from `paglets.cli.examples_file`; others are added the same
way, one line each in `_SUBGROUPS`).
"""

from __future__ import annotations

import importlib
import importlib.util

import typer

__all__ = ["app"]

app = typer.Typer(
    name="examples",
    help="Run the examples that ship with paglets (see `paglets examples list`).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

# name → (module defining `app`, one-line description for `list`)
_SUBGROUPS: dict[str, tuple[str, str]] = {
    "file": (
        "paglets.cli.examples_file",
        "paglets examples file push|pull SOURCE --remote HOST: a file travels inside a paglet",
    ),
}


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@app.command("list")
def list_examples() -> None:
    """One line per example with its command."""
    lines = [(name, text) for name, (module, text) in _SUBGROUPS.items() if _exists(module)]
    lines.append(("search", "paglets search grep|find ...: move the code to the data"))
    for _name, text in sorted(lines):
        print(text)


for _name, (_module, _text) in _SUBGROUPS.items():
    if _exists(_module):
        app.add_typer(importlib.import_module(_module).app, name=_name)
