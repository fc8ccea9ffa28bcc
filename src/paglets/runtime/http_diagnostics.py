"""`POST /diagnostics/import` (network.md §1.8): can this host import these classes, and
from where? What `paglets doctor` asks every host.

Names go through the same import gate as any class name from the network
(`codec.import_class`: syntax, allow-list, import, kind), after authentication.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import Meta, Struct

from paglets.core.agent import Paglet
from paglets.core.errors import PagletError
from paglets.runtime.http_wire import SERVER_KEY, decode_body, read_body, reply
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.http_api import HttpServer

__all__ = ["diagnostics_import"]

IMPORT_NAMES_MAX = 256


class ImportBody(Struct):
    names: Annotated[list[str], Meta(max_length=IMPORT_NAMES_MAX)]
    expect: Literal["paglet", "state", "any"] = "any"


async def diagnostics_import(request: web.Request) -> web.Response:
    server: HttpServer = request.app[SERVER_KEY]
    data = await read_body(request, server.control_limit)
    body: ImportBody = decode_body(request, data, ImportBody)
    result = await server.run_blocking(_diagnose, server, body.names, body.expect)
    return reply(request, result)


_distributions: dict[str, list[str]] | None = None
_distributions_lock = threading.Lock()


def _distribution(module: str) -> tuple[str | None, str | None]:
    global _distributions
    with _distributions_lock:
        if _distributions is None:
            try:
                _distributions = dict(importlib.metadata.packages_distributions())
            except Exception:
                _distributions = {}
    names = _distributions.get(module.partition(".")[0]) or []
    if not names:
        return None, None
    try:
        return names[0], importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        return names[0], None


def _diagnose_one(server: HttpServer, name: str, expect: str) -> dict[str, Any]:
    host = server.host
    out: dict[str, Any] = {
        "name": name,
        "ok": False,
        "kind": None,
        "state_class_name": None,
        "module_file": None,
        "module_mtime": None,
        "distribution": None,
        "version": None,
        "error_type": None,
        "error": None,
        "traceback_tail": None,
    }
    try:
        cls = codec.import_class(
            name,
            expect=Paglet if expect == "paglet" else None,
            require_dataclass=expect == "state",
            allow_modules=host.allow_modules,
            host_name=host.name,
            code_version=host.mesh_version,
        )
    except PagletError as exc:
        out["error_type"] = type(exc).__name__
        out["error"] = str(exc)
        out["code"] = getattr(exc, "code", None)
        cause = exc.__cause__
        if cause is not None and cause.__traceback__ is not None:
            lines = traceback.format_exception(type(cause), cause, cause.__traceback__)
            out["traceback_tail"] = "".join(lines)[-2000:]
        return out
    module_name = cls.__module__
    if isinstance(cls, type) and issubclass(cls, Paglet):
        out["kind"] = "paglet"
        try:
            out["state_class_name"] = codec.qualified_name(cls.state_class())
        except Exception as exc:
            out["state_class_name"] = None
            out["error"] = f"state class: {type(exc).__name__}: {exc}"
    elif dataclasses.is_dataclass(cls) or (
        isinstance(cls, type) and issubclass(cls, msgspec.Struct)
    ):
        out["kind"] = "state"
    else:
        out["kind"] = "class"
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path:
        out["module_file"] = path
        try:
            out["module_mtime"] = os.stat(path).st_mtime
        except OSError:
            pass
    out["distribution"], out["version"] = _distribution(module_name)
    out["ok"] = True
    return out


def _diagnose(server: HttpServer, names: list[str], expect: str) -> dict[str, Any]:
    return {
        "results": {name: _diagnose_one(server, name, expect) for name in names},
        "code_version": server.host.mesh_version,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "sys_path_head": sys.path[:8],
        "started_at_age_s": round(time.time() - server.started_at, 3),
    }
