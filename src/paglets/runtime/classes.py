"""What the host checks, once, about a paglet class before it uses it."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from paglets.core.agent import Paglet
from paglets.core.errors import ForbiddenError, HostError, SerializationError
from paglets.core.runtime_values import CheckpointMode, Isolation, enum_from_wire
from paglets.serialization import codec

__all__ = ["ClassSpec", "ClassSpecs"]


@dataclass(frozen=True, slots=True)
class ClassSpec:
    cls: type[Paglet[Any]]
    class_name: str
    state_cls: type[Any]
    state_class_name: str
    overrides_run: bool
    checkpoint: CheckpointMode
    isolation: Isolation
    state_version: int
    init_type: Any
    subscribed: frozenset[str] | None
    async_handler: bool


class ClassSpecs:
    """Cache of checked classes, by class object and by `module:qualname`."""

    def __init__(self, allow_modules: list[str] | None, host_name: str, code_version: str) -> None:
        self._by_cls: dict[type, ClassSpec] = {}
        self._by_name: dict[str, ClassSpec] = {}
        self._lock = threading.Lock()
        self._allow_modules = allow_modules
        self._host_name = host_name
        self._code_version = code_version

    def get(self, agent_cls: type[Paglet[Any]] | str) -> ClassSpec:
        spec = (
            self._by_cls.get(agent_cls)
            if isinstance(agent_cls, type)
            else self._by_name.get(agent_cls)
        )
        if spec is not None:
            return spec
        if isinstance(agent_cls, str):
            if agent_cls.startswith("__main__:"):
                raise ForbiddenError(
                    f"cannot load {agent_cls}: classes from __main__ are never imported by name (no "
                    "other process can import them); define it at top level of an importable module",
                    code="module-not-allowed",
                )
            if "<locals>" in agent_cls:
                raise SerializationError(
                    f"cannot load {agent_cls}: it was defined inside a function, so no "
                    "other process can import it; define it at top level of an importable module",
                    code="not-a-paglet",
                )
            cls = codec.import_class(
                agent_cls,
                expect=Paglet,
                allow_modules=self._allow_modules,
                host_name=self._host_name,
                code_version=self._code_version,
            )
        elif isinstance(agent_cls, type) and issubclass(agent_cls, Paglet):
            cls = agent_cls
        else:
            raise HostError(
                f"{agent_cls!r} is not a Paglet class: pass a subclass of paglets.Paglet or its 'module:qualname'"
            )
        spec = self._check(cls)
        with self._lock:
            self._by_cls[cls] = spec
            self._by_name[spec.class_name] = spec
            if isinstance(agent_cls, str):
                self._by_name[agent_cls] = spec
        return spec

    def _check(self, cls: type[Paglet[Any]]) -> ClassSpec:
        name = f"{cls.__module__}.{cls.__qualname__}"
        state_cls = cls.state_class()
        codec.check_state_class(state_cls)
        try:
            checkpoint = enum_from_wire(CheckpointMode, cls.CHECKPOINT, f"{name}.CHECKPOINT")
            isolation = enum_from_wire(Isolation, cls.ISOLATION, f"{name}.ISOLATION")
        except ValueError as exc:
            raise HostError(str(exc)) from None
        if not isinstance(cls.STATE_VERSION, int) or cls.STATE_VERSION < 1:
            raise HostError(f"{name}.STATE_VERSION must be an int >= 1, got {cls.STATE_VERSION!r}")
        subscribed = cls.SUBSCRIBED_MESSAGES
        if subscribed is not None and (
            isinstance(subscribed, str) or not all(isinstance(k, str) for k in subscribed)
        ):
            raise HostError(f"{name}.SUBSCRIBED_MESSAGES must be None or a tuple of message kinds")
        try:
            class_name = codec.qualified_name(cls)
            state_class_name = codec.qualified_name(state_cls)
        except Exception:
            # Classes in __main__ or <locals> can live on this host but never move or sleep;
            # they get a best-effort name and fail clearly when they try.
            class_name = f"{cls.__module__}:{cls.__qualname__}"
            state_class_name = f"{state_cls.__module__}:{state_cls.__qualname__}"
        return ClassSpec(
            cls=cls,
            class_name=class_name,
            state_cls=state_cls,
            state_class_name=state_class_name,
            overrides_run=cls.run is not Paglet.run,
            checkpoint=checkpoint,
            isolation=isolation,
            state_version=cls.STATE_VERSION,
            init_type=cls.Init,
            subscribed=None if subscribed is None else frozenset(subscribed),
            async_handler=asyncio.iscoroutinefunction(cls.handle_message),
        )
