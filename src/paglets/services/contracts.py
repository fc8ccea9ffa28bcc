"""Typed service contracts (api.md §16.1): named operations with request and reply types.

A contract is what a caller and a provider agree on without sharing code beyond a few
dataclasses: the contract's name and version, and for each operation its name and the
`module:qualname` of its request and reply types. Records advertise that shape (under the
reserved metadata key `"paglets.service_contract"`), so a lookup only finds providers of the
same name, version and operation types.

Requests travel as the message's `args` in the codec's wire form (api.md §1.6), replies as the
handler's return value in the same form; both are checked on the way in and out, and every
mismatch is a `ServiceContractError` naming the contract, the operation and the types.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from paglets.core.errors import (
    PagletError,
    ServiceContractError,
    ServiceNotFoundError,
)
from paglets.core.messages import Message
from paglets.core.runtime_values import ServiceScope

if TYPE_CHECKING:
    from paglets.services.records import ServiceRecord

__all__ = [
    "CONTRACT_METADATA_KEY",
    "RESIDENT_METADATA_KEY",
    "UNSET",
    "EmptyPayload",
    "ServiceContract",
    "ServiceContractError",
    "ServiceNotFoundError",
    "ServiceOperation",
    "ServiceScope",
]

# Reserved record metadata keys: the contract's shape, and (set by the resident service
# manager only) the lifecycle of a managed resident provider.
CONTRACT_METADATA_KEY = "paglets.service_contract"
RESIDENT_METADATA_KEY = "paglets.resident"

Req = TypeVar("Req")
Rep = TypeVar("Rep")


class _Unset:
    """The "no default given" marker of `ServiceContract.route`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class EmptyPayload:
    """The request or reply of an operation that carries nothing."""


def _type_label(tp: Any) -> str:
    if isinstance(tp, type):
        return f"{tp.__module__}:{tp.__qualname__}"
    return repr(tp)


def _is_struct(tp: type) -> bool:
    # msgspec is imported only when a Struct could be involved: `import paglets` stays light.
    import msgspec

    return issubclass(tp, msgspec.Struct)


def _check_payload_type(tp: Any, role: str, operation: str) -> type:
    if not isinstance(tp, type) or not (dataclasses.is_dataclass(tp) or _is_struct(tp)):
        raise ServiceContractError(
            f"operation {operation!r}: {role} must be a dataclass or msgspec.Struct class, "
            f"got {tp!r}; define one at the top level of an importable module"
        )
    if "<locals>" in tp.__qualname__:
        raise ServiceContractError(
            f"operation {operation!r}: {role} {tp.__qualname__} is defined inside a function, "
            "so no other host can decode it; define it at the top level of a module"
        )
    return tp


@dataclass(frozen=True, slots=True)
class ServiceOperation(Generic[Req, Rep]):
    """One operation of a contract: `name` is the message kind, `request_type` the type of
    its `args`, `reply_type` the type of its reply. Frozen and hashable."""

    name: str
    request_type: type[Req] = EmptyPayload  # type: ignore[assignment]
    reply_type: type[Rep] = EmptyPayload  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ServiceContractError(
                f"a ServiceOperation needs a non-empty name (its message kind), got {self.name!r}"
            )
        _check_payload_type(self.request_type, "request_type", self.name)
        _check_payload_type(self.reply_type, "reply_type", self.name)

    # -- requests ----------------------------------------------------------------------

    def to_message(self, request: Req | None = None) -> Message:
        """The message that calls this operation: kind = name, args = the request's wire
        form (`None` = the request type's default instance)."""
        return Message(self.name, self.encode_request(request))

    def encode_request(self, request: Req | None = None) -> dict[str, Any]:
        if request is None:
            request = self._default(self.request_type, "request")
        if not isinstance(request, self.request_type):
            raise ServiceContractError(
                f"operation {self.name!r} takes a {self.request_type.__qualname__} request, "
                f"got {type(request).__qualname__}"
            )
        return self._encode(request, "request")

    def decode_request(self, message_or_payload: Message | Mapping[str, Any]) -> Req:
        """The typed request from a message (its `args`) or from a wire dict."""
        if isinstance(message_or_payload, Message):
            payload: Any = message_or_payload.args
        else:
            payload = message_or_payload
        if isinstance(payload, self.request_type):
            return payload
        if payload is None:
            payload = {}
        return self._decode(payload, self.request_type, "request")

    # -- replies -----------------------------------------------------------------------

    def encode_reply(self, reply: Rep | None) -> dict[str, Any]:
        if reply is None and self.reply_type is EmptyPayload:
            reply = EmptyPayload()  # type: ignore[assignment]
        if not isinstance(reply, self.reply_type):
            raise ServiceContractError(
                f"operation {self.name!r} replies with a {self.reply_type.__qualname__}, "
                f"but the handler returned {type(reply).__qualname__}"
            )
        return self._encode(reply, "reply")

    def decode_reply(self, payload: Any) -> Rep:
        """The typed reply from its wire form (`None` → `EmptyPayload()` for operations
        that reply with nothing)."""
        if payload is None:
            if self.reply_type is EmptyPayload:
                return EmptyPayload()  # type: ignore[return-value]
            raise ServiceContractError(
                f"operation {self.name!r} should reply with a {self.reply_type.__qualname__}, "
                "but the provider returned nothing"
            )
        if isinstance(payload, self.reply_type):
            return payload
        if not isinstance(payload, Mapping):
            raise ServiceContractError(
                f"operation {self.name!r} should reply with a {self.reply_type.__qualname__}, "
                f"but the provider returned a {type(payload).__qualname__}: {payload!r:.200}"
            )
        return self._decode(payload, self.reply_type, "reply")

    # -- plumbing ----------------------------------------------------------------------

    def _default(self, tp: type, role: str) -> Any:
        try:
            return tp()
        except TypeError as exc:
            raise ServiceContractError(
                f"operation {self.name!r} needs a {tp.__qualname__} {role}: its fields have "
                f"no defaults ({exc})"
            ) from None

    def _encode(self, value: Any, role: str) -> dict[str, Any]:
        from paglets.serialization import codec

        try:
            wire = codec.to_wire_form(value)
        except PagletError as exc:
            raise ServiceContractError(
                f"operation {self.name!r}: the {role} cannot be encoded: {exc}"
            ) from exc
        if not isinstance(wire, dict):
            raise ServiceContractError(
                f"operation {self.name!r}: the {role} type {type(value).__qualname__} must "
                "encode to a dict (an array_like Struct does not)"
            )
        return wire

    def _decode(self, payload: Any, tp: type, role: str) -> Any:
        from paglets.serialization import codec

        try:
            return codec.convert(codec.restore_json_safe(payload), tp, root=role)
        except PagletError as exc:
            raise ServiceContractError(
                f"operation {self.name!r}: the {role} is not a valid {tp.__qualname__}: {exc}"
            ) from exc

    def schema(self) -> dict[str, str]:
        """`{name, request_type, reply_type}` with `module:qualname` type names."""
        return {
            "name": self.name,
            "request_type": _type_label(self.request_type),
            "reply_type": _type_label(self.reply_type),
        }


def _contract_fingerprint(name: str, version: str, schemas: Iterable[dict[str, str]]) -> str:
    ordered = sorted((s["name"], s["request_type"], s["reply_type"]) for s in schemas)
    text = json.dumps([name, version, ordered], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ServiceContract:
    """A named, versioned set of operations. `ServiceContract("echo", (ECHO,), version="1")`."""

    name: str
    operations: tuple[ServiceOperation[Any, Any], ...]
    version: str = "1"
    _by_name: dict[str, ServiceOperation[Any, Any]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _fingerprint: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ServiceContractError(
                f"a ServiceContract needs a non-empty name, got {self.name!r}"
            )
        if not isinstance(self.version, str) or not self.version.strip():
            raise ServiceContractError(
                f"contract {self.name!r}: version must be a non-empty string such as '1', "
                f"got {self.version!r}"
            )
        operations = self.operations
        if isinstance(operations, ServiceOperation):
            operations = (operations,)
        operations = tuple(operations)
        if not operations:
            raise ServiceContractError(f"contract {self.name!r} needs at least one operation")
        by_name: dict[str, ServiceOperation[Any, Any]] = {}
        for op in operations:
            if not isinstance(op, ServiceOperation):
                raise ServiceContractError(
                    f"contract {self.name!r}: operations must be ServiceOperation objects, "
                    f"got {op!r}"
                )
            if op.name in by_name:
                raise ServiceContractError(
                    f"contract {self.name!r} lists operation {op.name!r} twice; names are "
                    "message kinds and must be unique"
                )
            by_name[op.name] = op
        object.__setattr__(self, "operations", operations)
        object.__setattr__(self, "_by_name", by_name)
        fingerprint = _contract_fingerprint(
            self.name, self.version, (op.schema() for op in operations)
        )
        object.__setattr__(self, "_fingerprint", fingerprint)

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The operation names (what records advertise as capabilities)."""
        return tuple(self._by_name)

    @property
    def fingerprint(self) -> str:
        """16 hex chars naming the name, version and operation types (order ignored)."""
        return self._fingerprint

    def operation_for(self, name: str) -> ServiceOperation[Any, Any] | None:
        return self._by_name.get(name)

    def require_operation(self, op: ServiceOperation[Any, Any] | str) -> ServiceOperation[Any, Any]:
        """The contract's operation for `op` (a name or an operation); anything else is a
        `ServiceContractError` listing the operations it has."""
        name = op.name if isinstance(op, ServiceOperation) else op
        found = self._by_name.get(name) if isinstance(name, str) else None
        if found is None or (isinstance(op, ServiceOperation) and op != found):
            known = ", ".join(self._by_name)
            what = "a different" if found is not None else "no"
            raise ServiceContractError(
                f"contract {self.name!r} version {self.version!r} has {what} operation "
                f"{name!r}; it has: {known}"
            )
        return found

    # -- metadata ----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """`{name, version, fingerprint, operations: [{name, request_type, reply_type}]}`."""
        return {
            "name": self.name,
            "version": self.version,
            "fingerprint": self._fingerprint,
            "operations": [op.schema() for op in self.operations],
        }

    def advertise_metadata(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record metadata for advertising this contract: `extra` plus the reserved key
        `"paglets.service_contract"` (which `extra` may not contain)."""
        out: dict[str, Any] = {}
        if extra:
            if not isinstance(extra, Mapping):
                raise ServiceContractError(
                    f"contract {self.name!r}: metadata must be a dict, got {type(extra).__name__}"
                )
            for reserved in (CONTRACT_METADATA_KEY, RESIDENT_METADATA_KEY):
                if reserved in extra:
                    raise ServiceContractError(
                        f"contract {self.name!r}: metadata key {reserved!r} is reserved for "
                        "paglets; use another key"
                    )
            out.update(extra)
        out[CONTRACT_METADATA_KEY] = self.metadata()
        return out

    def matches_record(self, record: ServiceRecord) -> bool:
        """Whether `record` advertises this contract: same name, version and operation
        types (operation order ignored)."""
        if record.name != self.name:
            return False
        meta = record.metadata.get(CONTRACT_METADATA_KEY) if record.metadata else None
        if not isinstance(meta, Mapping):
            return False
        if meta.get("name") != self.name or meta.get("version") != self.version:
            return False
        operations = meta.get("operations")
        if isinstance(operations, list):
            try:
                theirs = _contract_fingerprint(self.name, self.version, operations)
            except (KeyError, TypeError):
                return False
            return theirs == self._fingerprint
        return meta.get("fingerprint") == self._fingerprint

    # -- providers ---------------------------------------------------------------------

    def route(
        self,
        message: Message,
        handlers: Mapping[Any, Callable[[Any], Any]],
        *,
        default: Any = UNSET,
    ) -> Any:
        """Run the handler of `message.kind`: decode the request, call the handler, encode
        its reply. `handlers` maps operation names (or operations) to callables taking the
        request. An unknown kind returns `default`, or raises `ServiceContractError`."""
        op = self._by_name.get(message.kind)
        if op is None:
            if default is not UNSET:
                return default
            raise ServiceContractError(
                f"contract {self.name!r} has no operation {message.kind!r}; it has: "
                + ", ".join(self._by_name)
            )
        handler = handlers.get(op.name)
        if handler is None:
            handler = handlers.get(op)
        if handler is None:
            raise ServiceContractError(
                f"contract {self.name!r}: no handler for operation {op.name!r}; add it to the "
                "handlers mapping"
            )
        return op.encode_reply(handler(op.decode_request(message)))
