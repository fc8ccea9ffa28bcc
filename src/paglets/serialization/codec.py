"""The paglets codec: typed MessagePack/JSON for states, messages and envelopes (api.md §8).

Everything goes through msgspec, which validates dataclasses against their type hints while
decoding, so a state that arrives on another host is exactly the type its class declares (no
`bool("false")`, no `int | float` truncation, no pickle). This module adds what msgspec leaves
to its users:

* the state check (`check_state_class`): every field type must be in the table of api.md
  §8.2, and unions must be unambiguous, checked once per class before the first encode;
* cached per-class encoders/decoders for the state hot path (`encode_state`/`decode_state`);
* deterministic sets (sorted when sortable), `pathlib` paths and objects with `to_wire()`;
* error messages that name the field path (`state.items[3].when: Expected 'datetime', got
  'int'`) and tell what to change;
* the wire form handlers see (`to_wire_form`, api.md §1.6) and the JSON binary tag (§8.3).

The import gate for class names from the network lives in `names.py` and is re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import collections.abc as cabc
import dataclasses
import enum
import inspect
import re
import threading
import types
import typing
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Literal
from uuid import UUID

import msgspec

from paglets.core.errors import SerializationError
from paglets.serialization.names import (
    check_allowed_module,
    import_class,
    parse_qualified_name,
    qualified_name,
    resolve_qualified_name,
)

__all__ = [
    "BINARY_TAG",
    "check_allowed_module",
    "check_state_class",
    "convert",
    "copy_state",
    "dataclass_from_wire",
    "dataclass_to_wire",
    "decode",
    "decode_state",
    "encode",
    "encode_state",
    "import_class",
    "json_safe",
    "parse_qualified_name",
    "qualified_name",
    "resolve_qualified_name",
    "restore_json_safe",
    "to_wire_form",
    "validate_state",
]

Format = Literal["msgpack", "json"]

BINARY_TAG = "__paglets_binary__"
_BINARY_TAG_BYTES = BINARY_TAG.encode()
_BINARY_TYPES = (bytes, bytearray, memoryview)
_NONE_TYPE = type(None)

# Values msgspec encodes natively and that contain nothing to walk into.
_LEAF_TYPES = frozenset(
    {str, int, float, bool, _NONE_TYPE, bytes, bytearray, memoryview}
    | {datetime, date, time, timedelta, UUID, Decimal}
)
# Leaves of the builtins form (after msgspec.to_builtins): no binary, nothing to tag.
_PLAIN_LEAF_TYPES = frozenset({str, int, float, bool, _NONE_TYPE})


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        module = tp.__module__
        return tp.__qualname__ if module == "builtins" else f"{module}.{tp.__qualname__}"
    return repr(tp)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# ----------------------------------------------------------------------------------------
# Hooks: what msgspec does not know natively.


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, PurePath):
        return str(obj)
    to_wire = getattr(obj, "to_wire", None)
    if to_wire is not None and callable(to_wire):
        return _canonical(to_wire(), False)
    raise TypeError(f"cannot encode a value of type '{_type_name(type(obj))}'")


def _wire_form_hook(obj: Any) -> Any:
    if isinstance(obj, PurePath):
        return str(obj)
    to_wire = getattr(obj, "to_wire", None)
    if to_wire is not None and callable(to_wire):
        return _canonical(to_wire(), True)
    raise TypeError(f"cannot encode a value of type '{_type_name(type(obj))}'")


def _dec_hook(tp: Any, obj: Any) -> Any:
    if tp is object:  # msgspec treats `object` as a custom type; it means "untyped"
        return obj
    if isinstance(tp, type):
        if issubclass(tp, PurePath):
            if isinstance(obj, str):
                return tp(obj)
            raise TypeError(f"Expected `str` (a path), got `{type(obj).__name__}`")
        from_wire = getattr(tp, "from_wire", None)
        if from_wire is not None and isinstance(obj, dict):
            return from_wire(obj)
    # msgspec turns a TypeError raised here into a ValidationError carrying the field path.
    raise TypeError(f"Expected `{getattr(tp, '__name__', tp)}`, got `{type(obj).__name__}`")


_MSGPACK_ENCODER = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_JSON_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_JSON_ANY_DECODER = msgspec.json.Decoder()


# ----------------------------------------------------------------------------------------
# Canonical form: sets sorted (deterministic bytes), optionally tuples as lists. Copies only
# along the paths that change, so a value without sets or tuples is returned as is.

_dataclass_field_names: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _dataclass_field_names.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _dataclass_field_names[cls] = names
    return names


_MISSING = object()


def _canonical(value: Any, tuples_as_lists: bool) -> Any:
    t = type(value)
    if t in _LEAF_TYPES:
        return value
    if t is list or (t is tuple and not tuples_as_lists):
        if _LEAF_TYPES.issuperset(map(type, value)):
            return value
        out = None
        for i, item in enumerate(value):
            new = _canonical(item, tuples_as_lists)
            if new is not item:
                if out is None:
                    out = list(value)
                out[i] = new
        return value if out is None else out
    if t is dict:
        if _LEAF_TYPES.issuperset(map(type, value.values())):
            return value
        out_d = None
        for key, item in value.items():
            new = _canonical(item, tuples_as_lists)
            if new is not item:
                if out_d is None:
                    out_d = dict(value)
                out_d[key] = new
        return value if out_d is None else out_d
    if hasattr(t, "__dataclass_fields__"):  # an instance (a class's type is its metaclass)
        names = _field_names(t)
        changed = False
        items_d = {}
        for name in names:
            item = getattr(value, name, _MISSING)
            if item is _MISSING:
                continue
            new = _canonical(item, tuples_as_lists)
            changed = changed or new is not item
            items_d[name] = new
        return items_d if changed else value
    if t is set or t is frozenset or isinstance(value, cabc.Set):
        items = [_canonical(item, tuples_as_lists) for item in value]
        try:
            items.sort()
        except TypeError:  # not sortable (mixed types, plain enums): iteration order
            pass
        return items
    if isinstance(value, tuple):
        return [_canonical(item, tuples_as_lists) for item in value]
    if isinstance(value, list | dict):
        return _canonical(list(value) if isinstance(value, list) else dict(value), tuples_as_lists)
    return value


# ----------------------------------------------------------------------------------------
# Error messages with field paths.

_AT_KEY = re.compile(r"^(?P<msg>.*) - at `key` in `\$(?P<path>[^`]*)`$", re.DOTALL)
_AT_PATH = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def _path_message(message: str, root: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.a[3]`" -> "root.a[3]: Expected 'int', ..."."""
    match = _AT_KEY.match(message)
    if match is not None:
        where = f"{root}{match['path']} (a key)"
    else:
        match = _AT_PATH.match(message)
        where = f"{root}{match['path']}" if match is not None else root
    text = match["msg"] if match is not None else message
    return f"{where}: {text.replace('`', chr(39))}"


def _decode_error(exc: BaseException, root: str) -> SerializationError:
    if isinstance(exc, SerializationError):
        return exc
    if isinstance(exc, RecursionError):
        text = f"{root}: data is nested too deeply to decode"
    elif isinstance(exc, msgspec.DecodeError):
        text = _path_message(str(exc), root)
    else:
        text = f"{root}: {type(exc).__name__}: {exc}"
    error = SerializationError(text, code="invalid-body")
    error.__cause__ = exc
    return error


def _key_path(path: str, key: Any) -> str:
    return f"{path}[{key!r}]"


def _locate_unencodable(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    """Find the first value under `value` that cannot be encoded (slow path, errors only)."""
    if depth > 200:
        return path, "value is nested too deeply to encode"
    t = type(value)
    if t is int:
        if -(2**63) <= value < 2**64:
            return None
        return path, "integer out of range (MessagePack holds -2**63 .. 2**64-1)"
    if t in _LEAF_TYPES or isinstance(value, enum.Enum | PurePath):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _locate_unencodable(key, f"{path} (key {key!r})", depth + 1)
            found = found or _locate_unencodable(item, _key_path(path, key), depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            found = _locate_unencodable(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for name in _field_names(t):
            found = _locate_unencodable(getattr(value, name, None), f"{path}.{name}", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            found = _locate_unencodable(getattr(value, name, None), f"{path}.{name}", depth + 1)
            if found:
                return found
        return None
    to_wire = getattr(value, "to_wire", None)
    if to_wire is not None and callable(to_wire):
        try:
            wire = to_wire()
        except Exception as exc:
            return path, f"{_type_name(t)}.to_wire() failed: {type(exc).__name__}: {exc}"
        return _locate_unencodable(wire, path, depth + 1)
    hint = ""
    if t.__name__ == "ndarray":
        hint = " (convert the array, e.g. with .tolist() or .tobytes())"
    return path, (
        f"cannot encode a value of type '{_type_name(t)}'{hint}; the paglets codec takes the "
        "types listed in api.md §8.2 (builtins, dataclasses, msgspec Structs, enums, "
        "datetimes, UUID, Decimal, paths, PagletProxyRef)"
    )


def _encode_error(value: Any, exc: BaseException, root: str) -> SerializationError:
    if isinstance(exc, SerializationError):
        return exc
    try:
        found = _locate_unencodable(value, root)
    except RecursionError:
        found = None
    if found is not None:
        text = f"{found[0]}: {found[1]}"
    elif isinstance(exc, RecursionError):
        text = f"{root}: value is nested too deeply to encode"
    else:
        text = f"{root}: {exc}"
    error = SerializationError(text)
    error.__cause__ = exc
    return error


# ----------------------------------------------------------------------------------------
# State classes: the type check (api.md §8.2) and the per-class codec plan.


class _Unsupported(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason


_SCALAR_HINTS = frozenset(
    {str, int, float, bool, _NONE_TYPE, bytes, bytearray}
    | {datetime, date, time, timedelta, UUID, Decimal}
)
_SET_ORIGINS = frozenset({set, frozenset, cabc.Set, cabc.MutableSet})
_SEQUENCE_ORIGINS = frozenset(
    {list, tuple, cabc.Sequence, cabc.MutableSequence, cabc.Collection} | _SET_ORIGINS
)
_MAPPING_ORIGINS = frozenset({dict, cabc.Mapping, cabc.MutableMapping})
_BARE_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})

_PROXY_HINT = (
    "a live PagletProxy cannot be stored in state; store a PagletProxyRef "
    "(paglets.remote.references.PagletProxyRef.from_proxy(proxy)) and call .resolve() "
    "when you need the proxy"
)


@dataclasses.dataclass(slots=True)
class _TypeInfo:
    has_sets: bool = False
    has_any: bool = False


def _class_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    if dataclasses.is_dataclass(cls):
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}
    if isinstance(cls, type) and issubclass(cls, msgspec.Struct):
        return {name: hints.get(name, Any) for name in cls.__struct_fields__}
    if issubclass(cls, tuple):  # NamedTuple
        return {name: hints.get(name, Any) for name in getattr(cls, "_fields", ())}
    return hints  # TypedDict


def _walk_class(cls: type, path: str, info: _TypeInfo, seen: set[type]) -> None:
    if cls in seen:
        return
    seen.add(cls)
    try:
        hints = _class_hints(cls)
    except Exception as exc:
        raise _Unsupported(
            path, f"cannot resolve the type hints of {_class_name(cls)} ({exc})"
        ) from exc
    for name, hint in hints.items():
        _walk_type(hint, f"{path}.{name}", info, seen)


def _walk_type(tp: Any, path: str, info: _TypeInfo, seen: set[type]) -> None:
    """Raise `_Unsupported` for a type hint outside api.md §8.2; note sets and `Any`."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        _walk_type(typing.get_args(tp)[0], path, info, seen)
        return
    if tp is Any or tp is object:
        info.has_any = True
        return
    if tp is None or tp is _NONE_TYPE or origin is Literal:
        return
    if isinstance(tp, typing.TypeVar):
        if tp.__bound__ is not None:
            _walk_type(tp.__bound__, path, info, seen)
        else:
            info.has_any = True
        return
    if isinstance(tp, typing.NewType):
        _walk_type(tp.__supertype__, path, info, seen)
        return
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(tp):
            _walk_type(arg, path, info, seen)
        return
    if origin in _SEQUENCE_ORIGINS:
        if origin in _SET_ORIGINS:
            info.has_sets = True
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            for i, arg in enumerate(args):
                if arg != ():  # tuple[()]
                    _walk_type(arg, f"{path}[{i}]", info, seen)
            return
        _walk_type(args[0] if args else Any, f"{path}[*]", info, seen)
        return
    if origin in _MAPPING_ORIGINS:
        args = typing.get_args(tp) or (Any, Any)
        _walk_type(args[0], f"{path} (key)", info, seen)
        _walk_type(args[1], f"{path}[*]", info, seen)
        return
    if isinstance(origin, type) and (
        dataclasses.is_dataclass(origin) or issubclass(origin, msgspec.Struct)
    ):
        _walk_class(origin, path, info, seen)  # generic dataclass: parameters are TypeVars
        return
    if isinstance(tp, str | typing.ForwardRef):
        raise _Unsupported(path, f"unresolved forward reference {tp!r}")
    if not isinstance(tp, type):
        raise _Unsupported(path, f"type hint {tp!r} is not supported by the paglets codec")
    if tp in _SCALAR_HINTS:
        return
    if tp in _BARE_CONTAINERS:
        info.has_any = True
        info.has_sets = info.has_sets or tp in (set, frozenset)
        return
    if issubclass(tp, enum.Enum | PurePath):
        return
    if tp.__name__ == "PagletProxy":
        raise _Unsupported(path, _PROXY_HINT)
    if (
        dataclasses.is_dataclass(tp)
        or issubclass(tp, msgspec.Struct)
        or typing.is_typeddict(tp)
        or (issubclass(tp, tuple) and hasattr(tp, "_fields"))
    ):
        _walk_class(tp, path, info, seen)
        return
    hint = " (store arrays as list[float] or bytes)" if tp.__name__ == "ndarray" else ""
    raise _Unsupported(
        path,
        f"type '{_type_name(tp)}' is not supported by the paglets codec{hint}; use the types "
        "listed in api.md §8.2 (builtins, dataclasses, msgspec Structs, enums, datetimes, "
        "UUID, Decimal, paths, PagletProxyRef)",
    )


class _StatePlan:
    """What encoding and decoding one state class needs, built once per class."""

    __slots__ = ("cls", "decoder", "field_names", "name", "set_fields")

    def __init__(
        self, cls: type, decoder: msgspec.msgpack.Decoder, set_fields: tuple[str, ...]
    ) -> None:
        self.cls = cls
        self.decoder = decoder
        # Fields whose type can hold a set (a set type or `Any` somewhere inside): only these
        # are walked to sort sets before encoding; all other fields go straight to msgspec.
        self.set_fields = set_fields
        self.field_names = _field_names(cls)
        self.name = _class_name(cls)

    def canonical(self, state: Any) -> Any:
        """`state`, or a dict of its fields with sets sorted where a set field holds one."""
        out = None
        for name in self.set_fields:
            item = getattr(state, name)
            new = _canonical(item, False)
            if new is not item:
                if out is None:
                    out = {n: getattr(state, n) for n in self.field_names}
                out[name] = new
        return state if out is None else out


_plans: dict[type, _StatePlan] = {}
_plans_lock = threading.Lock()
_PROXY_IN_STRING = re.compile(r"\bPagletProxy\b(?!Ref)")


def _undecorated_fields(cls: type) -> list[str]:
    """Annotations a dataclass subclass declares without being decorated (they would be lost)."""
    if "__dataclass_fields__" in cls.__dict__:
        return []
    fields = {f.name for f in dataclasses.fields(cls)}
    own = inspect.get_annotations(cls)
    return [
        name
        for name, hint in own.items()
        if name not in fields and "ClassVar" not in str(hint) and not name.startswith("__")
    ]


def _build_plan(cls: Any) -> _StatePlan:
    if not isinstance(cls, type):
        raise SerializationError(
            f"a state class must be a dataclass type, got a {type(cls).__name__} ({cls!r})"
        )
    name = _class_name(cls)
    if not dataclasses.is_dataclass(cls):
        raise SerializationError(
            f"State class {name} is not a dataclass; decorate it with @dataclass "
            "(state classes are dataclasses only, api.md §1.1)"
        )
    lost = _undecorated_fields(cls)
    if lost:
        raise SerializationError(
            f"State class {name} subclasses a dataclass but is not decorated with @dataclass "
            f"itself, so its fields {', '.join(map(repr, lost))} would not be stored; "
            "decorate it with @dataclass"
        )
    fields = dataclasses.fields(cls)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        for field in fields:
            if isinstance(field.type, str) and _PROXY_IN_STRING.search(field.type):
                raise SerializationError(
                    f"State field {field.name!r} of {name}: {_PROXY_HINT}"
                ) from exc
        raise SerializationError(
            f"State class {name}: cannot resolve its type hints ({type(exc).__name__}: {exc}); "
            "import every type a field uses at module level (not only under TYPE_CHECKING)"
        ) from exc
    set_fields = []
    for field in fields:
        field_path = f"state.{field.name}"
        info = _TypeInfo()
        try:
            # A fresh `seen` per field: a field typed as `cls` itself must see cls's own sets.
            _walk_type(hints.get(field.name, Any), field_path, info, set())
            if info.has_sets or info.has_any:
                set_fields.append(field.name)
        except _Unsupported as bad:
            where = "" if bad.path == field_path else f"{bad.path}: "
            raise SerializationError(
                f"State field {field.name!r} of {name}: {where}{bad.reason}"
            ) from None
    try:
        decoder = msgspec.msgpack.Decoder(cls, dec_hook=_dec_hook)
    except (TypeError, ValueError) as exc:
        for field in fields:  # name the field whose type msgspec refuses (ambiguous union...)
            try:
                msgspec.msgpack.Decoder(hints.get(field.name, Any), dec_hook=_dec_hook)
            except (TypeError, ValueError) as field_exc:
                raise SerializationError(
                    f"State field {field.name!r} of {name}: {field_exc} (a union may hold at "
                    "most one dict-like, one array-like and one str-like type; use tagged "
                    "msgspec Structs to tell several object types apart)"
                ) from None
        raise SerializationError(f"State class {name}: {exc}") from None
    return _StatePlan(cls, decoder, tuple(set_fields))


def _plan(cls: Any) -> _StatePlan:
    plan = _plans.get(cls)
    if plan is None:
        plan = _build_plan(cls)
        with _plans_lock:
            plan = _plans.setdefault(cls, plan)
    return plan


def check_state_class(cls: type) -> None:
    """Check that `cls` is a dataclass whose field types are all in api.md §8.2 (cached).

    Raises `SerializationError` naming the field, e.g. `State field 'x' of mod:Cls: ...`; a
    `PagletProxy` field gets a hint to store a `PagletProxyRef` instead.
    """
    _plan(cls)


def encode_state(state: Any) -> bytes:
    """MessagePack bytes of a state (a dataclass instance whose class passes the check)."""
    plan = _plans.get(type(state))
    if plan is None:
        plan = _plan(type(state))
    try:
        if plan.set_fields:
            return _MSGPACK_ENCODER.encode(plan.canonical(state))
        return _MSGPACK_ENCODER.encode(state)
    except Exception as exc:
        raise _encode_error(state, exc, "state") from exc


def decode_state(cls: type, data: bytes | bytearray | memoryview) -> Any:
    """Decode MessagePack `data` as an instance of state class `cls`, validating every field.

    `data` may be any buffer (no copy is made of it); errors are `SerializationError` naming
    the field path.
    """
    plan = _plans.get(cls)
    if plan is None:
        plan = _plan(cls)
    try:
        return plan.decoder.decode(data)
    except Exception as exc:
        raise _decode_error(exc, "state") from exc


def copy_state(state: Any) -> Any:
    """A deep copy of `state` made by a round trip through the codec (what a move does)."""
    return decode_state(type(state), encode_state(state))


def validate_state(state: Any, cls: type | None = None) -> None:
    """Check that `state` encodes and its bytes decode as its class (what create/clone do).

    With `cls`, `state` must also be exactly of that class (a paglet's declared `State`).
    """
    if cls is not None and type(state) is not cls:
        raise SerializationError(
            f"state is a {_type_name(type(state))}, but the paglet declares State = "
            f"{_class_name(cls)}; pass an instance of {cls.__qualname__}"
        )
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        raise SerializationError(
            f"state must be a dataclass instance, got a {_type_name(type(state))}"
        )
    copy_state(state)


# ----------------------------------------------------------------------------------------
# General values: encode/decode/convert, the wire form, JSON binary tags.

_msgpack_decoders: dict[Any, msgspec.msgpack.Decoder] = {}
_json_decoders: dict[Any, msgspec.json.Decoder] = {}


def _cached_decoder(cache: dict[Any, Any], factory: Any, tp: Any) -> Any:
    try:
        decoder = cache.get(tp)
    except TypeError:  # unhashable type hint (e.g. Annotated with a dict)
        return factory(tp, dec_hook=_dec_hook)
    if decoder is None:
        decoder = factory(tp, dec_hook=_dec_hook)
        if len(cache) < 4096:
            cache[tp] = decoder
    return decoder


def _check_format(format: str) -> None:
    if format not in ("msgpack", "json"):
        raise ValueError(f"format must be 'msgpack' or 'json', got {format!r}")


def encode(value: Any, *, format: Format = "msgpack") -> bytes:
    """Encode any supported value. MessagePack keeps binary as `bin`; JSON tags it (§8.3)."""
    _check_format(format)
    try:
        if format == "msgpack":
            return _MSGPACK_ENCODER.encode(_canonical(value, False))
        return _JSON_ENCODER.encode(json_safe(value))
    except Exception as exc:
        raise _encode_error(value, exc, "value") from exc


def decode(
    data: bytes | bytearray | memoryview | str,
    type: Any = Any,
    *,
    format: Format = "msgpack",
    root: str = "value",
) -> Any:
    """Decode `data`, validated against `type` (untyped with `Any`: dataclasses come back as
    dicts). JSON binary tags are restored; typed JSON `bytes` also take plain base64.
    `root` names the value in error paths (`root.items[2]: Expected ...`)."""
    _check_format(format)
    try:
        if format == "msgpack":
            return _cached_decoder(_msgpack_decoders, msgspec.msgpack.Decoder, type).decode(data)
        if not isinstance(data, bytes | bytearray | str):
            data = bytes(data)
        if type is Any or type is object:
            return restore_json_safe(_JSON_ANY_DECODER.decode(data))
        tag = BINARY_TAG if isinstance(data, str) else _BINARY_TAG_BYTES
        if tag not in data:  # type: ignore[operator]
            return _cached_decoder(_json_decoders, msgspec.json.Decoder, type).decode(data)
        obj = restore_json_safe(_JSON_ANY_DECODER.decode(data))
        return msgspec.convert(obj, type, strict=True, str_keys=True, dec_hook=_dec_hook)
    except Exception as exc:
        raise _decode_error(exc, root) from exc


def convert(obj: Any, type: Any, *, root: str = "value") -> Any:
    """Convert builtins (e.g. a handler's wire form) to `type`, strictly (ints are accepted
    for floats, JSON's string keys for int keys); errors name the path."""
    try:
        return msgspec.convert(obj, type, strict=True, str_keys=True, dec_hook=_dec_hook)
    except Exception as exc:
        raise _decode_error(exc, root) from exc


def to_wire_form(value: Any) -> Any:
    """The builtins form handlers see (api.md §1.6): dataclasses -> dicts, enums -> values,
    tuples/sets -> lists (sets sorted when sortable), datetimes -> ISO strings, bytes kept
    as the same objects, objects with `to_wire()` through it."""
    try:
        return msgspec.to_builtins(
            _canonical(value, True), builtin_types=_BINARY_TYPES, enc_hook=_wire_form_hook
        )
    except Exception as exc:
        raise _encode_error(value, exc, "value") from exc


def dataclass_to_wire(value: Any) -> dict[str, Any]:
    """A dataclass instance as a builtins dict (bytes/bytearray kept native)."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise SerializationError(
            f"dataclass_to_wire needs a dataclass instance, got a {_type_name(type(value))}"
        )
    return to_wire_form(value)


def dataclass_from_wire(cls: type, payload: Any) -> Any:
    """Build `cls` from a wire dict, validated against its type hints: unknown keys are
    ignored, missing keys take their defaults, binary tags are restored."""
    if not isinstance(payload, dict):
        raise SerializationError(
            f"{cls.__qualname__}: expected a dict to build it from, got "
            f"{_type_name(type(payload))}",
            code="invalid-body",
        )
    return convert(restore_json_safe(payload), cls, root=cls.__qualname__)


def _tag_binary(value: Any) -> Any:
    t = type(value)
    if t in _PLAIN_LEAF_TYPES:
        return value
    if t is bytes or t is bytearray or t is memoryview:
        return {
            BINARY_TAG: "bytearray" if t is bytearray else "bytes",
            "base64": base64.b64encode(value).decode("ascii"),
        }
    if t is list or t is tuple:
        if _PLAIN_LEAF_TYPES.issuperset(map(type, value)):
            return list(value)
        return [_tag_binary(item) for item in value]
    if t is dict:
        return {key: _tag_binary(item) for key, item in value.items()}
    return value


def json_safe(value: Any) -> Any:
    """The JSON-ready form of `value`: its wire form with binary values as §8.3 tags."""
    return _tag_binary(to_wire_form(value))


def _restore_tag(value: dict[str, Any]) -> Any:
    kind = value[BINARY_TAG]
    data = value["base64"]
    if kind not in ("bytes", "bytearray") or not isinstance(data, str):
        return value
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SerializationError(
            f"invalid base64 in a {BINARY_TAG} value: {exc}", code="invalid-body"
        ) from None
    return bytearray(raw) if kind == "bytearray" else raw


def restore_json_safe(value: Any) -> Any:
    """Undo `json_safe`'s binary tags, recursively over lists and dicts. Only a dict with
    exactly the keys `__paglets_binary__` and `base64` is restored; containers without tags
    are returned as they are (not copied)."""
    t = type(value)
    if t is dict:
        if len(value) == 2 and BINARY_TAG in value and "base64" in value:
            return _restore_tag(value)
        out = None
        for key, item in value.items():
            if type(item) in _PLAIN_LEAF_TYPES:
                continue
            new = restore_json_safe(item)
            if new is not item:
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out
    if t is list or t is tuple:
        out_l = None
        for i, item in enumerate(value):
            if type(item) in _PLAIN_LEAF_TYPES:
                continue
            new = restore_json_safe(item)
            if new is not item:
                if out_l is None:
                    out_l = list(value)
                out_l[i] = new
        if out_l is None:
            return value
        return tuple(out_l) if t is tuple else out_l
    return value
