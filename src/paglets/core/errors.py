"""The paglets error tree, its wire form, and how remote errors are rebuilt.

Every error a paglet, host or client raises on purpose is a `PagletError`. The wire form
(`to_wire`/`error_from_wire`) keeps the type name, message and traceback so that a handler's
exception reaches its caller with its original type wherever the handler ran.
"""

from __future__ import annotations

import builtins
import threading
import traceback as _traceback
from typing import Any

__all__ = [
    "AuthenticationError",
    "ClassImportError",
    "DuplicateAgentError",
    "ForbiddenError",
    "HostError",
    "InvalidAgentError",
    "InvalidAgentIdError",
    "LifecycleError",
    "NotHandledError",
    "PagletCrashedError",
    "PagletError",
    "PagletInactiveError",
    "PagletMovedError",
    "PagletTimeoutError",
    "RemoteHandlerError",
    "RemoteHostError",
    "ResourceCleanupError",
    "SerializationError",
    "ServiceContractError",
    "ServiceNotFoundError",
    "StorageQuotaError",
    "TransferError",
    "TransferTimeoutError",
    "error_from_wire",
    "error_to_wire",
    "http_status_for",
    "register_error_type",
]


class PagletError(Exception):
    """Base of every paglets error.

    `remote_type`, `remote_traceback` and `host_name` are set when the error was raised on
    another host (or in a handler) and rebuilt here; they are `None` for local errors.
    """

    remote_type: str | None = None
    remote_traceback: str | None = None
    host_name: str | None = None
    code: str | None = None

    def __init__(self, message: str = "", *args: Any, code: str | None = None) -> None:
        super().__init__(message, *args)
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SerializationError(PagletError):
    """A value could not be encoded or decoded (the message names the field path)."""


class ClassImportError(SerializationError):
    """A class named `module:qualname` could not be imported on a host."""

    def __init__(
        self,
        message: str = "",
        *,
        class_name: str | None = None,
        module: str | None = None,
        import_error: str | None = None,
        host_name: str | None = None,
        code_version: str | None = None,
    ) -> None:
        super().__init__(message, code="import-failed")
        self.class_name = class_name
        self.module = module
        self.import_error = import_error
        self.host_name = host_name
        self.code_version = code_version


class HostError(PagletError):
    """The host refused or could not do what was asked."""


class ServiceContractError(HostError):
    """A service call does not fit its contract."""


class ServiceNotFoundError(ServiceContractError):
    """No service matches the lookup."""


class DuplicateAgentError(HostError):
    """A paglet with this id already exists on the host."""


class AuthenticationError(PagletError):
    """Missing or wrong mesh key."""


class ForbiddenError(PagletError):
    """The caller may not do this (e.g. act on another paglet's behalf, a module not allowed)."""


class InvalidAgentError(PagletError):
    """No such paglet (anywhere the caller could look)."""


class PagletInactiveError(PagletError):
    """The paglet is inactive and the message may not activate or queue."""


class PagletCrashedError(PagletError):
    """The paglet's process died; dispose it or activate it to restart from its checkpoint."""


class NotHandledError(PagletError):
    """The handler did not handle this message kind."""


class TransferError(PagletError):
    """A move (dispatch, clone, retract) failed; the paglet stayed where it was."""

    def __init__(
        self, message: str = "", *args: Any, stage: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, *args, code=code)
        self.stage = stage


class RemoteHostError(PagletError):
    """A host could not be reached or answered with an error outside the paglets tree."""


class PagletTimeoutError(RemoteHostError, TimeoutError):
    """A wait ran out of time (a send, a turn, a transfer)."""


class TransferTimeoutError(TransferError, PagletTimeoutError):
    """A move's prepare step did not complete within the ticket's timeout."""


class RemoteHandlerError(HostError, RemoteHostError):
    """A handler raised an exception whose type is not a paglets error."""


class LifecycleError(PagletError):
    """A lifecycle operation is not possible in the paglet's current state."""


class ResourceCleanupError(LifecycleError):
    """A registered resource's cleanup failed, so the operation that needed it aborted."""


class StorageQuotaError(PagletError):
    """A write would exceed the storage quota."""


class PagletMovedError(PagletError):
    """Internal: the paglet left this host; `moved` says where to (network.md §1.6).

    The HTTP layer answers it with `307` and a `moved` block; clients follow it themselves.
    Never raised to user code.
    """

    def __init__(self, message: str = "", *, moved: dict[str, Any] | None = None) -> None:
        super().__init__(message, code="moved")
        self.moved: dict[str, Any] = moved or {}


class InvalidAgentIdError(PagletError, ValueError):
    """An agent id does not match `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` or contains `..`."""


# ----------------------------------------------------------------------------------------
# Registry of known types, used to rebuild errors from their wire form.

_known: dict[str, type[BaseException]] = {}
_builtin_proxies: dict[str, type[RemoteHandlerError]] = {}
_proxy_lock = threading.Lock()


def register_error_type(cls: type[BaseException]) -> type[BaseException]:
    """Make `cls` known so that an error of this type arriving from a handler keeps its class.

    Usable as a decorator. Keyed by the class name (the wire's `error_type`).
    """
    _known[cls.__name__] = cls
    return cls


for _cls in (
    PagletError,
    SerializationError,
    ClassImportError,
    HostError,
    ServiceContractError,
    ServiceNotFoundError,
    DuplicateAgentError,
    AuthenticationError,
    ForbiddenError,
    InvalidAgentError,
    PagletInactiveError,
    PagletCrashedError,
    NotHandledError,
    TransferError,
    RemoteHostError,
    PagletTimeoutError,
    TransferTimeoutError,
    RemoteHandlerError,
    LifecycleError,
    ResourceCleanupError,
    StorageQuotaError,
    InvalidAgentIdError,
    PagletMovedError,
):
    register_error_type(_cls)


_STATUS: list[tuple[type[BaseException], int]] = [
    (PagletMovedError, 307),
    (AuthenticationError, 401),
    (ForbiddenError, 403),
    (InvalidAgentError, 404),
    (DuplicateAgentError, 409),
    (NotHandledError, 422),
    (PagletTimeoutError, 504),
    (StorageQuotaError, 507),
    (RemoteHandlerError, 500),
    (InvalidAgentIdError, 400),
    (PagletError, 400),
]


def http_status_for(exc: BaseException) -> int:
    """The HTTP status that carries `exc` (network.md §1.5); 500 for non-paglets errors."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_to_wire(
    exc: BaseException, *, host_name: str | None = None, with_traceback: bool = True
) -> dict[str, Any]:
    """The wire form `{error_type, error, error_module, traceback, host_name}` (+ `code`)."""
    remote_type = getattr(exc, "remote_type", None)
    if remote_type:
        module, _, name = remote_type.rpartition(":")
        if not name:
            module, name = "", remote_type
    else:
        name, module = type(exc).__name__, type(exc).__module__
    tb = getattr(exc, "remote_traceback", None)
    if tb is None and with_traceback and exc.__traceback__ is not None:
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
    wire: dict[str, Any] = {
        "error_type": name,
        "error": str(exc),
        "error_module": module,
        "traceback": tb,
        "host_name": getattr(exc, "host_name", None) or host_name,
    }
    code = getattr(exc, "code", None)
    if code:
        wire["code"] = code
    stage = getattr(exc, "stage", None)
    if stage:
        wire["stage"] = stage
    return wire


def _builtin_proxy(name: str) -> type[RemoteHandlerError] | None:
    base = getattr(builtins, name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)):
        return None
    with _proxy_lock:
        cls = _builtin_proxies.get(name)
        if cls is None:
            try:
                cls = type(f"Remote{name}", (RemoteHandlerError, base), {"__module__": __name__})
            except TypeError:  # layout conflict (e.g. OSError subclasses with C slots)
                return None
            _builtin_proxies[name] = cls
        return cls


def error_from_wire(wire: dict[str, Any]) -> PagletError:
    """Rebuild an error: known paglets types keep their class, builtins arrive as a class
    deriving from both `RemoteHandlerError` and the builtin, anything else as
    `RemoteHandlerError` with `remote_type="module:qualname"`."""
    name = str(wire.get("error_type") or "RemoteHandlerError")
    module = str(wire.get("error_module") or "")
    message = str(wire.get("error") or "")
    exc: PagletError
    known = _known.get(name)
    if known is not None and issubclass(known, PagletError):
        exc = known.__new__(known)
        PagletError.__init__(exc, message)
        if isinstance(exc, TransferError):
            exc.stage = wire.get("stage")
        if isinstance(exc, ClassImportError):
            exc.class_name = exc.module = exc.import_error = exc.code_version = None
    elif known is not None:
        proxy = _builtin_proxy(name) if module == "builtins" else None
        exc = (proxy or RemoteHandlerError)(message)
    else:
        proxy = _builtin_proxy(name) if module in ("builtins", "") else None
        exc = (proxy or RemoteHandlerError)(message)
    exc.remote_type = f"{module}:{name}" if module else name
    exc.remote_traceback = wire.get("traceback")
    exc.host_name = wire.get("host_name")
    if wire.get("code"):
        exc.code = wire["code"]
    return exc


def as_caller_error(exc: BaseException, *, host_name: str | None = None) -> PagletError:
    """What a caller sees for an exception raised by a handler on this host.

    paglets errors pass through unchanged; others go through the wire form so a local send
    and a remote one raise the same type (`__cause__` keeps the original).
    """
    if isinstance(exc, PagletError):
        return exc
    rebuilt = error_from_wire(error_to_wire(exc, host_name=host_name))
    rebuilt.__cause__ = exc
    return rebuilt
