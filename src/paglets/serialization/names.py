"""Class names on the wire ("module:qualname") and the import gate for names from the network.

A class name that arrives in a request is untrusted: importing a module runs its top-level
code. `import_class` therefore checks the name's syntax and the host's allow-list *before*
anything is imported, and only then imports and checks that the result is the kind of class
the caller expects. `paglets.serialization.codec` re-exports everything here.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import types
from collections.abc import Sequence
from typing import Any

from paglets.core.errors import ClassImportError, ForbiddenError, SerializationError

__all__ = [
    "check_allowed_module",
    "import_class",
    "parse_qualified_name",
    "qualified_name",
    "resolve_qualified_name",
]

_MAIN = "__main__"

# Successful resolutions, keyed by the full name. Resolution does not depend on the caller's
# allow-list or expectations, so those are checked on every call before the cache is read.
_resolved: dict[str, Any] = {}
_resolve_lock = threading.Lock()


def qualified_name(cls_or_obj: Any) -> str:
    """The "module:qualname" name of a class (or function), or of an object's class.

    Raises `SerializationError` when the name could not be imported on another host: a class
    defined inside a function (`<locals>`) or in the script being run (`__main__`).
    """
    is_named = isinstance(cls_or_obj, type | types.FunctionType)
    target = cls_or_obj if is_named else type(cls_or_obj)
    module = getattr(target, "__module__", None) or ""
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", "")
    if "<locals>" in qualname:
        raise SerializationError(
            f"{target.__name__} ({module}:{qualname}) is defined inside a function, so no other "
            "host or process can import it by name; define it at the top level of an "
            "importable module"
        )
    if module == _MAIN or module.startswith(_MAIN + "."):
        raise SerializationError(
            f"{target.__name__} is defined in __main__ (the script being run), so no other host "
            "or process can import it by name; define it at the top level of an importable "
            "module and import it from your script"
        )
    if not module or not qualname:
        raise SerializationError(f"{target!r} has no importable module:qualname name")
    return f"{module}:{qualname}"


def parse_qualified_name(name: str) -> tuple[str, tuple[str, ...]]:
    """Split "pkg.mod:Outer.Inner" into ("pkg.mod", ("Outer", "Inner")), checking syntax only.

    Every part must be a Python identifier; dunder attributes ("__class__", ...) are refused
    so that a name cannot walk from a class into the interpreter's internals.
    """
    if not isinstance(name, str) or name.count(":") != 1 or len(name) > 1024:
        raise SerializationError(
            f"malformed class name {name!r}: expected 'package.module:QualName'",
            code="invalid-body",
        )
    module, qualname = name.split(":")
    module_parts = module.split(".")
    qual_parts = tuple(qualname.split("."))
    for part in (*module_parts, *qual_parts):
        if not part.isidentifier():
            raise SerializationError(
                f"malformed class name {name!r}: {part!r} is not a Python identifier "
                "(expected 'package.module:QualName')",
                code="invalid-body",
            )
    for part in qual_parts:
        if part.startswith("__") and part.endswith("__"):
            raise SerializationError(
                f"malformed class name {name!r}: dunder attribute {part!r} is not allowed",
                code="invalid-body",
            )
    return module, qual_parts


def check_allowed_module(module: str, allow_modules: Sequence[str] | None) -> bool:
    """Whether `module` matches the allow-list (prefixes match whole dotted components).

    `None` allows every module except `__main__`, which is never allowed: it is whatever
    script happens to run the host, not code a sender can name.
    """
    if module == _MAIN or module.startswith(_MAIN + "."):
        return False
    if allow_modules is None:
        return True
    for prefix in allow_modules:
        prefix = prefix.rstrip(".")
        if prefix and (module == prefix or module.startswith(prefix + ".")):
            return True
    return False


def _describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _resolve(module: str, qual_parts: tuple[str, ...]) -> Any:
    """Import `module` and walk `qual_parts`; raises the underlying exception on failure."""
    obj: Any = importlib.import_module(module)
    for part in qual_parts:
        obj = getattr(obj, part)
    return obj


def resolve_qualified_name(name: str) -> Any:
    """Import the module of "module:qualname" and return the object it names.

    For names this process produced itself; names from the network go through
    `import_class`. Raises `SerializationError` (`ClassImportError` for an import failure).
    """
    cached = _resolved.get(name)
    if cached is not None:
        return cached
    module, qual_parts = parse_qualified_name(name)
    try:
        obj = _resolve(module, qual_parts)
    except Exception as exc:
        raise ClassImportError(
            f"cannot import {name}: {_describe_exception(exc)}",
            class_name=name,
            module=module,
            import_error=_describe_exception(exc),
        ) from exc
    if isinstance(obj, type):
        with _resolve_lock:
            _resolved[name] = obj
    return obj


def import_class(
    name: str,
    *,
    expect: type | None = None,
    allow_modules: Sequence[str] | None = None,
    host_name: str | None = None,
    code_version: str | None = None,
    require_dataclass: bool = False,
) -> type:
    """The import gate for a class name that came from the network.

    Order matters: syntax, then the allow-list (`ForbiddenError`, code `module-not-allowed`,
    nothing imported), then the import (`ClassImportError` naming class, module, the import
    error, host and code version), then the kind check (`SerializationError`, code
    `not-a-paglet`): a class, a subclass of `expect` when given, else a dataclass when
    `require_dataclass`.
    """
    module, qual_parts = parse_qualified_name(name)
    if not check_allowed_module(module, allow_modules):
        where = f" on host {host_name!r}" if host_name else ""
        if module == _MAIN or module.startswith(_MAIN + "."):
            why = "__main__ is never importable by name from the network"
        else:
            allowed = ", ".join(repr(p) for p in allow_modules or ())
            why = (
                f"module {module!r} is not in the import allow-list ({allowed}); "
                "add its package with --allow-module"
            )
        raise ForbiddenError(f"refused to import {name}{where}: {why}", code="module-not-allowed")

    obj = _resolved.get(name)
    if obj is None:
        try:
            obj = _resolve(module, qual_parts)
        except Exception as exc:
            detail = _describe_exception(exc)
            where = f" on host {host_name!r}" if host_name else ""
            version = f" (code version {code_version})" if code_version else ""
            raise ClassImportError(
                f"cannot import {name}{where}{version}: {detail}",
                class_name=name,
                module=module,
                import_error=detail,
                host_name=host_name,
                code_version=code_version,
            ) from exc
        if isinstance(obj, type):
            with _resolve_lock:
                _resolved[name] = obj

    if not isinstance(obj, type):
        raise SerializationError(
            f"{name} names a {type(obj).__name__}, not a class", code="not-a-paglet"
        )
    if expect is not None:
        if not issubclass(obj, expect):
            raise SerializationError(
                f"{name} is not a subclass of {expect.__module__}:{expect.__qualname__}",
                code="not-a-paglet",
            )
    elif require_dataclass and not dataclasses.is_dataclass(obj):
        raise SerializationError(
            f"{name} is not a dataclass (state classes must be decorated with @dataclass)",
            code="not-a-paglet",
        )
    return obj
