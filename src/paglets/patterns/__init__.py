"""Reusable paglet patterns (api.md §17): `tasks`, `operations`, `coordination`,
`notifications`, `file_mobility`.

The package re-exports its submodules and their public names, as paglets 2.0 did
(`from paglets.patterns import TaskPaglet`), but lazily (PEP 562): importing the package
imports none of them; a name's submodule is imported on first use.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

SUBMODULES = ("tasks", "operations", "coordination", "notifications", "file_mobility")

# Where each public name lives; names not listed are searched in every submodule.
_HOMES = {
    "tasks": (
        "TaskClient",
        "TaskPaglet",
        "TaskSnapshot",
        "TaskState",
        "TaskStatus",
        "TaskStatusReply",
    ),
    "coordination": (
        "FANOUT_CHILD_DONE",
        "ChildRoleState",
        "MeshFanoutMixin",
        "MeshFanoutState",
    ),
    "notifications": (
        "USER_INFO_CONTRACT",
        "USER_INFO_NOTIFY",
        "NotificationMixin",
        "NotificationSeverity",
        "user_info_request",
    ),
    "file_mobility": (
        "FileMobilityMixin",
        "FileTransferArrival",
        "FileTransferEndpoint",
        "FileTransferMode",
        "FileTransferPlan",
        "FileTransferRequest",
        "FileTransferResult",
        "FileTransferSource",
        "FileTransferState",
        "SingleFileTransferPaglet",
        "format_bytes",
    ),
    "operations": ("OperationClient", "OperationPaglet"),
}
_NAME_TO_MODULE = {name: module for module, names in _HOMES.items() for name in names}


def _submodule(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            return None  # not written (yet): tolerated, the others still work
        raise


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        module = _submodule(name)
        if module is not None:
            return module
        raise AttributeError(f"module {__name__!r} has no submodule {name!r}")
    home = _NAME_TO_MODULE.get(name)
    candidates = (home,) if home is not None else SUBMODULES
    for candidate in candidates:
        module = _submodule(candidate)
        if module is None or not hasattr(module, name):
            continue
        exported = getattr(module, "__all__", None)
        if home is not None or exported is None or name in exported:
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({"SUBMODULES", *SUBMODULES, *_NAME_TO_MODULE})
