"""mkdocs hook: the two reference pages, generated at build time from the code itself so
they can never drift from it.

* `reference/cli.md`: every command of the `paglets` typer app (the lazily loaded groups
  included), with its usage line, help text, arguments and options, as `--help` prints them.
* `reference/api.md`: the public names of the modules in `API_MODULES` (their `__all__`),
  with signatures and docstrings, read with `inspect`.

No dependency beyond mkdocs and paglets itself: the pages are plain markdown handed to
mkdocs as generated files (`File.generated`), so `mkdocs build --strict` works offline.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
API_PAGE = "reference/api.md"

# Module → title of its section. Each is documented through its `__all__`.
API_MODULES: dict[str, str] = {
    "paglets": "The `paglets` package",
    "paglets.services": "Services (`paglets.services`)",
    "paglets.patterns.tasks": "Tasks (`paglets.patterns.tasks`)",
    "paglets.patterns.operations": "Operations (`paglets.patterns.operations`)",
    "paglets.patterns.coordination": "Fan-out over the mesh (`paglets.patterns.coordination`)",
    "paglets.patterns.notifications": "Notifications (`paglets.patterns.notifications`)",
    "paglets.patterns.file_mobility": "Carrying files (`paglets.patterns.file_mobility`)",
}
COMPLETION = ("--install-completion", "--show-completion")


def on_files(files: Files, /, *, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    files.append(File.generated(config, API_PAGE, content=api_reference()))
    return files


def _text(value: str | None) -> str:
    """Help or docstring text as markdown: angle brackets outside code spans kept literal
    (`<your-repo>` is not an HTML tag)."""
    parts = re.split(r"(`[^`\n]*`)", value or "")
    return "".join(
        part if part.startswith("`") else part.replace("<", "&lt;").replace(">", "&gt;")
        for part in parts
    )


# -- the command line -----------------------------------------------------------------------


def _commands(command: Any, path: list[str], parent: Any) -> Iterator[tuple[str, Any, Any]]:
    ctx = command.context_class(command, info_name=path[-1], parent=parent)
    yield " ".join(path), command, ctx
    if not hasattr(command, "list_commands"):
        return
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)  # imports a lazy group's module
        if sub is not None and not getattr(sub, "hidden", False):
            yield from _commands(sub, [*path, name], ctx)


def _command_section(path: str, command: Any, ctx: Any) -> str:
    depth = min(path.count(" ") + 2, 4)  # the page title is the one h1
    out = [f"{'#' * depth} `{path}`", ""]
    pieces = " ".join(command.collect_usage_pieces(ctx))
    out += ["```text", f"{path} {pieces}".rstrip(), "```", ""]
    help_text = inspect.cleandoc(command.help or "")
    if help_text:
        out += [_text(help_text), ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [
        p
        for p in command.params
        if p.param_type_name == "option"
        and not getattr(p, "hidden", False)
        and (path == "paglets" or not set(p.opts) & set(COMPLETION))
    ]
    if arguments:
        out.append("Arguments:")
        out.append("")
        for param in arguments:
            metavar = param.metavar or param.human_readable_name
            out.append(f"* `{metavar}`: {_text(getattr(param, 'help', None) or '')}".rstrip(": "))
        out.append("")
    if options:
        out.append("Options:")
        out.append("")
        for param in options:
            record = param.get_help_record(ctx)
            if record is None:
                continue
            names, meaning = record
            out.append(f"* `{names}`: {_text(meaning)}".rstrip(": "))
        out.append("")
    return "\n".join(out)


def cli_reference() -> str:
    import typer

    from paglets.cli.main import app

    root = typer.main.get_command(app)
    sections = [
        "# Command reference",
        "",
        "Every `paglets` command with its options, generated from the command-line code "
        "when the site is built (the same text as `--help`). The guide to the commands is "
        "[The `paglets` command](../cli.md); the checklist is [paglets doctor](../doctor.md).",
        "",
    ]
    for path, command, ctx in _commands(root, ["paglets"], None):
        sections.append(_command_section(path, command, ctx))
    return "\n".join(sections)


# -- the Python API ---------------------------------------------------------------------------


class _Raw:
    """An annotation shown as written (`str | None`), not as a quoted string."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _plain(annotation: Any) -> Any:
    return _Raw(annotation) if isinstance(annotation, str) else annotation


def _signature(obj: Any, *, method: bool = False, returns: bool = True) -> str:
    """The signature with annotations as written; `method`: without `self`/`cls`;
    `returns`: with the return annotation (not for a class)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())
    if method and params and params[0].name in ("self", "cls"):
        params = params[1:]
    params = [p.replace(annotation=_plain(p.annotation)) for p in params]
    back = _plain(sig.return_annotation) if returns else inspect.Signature.empty
    return str(sig.replace(parameters=params, return_annotation=back))


def _doc(obj: Any) -> str:
    if inspect.isclass(obj):  # its own docstring, not one inherited from `StrEnum` & co.
        own = obj.__dict__.get("__doc__")
        doc = inspect.cleandoc(own) if isinstance(own, str) else ""
    else:
        doc = inspect.getdoc(obj) or ""
    # A heading inside a docstring would break the page's outline: make it bold.
    doc = re.sub(r"^#+\s*(.+)$", r"**\1**", doc, flags=re.M)
    return _text(doc)


def _members(cls: type) -> list[tuple[str, Any]]:
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in ("State",):
            continue
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            found.append((name, value))
    return found


def _object_section(module: str, name: str, obj: Any) -> str:
    home = getattr(obj, "__module__", None) or module
    out = [f"### `{name}`", ""]
    if inspect.isclass(obj):
        if issubclass(obj, enum.Enum):
            out += [f"*enum* in `{home}`", ""]
            values = ", ".join(f"`{m.name}`" for m in obj)
            out += [_doc(obj), "", f"Members: {values}.", ""]
            return "\n".join(out)
        kind = "dataclass" if dataclasses.is_dataclass(obj) else "class"
        bases = [b.__name__ for b in obj.__bases__ if b.__name__ not in ("object", "Generic")]
        base_text = f" ({', '.join(bases)})" if bases else ""
        out += ["```python", f"class {name}{_signature(obj, returns=False)}{base_text}", "```", ""]
        out += [f"*{kind}* in `{home}`", "", _doc(obj), ""]
        for member, value in _members(obj):
            if isinstance(value, property):
                out += [f"* `{member}` (property): {_first_paragraph(value)}".rstrip(": ")]
                continue
            signature = _signature(value, method=True)
            out += [f"* `{member}{signature}`: {_first_paragraph(value)}".rstrip(": ")]
        out.append("")
        return "\n".join(out)
    if callable(obj):
        out += ["```python", f"def {name}{_signature(obj)}", "```", ""]
        out += [f"*function* in `{home}`", "", _doc(obj), ""]
        return "\n".join(out)
    out += [f"*value* in `{module}`: `{obj!r}`", ""]
    return "\n".join(out)


def _first_paragraph(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return _text(" ".join(doc.split("\n\n", 1)[0].split()))


def api_reference() -> str:
    sections = [
        "# API reference",
        "",
        "The public names of paglets, generated from the code (signatures and docstrings) "
        "when the site is built. Guides: [Concepts](../concepts.md), "
        "[Writing paglets](../writing-paglets.md).",
        "",
    ]
    for module_name, title in API_MODULES.items():
        module = importlib.import_module(module_name)
        names = list(getattr(module, "__all__", None) or ())
        if not names:
            names = sorted(
                n
                for n, v in vars(module).items()
                if not n.startswith("_") and getattr(v, "__module__", None) == module_name
            )
        sections += [f"## {title}", ""]
        module_doc = inspect.getdoc(module)
        if module_doc:
            sections += [_text(module_doc.split("\n\n", 1)[0]), ""]
        for name in names:
            sections.append(_object_section(module_name, name, getattr(module, name)))
    return "\n".join(sections)
