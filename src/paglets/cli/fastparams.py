"""Plain value conversion for typer options, without pydantic.

typer (0.29) converts every non-flag option through a pydantic `TypeAdapter`, which
imports pydantic and builds an adapter per option: 60-100 ms on each `paglets` command,
a quarter of the start-up budget of `paglets host` (targets.md g1). The options of this
CLI are simple (str, int, float, Path, bool, lists of those, or a `parser=` of
`paglets.cli.values`), so `speed_up(command)` gives each such option a small converter
that does the same job. Anything else (enums, datetimes, path checks, min/max) keeps
typer's own conversion.

This touches one typer internal (the lazily built `_runtime_param` of a parameter). If a
typer release changes it, `speed_up` does nothing and typer's path is used: slower,
never wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args, get_origin

__all__ = ["speed_up"]

_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")


def _bad(message: str) -> Exception:
    import typer

    return typer.BadParameter(message)


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip(), 10)
    except ValueError:
        raise _bad(f'cannot read "{value}" as a whole number') from None


def _as_float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise _bad(f'cannot read "{value}" as a number') from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(f'cannot read "{value}" as true or false')


def _as_path(value: Any) -> Path:
    return value if isinstance(value, Path) else Path(_as_str(value))


_LEAVES: dict[Any, Callable[[Any], Any]] = {
    str: _as_str,
    int: _as_int,
    float: _as_float,
    bool: _as_bool,
    Path: _as_path,
}


def _plain_path_options(info: Any) -> bool:
    """A Path option with no checks typer would run (exists, writable, resolve, dash)."""
    return (
        not any(
            getattr(info, name, False)
            for name in ("exists", "writable", "resolve_path", "allow_dash", "path_type")
        )
        and getattr(info, "file_okay", True)
        and getattr(info, "dir_okay", True)
    )


def _converter(annotation: Any, info: Any) -> tuple[Callable[[Any], Any], bool] | None:
    """(convert one value, is a list) for simple options; None for anything else."""
    if any(getattr(info, name, None) is not None for name in ("min", "max")):
        return None
    if getattr(info, "clamp", False) or getattr(info, "click_type", None) is not None:
        return None
    many = get_origin(annotation) is list
    leaf = get_args(annotation)[0] if many else annotation
    if many and get_origin(leaf) is not None:
        return None
    parser = getattr(info, "parser", None)
    if parser is not None:
        return parser, many
    convert = _LEAVES.get(leaf)
    if convert is None:
        return None
    if leaf is Path and not _plain_path_options(info):
        return None
    return convert, many


class _PlainParam:
    """Stands in for typer's runtime parameter: the same `coerce` contract."""

    __slots__ = ("convert", "many")

    def __init__(self, convert: Callable[[Any], Any], many: bool) -> None:
        self.convert = convert
        self.many = many

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        many = self.many or param.multiple or param.nargs == -1
        if value is None:
            return () if many else None
        if many:
            if isinstance(value, str):
                raise _bad("Value must be an iterable.")
            return [self.convert(item) for item in value]
        return self.convert(value)


def _patch(param: Any) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return  # not a typer parameter, or not the internal this module knows
    found = _converter(descriptor.annotation, descriptor.parameter_info)
    if found is not None:
        param._runtime_param = _PlainParam(*found)


def speed_up(command: Any) -> None:
    """Give the simple options of `command` and its subcommands the plain converters."""
    for param in getattr(command, "params", ()):
        _patch(param)
    make_help = getattr(command, "get_help_option", None)
    if make_help is not None and not getattr(make_help, "_paglets_plain", False):
        # `--help` is made on first use; convert it plainly too.
        def get_help_option(ctx: Any, _make: Any = make_help) -> Any:
            option = _make(ctx)
            if option is not None:
                _patch(option)
            return option

        get_help_option._paglets_plain = True  # type: ignore[attr-defined]
        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        speed_up(sub)
