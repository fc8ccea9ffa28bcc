"""`paglets examples`: the examples we ship (cli.md §8, jobs.md §7), one module each.

This module is only the group: `list`, and the sub-commands of the example modules that
exist in this build (`file` from `paglets.cli.examples_file`, one entry each in
`_SUBGROUPS`; single commands such as `classic NAME`, one entry each in `_COMMANDS`).
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

# name → (module, function that is the command, one-line description for `list`)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "classic": (
        "paglets.cli.examples_classic",
        "classic",
        "paglets examples classic NAME: hello, clone-workers, finder, itinerary, "
        "master-slave, message-patterns, mobility-events",
    ),
    "bundle": (
        "paglets.cli.examples_bundle",
        "bundle",
        "paglets examples bundle --jobs 20: the seed's ds_dia bundle jobs, results home",
    ),
    "mesh-benchmark": (
        "paglets.cli.examples_benchmark",
        "mesh_benchmark",
        "paglets examples mesh-benchmark: a traveller times every directed host pair",
    ),
    "pi": (
        "paglets.cli.examples_pi",
        "pi",
        "paglets examples pi --digits N: batch compute jobs, ordered digits streamed",
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
    lines += [(n, text) for n, (module, _f, text) in _COMMANDS.items() if _exists(module)]
    lines.append(("search", "paglets search grep|find ...: move the code to the data"))
    lines.append(("demo", "paglets demo [--hosts N] [--jobs N] [--keep]: the whole idea, 3 hosts"))
    for _name, text in sorted(lines):
        print(text)


for _name, (_module, _text) in _SUBGROUPS.items():
    if _exists(_module):
        app.add_typer(importlib.import_module(_module).app, name=_name)

for _name, (_module, _function, _text) in _COMMANDS.items():
    if _exists(_module):
        app.command(_name)(getattr(importlib.import_module(_module), _function))
