"""Enums shared by the runtime, and the two helpers that parse them strictly."""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Any, TypeVar

__all__ = [
    "ArrivalMode",
    "CheckpointMode",
    "EnvelopeKind",
    "Isolation",
    "LaunchConfigSyncAction",
    "ResidentLifecycle",
    "ServiceScope",
    "enum_from_wire",
    "require_enum",
]

E = TypeVar("E", bound=Enum)


class ServiceScope(StrEnum):
    LOCAL = "local"
    MESH = "mesh"


class ResidentLifecycle(StrEnum):
    LAZY = "lazy"
    EAGER = "eager"


class ArrivalMode(StrEnum):
    ACTIVATE = "activate"
    INACTIVE = "inactive"


class EnvelopeKind(StrEnum):
    DISPATCH = "dispatch"
    CLONE = "clone"
    RETRACT = "retract"
    ACTIVATION = "activation"


class LaunchConfigSyncAction(StrEnum):
    NONE = "none"
    CREATED = "created"
    UPDATED = "updated"
    SKIPPED = "skipped"


class Isolation(StrEnum):
    HOST = "host"
    PROCESS = "process"


class CheckpointMode(StrEnum):
    INTERVAL = "interval"
    ALWAYS = "always"
    NEVER = "never"


def require_enum(value: Any, enum_cls: type[E], field: str) -> E:
    """Python constructors take members only: a raw value is a `TypeError`."""
    if isinstance(value, enum_cls):
        return value
    raise TypeError(f"{field} must be a {enum_cls.__name__} member, got {value!r}")


def enum_from_wire(enum_cls: type[E], value: Any, field: str) -> E:
    """Parse a wire value; an unknown one is a `ValueError` listing the allowed values."""
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_cls)
        raise ValueError(f"{field} must be one of: {allowed} (got {value!r})") from None


def coerce_enum(value: Any, enum_cls: type[E], field: str) -> E:
    """Class attributes accept members and values alike (`ISOLATION = "process"`)."""
    return enum_from_wire(enum_cls, value, field)
