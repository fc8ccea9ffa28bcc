"""The codec (api.md §8): type table round trips, rejections with field paths, the import
gate, the wire form, JSON binary tags, and hypothesis round-trip/rejection properties."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import sys
import tracemalloc
import uuid
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paglets.core.errors import ClassImportError, ForbiddenError, SerializationError
from paglets.remote.references import PagletProxyRef
from paglets.serialization import codec
from paglets.serialization.codec import (
    check_allowed_module,
    check_state_class,
    convert,
    copy_state,
    dataclass_from_wire,
    dataclass_to_wire,
    decode,
    decode_state,
    encode,
    encode_state,
    import_class,
    json_safe,
    qualified_name,
    resolve_qualified_name,
    restore_json_safe,
    to_wire_form,
    validate_state,
)

FORMATS = ("msgpack", "json")
ZERO_UUID = uuid.UUID(int=0)

# ----------------------------------------------------------------------------------------
# Models (module level so that their qualified names resolve).


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


class Shape(msgspec.Struct):
    sides: int
    name: str = "polygon"


@dataclasses.dataclass
class Leaf:
    text: str = ""
    number: int = 0
    ratio: float = 0.0
    flag: bool = False
    nothing: None = None
    blob: bytes = b""
    buffer: bytearray = dataclasses.field(default_factory=bytearray)
    when: dt.datetime = dt.datetime(2024, 1, 1)
    day: dt.date = dt.date(2024, 1, 1)
    at: dt.time = dt.time(0, 0)
    span: dt.timedelta = dt.timedelta(0)
    uid: uuid.UUID = ZERO_UUID
    amount: Decimal = Decimal("0")
    color: Color = Color.RED
    priority: Priority = Priority.LOW
    mode: Mode = Mode.FAST
    choice: Literal["a", "b"] = "a"
    where: Path = Path(".")
    pure: PurePath = dataclasses.field(default_factory=lambda: PurePath("x"))
    ref: PagletProxyRef | None = None
    num: int | float = 0
    maybe: int | None = None


@dataclasses.dataclass
class Tree:
    leaves: list[Leaf] = dataclasses.field(default_factory=list)
    tags: set[str] = dataclasses.field(default_factory=set)
    frozen: frozenset[int] = frozenset()
    pair: tuple[int, str] = (0, "")
    many: tuple[float, ...] = ()
    by_id: dict[int, str] = dataclasses.field(default_factory=dict)
    by_name: dict[str, Leaf] = dataclasses.field(default_factory=dict)
    shape: Shape | None = None
    child: Tree | None = None
    extra: Any = None


@dataclasses.dataclass
class Item:
    name: str
    when: dt.datetime


@dataclasses.dataclass
class Basket:
    items: list[Item] = dataclasses.field(default_factory=list)
    note: str = "n"


@dataclasses.dataclass
class Small:
    count: int = 0
    label: str = "hello"
    scores: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Required:
    name: str
    size: int = 1


@dataclasses.dataclass
class Big:
    payload: bytes = b""


@dataclasses.dataclass
class Untyped:
    value: Any = None
    obj: object = None


class ndarray:  # stands in for numpy.ndarray
    def __init__(self, data: list[float]) -> None:
        self.data = data


class PagletProxy:  # stands in for paglets.remote.proxy.PagletProxy (checked by name)
    def __init__(self, host_url: str, agent_id: str) -> None:
        self.host_url = host_url
        self.agent_id = agent_id

    def to_wire(self) -> dict[str, str]:
        return {"host_url": self.host_url, "agent_id": self.agent_id}


@dataclasses.dataclass
class WithArray:
    values: ndarray | None = None


@dataclasses.dataclass
class Holder:
    arrays: list[WithArray] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WithProxy:
    peer: PagletProxy | None = None


@dataclasses.dataclass
class WithProxyForwardRef:
    peer: remote_proxy.PagletProxy | None = None  # type: ignore[name-defined]  # noqa: F821


@dataclasses.dataclass
class Ambiguous:
    value: Leaf | dict[str, int] | None = None


@dataclasses.dataclass
class Node:
    name: str = ""
    children: list[Node] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class NotDecoratedBase:
    a: int = 0


class NotDecorated(NotDecoratedBase):
    b: int = 0


class PlainClass:
    pass


class Wired:
    """Not a dataclass: encodes through its to_wire()."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind, "args": (1, 2)}


class Base:
    pass


class Sub(Base):
    pass


def _roundtrip(value: Any, tp: Any, fmt: str) -> Any:
    return decode(encode(value, format=fmt), tp, format=fmt)


# ----------------------------------------------------------------------------------------
# §8.2 type table, row by row.


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("value", "tp"),
    [
        ("text", str),
        ("", str),
        (7, int),
        (-(2**63), int),
        (True, bool),
        (False, bool),
        (None, None),
        (2.5, float),
        (3.5, int | float),
        (3, int | float),
        (b"\x00\xffbin", bytes),
        (bytearray(b"\x01\x02"), bytearray),
        ([1, 2, 3], list[int]),
        ({3, 1, 2}, set[int]),
        (frozenset({"b", "a"}), frozenset[str]),
        ((1.5, 2.5, 3.5), tuple[float, ...]),
        ((1, "one"), tuple[int, str]),
        ({1: "one", 2: "two"}, dict[int, str]),
        ({"a": [1, 2]}, dict[str, list[int]]),
        (Color.BLUE, Color),
        (Priority.HIGH, Priority),
        (Mode.SAFE, Mode),
        ("b", Literal["a", "b"]),
        (dt.datetime(2024, 5, 6, 7, 8, 9, 123456), dt.datetime),
        (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC), dt.datetime),
        (dt.date(1999, 12, 31), dt.date),
        (dt.time(23, 59, 58, 1), dt.time),
        (dt.timedelta(days=3, seconds=7, microseconds=9), dt.timedelta),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID),
        (Decimal("12.345"), Decimal),
        (None, int | None),
        (4, int | None),
        ("s", int | str),
        (Path("/tmp/some/file.txt"), Path),
        (PurePath("rel/path"), PurePath),
        (PagletProxyRef("http://127.0.0.1:9000", "agent-1"), PagletProxyRef),
        (Shape(5, "pentagon"), Shape),
        (Required("x", 3), Required),
        (Tree(leaves=[Leaf(text="t")], tags={"z", "a"}, child=Tree(pair=(1, "x"))), Tree),
    ],
)
def test_type_table_round_trip(value: Any, tp: Any, fmt: str) -> None:
    back = _roundtrip(value, tp, fmt)
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_float_accepts_ints_and_int_float_keeps_fraction(fmt: str) -> None:
    back = _roundtrip(3, float, fmt)
    assert back == 3.0 and type(back) is float
    assert _roundtrip(3.5, int | float, fmt) == 3.5
    assert convert(2, float) == 2.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_string_false_never_becomes_true(fmt: str) -> None:
    with pytest.raises(SerializationError, match="Expected 'bool', got 'str'"):
        _roundtrip("false", bool, fmt)
    with pytest.raises(SerializationError):
        convert("false", bool)
    with pytest.raises(SerializationError, match=r"Required.size: Expected 'int', got 'str'"):
        dataclass_from_wire(Required, {"name": "x", "size": "1"})


def test_sets_encode_sorted_and_deterministic() -> None:
    assert encode({"c", "a", "b"}) == encode(["a", "b", "c"])
    assert encode(frozenset({3, 1, 2})) == encode([1, 2, 3])
    assert encode({"s": {2, 1}}, format="json") == b'{"s":[1,2]}'
    assert decode(encode({1, "a"})) in ([1, "a"], ["a", 1])  # unsortable: still encodes
    assert to_wire_form({"tags": {"b", "a"}}) == {"tags": ["a", "b"]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_tuple_is_typed_per_position(fmt: str) -> None:
    assert _roundtrip((1, "x"), tuple[int, str], fmt) == (1, "x")
    with pytest.raises(SerializationError, match=r"^value\[1\]: Expected 'str', got 'int'"):
        _roundtrip((1, 2), tuple[int, str], fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dict_key_failing_its_type_raises(fmt: str) -> None:
    with pytest.raises(SerializationError, match="Expected 'int', got 'str'"):
        _roundtrip({"x": 1}, dict[int, int], fmt)
    assert decode(b'{"1": 2}', dict[int, int], format="json") == {1: 2}


def test_json_keys_are_strings() -> None:
    assert encode({1: "a"}, format="json") == b'{"1":"a"}'


@pytest.mark.parametrize("fmt", FORMATS)
def test_dataclass_unknown_keys_ignored_missing_defaulted(fmt: str) -> None:
    data = encode({"name": "n", "unknown": [1, 2]}, format=fmt)
    assert decode(data, Required, format=fmt) == Required("n", 1)
    with pytest.raises(SerializationError, match="missing required field 'name'"):
        decode(encode({"size": 2}, format=fmt), Required, format=fmt)


def test_enum_wire_is_the_value() -> None:
    assert to_wire_form([Color.RED, Priority.HIGH, Mode.SAFE]) == ["red", 2, "safe"]
    assert decode(encode(Color.RED)) == "red"
    with pytest.raises(SerializationError, match="Invalid enum value 'green'"):
        decode(encode("green"), Color)


def test_literal_is_checked() -> None:
    with pytest.raises(SerializationError, match="Invalid enum value 'c'"):
        decode(encode("c"), Literal["a", "b"])


def test_paths_are_strings() -> None:
    assert to_wire_form(Path("/a/b")) == "/a/b"
    assert decode(encode(Path("/a/b"))) == "/a/b"
    with pytest.raises(SerializationError, match="Expected 'str'"):
        decode(encode(5), Path)


def test_paglet_proxy_ref_wire_shape() -> None:
    ref = PagletProxyRef("http://h:1", "a1")
    assert to_wire_form(ref) == {"host_url": "http://h:1", "agent_id": "a1"}
    assert decode(encode(ref)) == {"host_url": "http://h:1", "agent_id": "a1"}
    assert dataclass_from_wire(PagletProxyRef, {"host_url": "u", "agent_id": "i"}) == (
        PagletProxyRef("u", "i")
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_any_fields_are_untyped(fmt: str) -> None:
    value = Untyped(value=Required("n", 2), obj={"k": b"raw"})
    back = _roundtrip(value, Untyped, fmt)
    assert back.value == {"name": "n", "size": 2}  # dataclasses come back as dicts
    assert back.obj == {"k": b"raw"}
    state = copy_state(value)
    assert state.value == {"name": "n", "size": 2}


def test_json_binary_takes_plain_base64_for_typed_bytes() -> None:
    assert decode(b'"aGVsbG8="', bytes, format="json") == b"hello"
    assert decode(b'{"blob":"aGk="}', Leaf, format="json").blob == b"hi"


def test_json_binary_tag_shape() -> None:
    assert json_safe(b"hello") == {"__paglets_binary__": "bytes", "base64": "aGVsbG8="}
    assert json_safe(bytearray(b"hi")) == {"__paglets_binary__": "bytearray", "base64": "aGk="}
    assert encode({"b": b"hi"}, format="json") == (
        b'{"b":{"__paglets_binary__":"bytes","base64":"aGk="}}'
    )


def test_restore_only_exact_tag_dicts() -> None:
    tag = {"__paglets_binary__": "bytes", "base64": "aGk="}
    assert restore_json_safe(tag) == b"hi"
    restored = restore_json_safe({"__paglets_binary__": "bytearray", "base64": "aGk="})
    assert restored == bytearray(b"hi") and type(restored) is bytearray
    near = {"__paglets_binary__": "bytes", "base64": "aGk=", "other": 1}
    assert restore_json_safe(near) == near
    assert restore_json_safe({"base64": "aGk="}) == {"base64": "aGk="}
    nested = {"a": [1, {"b": tag}], "c": "s"}
    assert restore_json_safe(nested) == {"a": [1, {"b": b"hi"}], "c": "s"}
    plain = {"a": [1, 2], "b": {"c": "d"}}
    assert restore_json_safe(plain) is plain  # nothing to restore: not copied
    with pytest.raises(SerializationError, match="invalid base64"):
        restore_json_safe({"__paglets_binary__": "bytes", "base64": "!!!"})


# ----------------------------------------------------------------------------------------
# State codec and check_state_class.


def test_state_round_trip_and_cache() -> None:
    state = Basket([Item("a", dt.datetime(2024, 1, 2))])
    data = encode_state(state)
    assert isinstance(data, bytes)
    assert decode_state(Basket, data) == state
    assert decode_state(Basket, memoryview(data)) == state
    check_state_class(Basket)
    assert codec._plans[Basket] is codec._plan(Basket)  # built once, reused


def test_decode_state_error_names_field_path() -> None:
    state = Basket([Item(str(i), dt.datetime(2024, 1, 1)) for i in range(5)])
    raw = msgspec.msgpack.decode(encode_state(state))
    raw["items"][3]["when"] = 17
    with pytest.raises(SerializationError) as info:
        decode_state(Basket, msgspec.msgpack.encode(raw))
    assert str(info.value) == "state.items[3].when: Expected 'datetime', got 'int'"


def test_decode_state_malformed_bytes() -> None:
    with pytest.raises(SerializationError, match=r"^state: MessagePack data is malformed"):
        decode_state(Basket, b"\xc1")
    with pytest.raises(SerializationError, match=r"^state: Expected 'object', got 'int'"):
        decode_state(Basket, encode(5))


def test_validate_state_round_trip_check() -> None:
    validate_state(Basket([Item("a", dt.datetime(2024, 1, 1))]))
    with pytest.raises(SerializationError, match=r"state.items\[0\].when: Expected 'datetime'"):
        validate_state(Basket([Item("a", 5)]))  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="declares State = test_codec:Basket"):
        validate_state(Small(), Basket)
    with pytest.raises(SerializationError, match="must be a dataclass instance, got a dict"):
        validate_state({"items": []})


def test_unsupported_field_named_with_path() -> None:
    with pytest.raises(SerializationError) as info:
        check_state_class(Holder)
    text = str(info.value)
    assert text.startswith("State field 'arrays' of ")
    assert ":Holder: state.arrays[*].values: type " in text
    assert "ndarray" in text and "list[float] or bytes" in text


def test_unencodable_value_named_with_path() -> None:
    with pytest.raises(
        SerializationError, match=r"^state.value\['k'\]\[1\]: cannot encode .*ndarray"
    ):
        encode_state(Untyped(value={"k": [1, ndarray([1.0])]}))
    with pytest.raises(SerializationError, match=r"^value\[0\]: cannot encode .*PlainClass"):
        encode([PlainClass()])
    with pytest.raises(SerializationError, match="PlainClass"):
        to_wire_form({"x": PlainClass()})


def test_paglet_proxy_field_rejected_with_hint() -> None:
    for cls in (WithProxy, WithProxyForwardRef):
        with pytest.raises(SerializationError) as info:
            check_state_class(cls)
        assert str(info.value).startswith(f"State field 'peer' of test_codec:{cls.__name__}: ")
        assert "PagletProxyRef" in str(info.value)


def test_ambiguous_union_rejected() -> None:
    with pytest.raises(SerializationError, match=r"State field 'value' of .*dict-like"):
        check_state_class(Ambiguous)


def test_state_class_must_be_a_dataclass() -> None:
    with pytest.raises(SerializationError, match="State class test_codec:PlainClass is not a"):
        check_state_class(PlainClass)
    with pytest.raises(SerializationError, match="fields 'b' would not be stored"):
        check_state_class(NotDecorated)


def test_recursive_state_class() -> None:
    tree = Node("root", [Node("a", [Node("b")]), Node("c")])
    assert decode_state(Node, encode_state(tree)) == tree


def test_state_with_sets_encodes_deterministically() -> None:
    a = Tree(tags={"x", "y", "z", "w"}, frozen=frozenset({5, 3, 9}))
    b = Tree(tags={"w", "z", "y", "x"}, frozen=frozenset({9, 5, 3}))
    assert encode_state(a) == encode_state(b)
    assert decode_state(Tree, encode_state(a)) == a
    tags = {f"tag{i}" for i in range(50)}
    raw = msgspec.msgpack.decode(encode_state(Tree(child=Tree(tags=tags), extra={"s": {3, 1}})))
    assert raw["child"]["tags"] == sorted(tags)  # recursive field: nested sets sorted too
    assert raw["extra"]["s"] == [1, 3]  # sets inside `Any` too
    # Only fields whose type can hold a set are walked; the rest go straight to msgspec.
    assert codec._plan(Tree).set_fields == ("tags", "frozen", "child", "extra")
    assert codec._plan(Small).set_fields == ()


def test_large_bytes_decoded_with_one_copy() -> None:
    size = 8 * 1024 * 1024
    data = encode_state(Big(b"\x07" * size))
    view = memoryview(data)
    tracemalloc.start()
    try:
        state = decode_state(Big, view)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(state.payload) == size
    assert peak < size * 1.25  # the decoded bytes object and nothing else of that size


# ----------------------------------------------------------------------------------------
# Wire form and dataclass helpers.


def test_to_wire_form_builtins() -> None:
    blob = b"x" * 1000
    value = {
        "leaf": Leaf(text="t", color=Color.BLUE, when=dt.datetime(2024, 1, 2, 3, 4, 5)),
        "tuple": (1, (2, 3)),
        "set": {3, 1},
        "blob": blob,
        "ref": PagletProxyRef("http://h", "a"),
        "wired": Wired("k"),
    }
    wire = to_wire_form(value)
    assert wire["leaf"]["color"] == "blue"
    assert wire["leaf"]["when"] == "2024-01-02T03:04:05"
    assert wire["leaf"]["where"] == "."
    assert wire["tuple"] == [1, [2, 3]]
    assert wire["set"] == [1, 3]
    assert wire["blob"] is blob  # bytes kept, not copied
    assert wire["ref"] == {"host_url": "http://h", "agent_id": "a"}
    assert wire["wired"] == {"kind": "k", "args": [1, 2]}
    assert to_wire_form(wire) == wire


def test_dataclass_to_and_from_wire() -> None:
    leaf = Leaf(text="t", blob=b"b", buffer=bytearray(b"ba"), uid=uuid.UUID(int=5))
    wire = dataclass_to_wire(leaf)
    assert wire["blob"] == b"b" and type(wire["buffer"]) is bytearray
    assert dataclass_from_wire(Leaf, wire) == leaf
    assert dataclass_from_wire(Leaf, json_safe(wire)) == leaf  # tags restored
    assert dataclass_from_wire(Required, {"name": "n", "junk": 1}) == Required("n")
    with pytest.raises(SerializationError, match="dataclass instance"):
        dataclass_to_wire({"a": 1})
    with pytest.raises(SerializationError, match="expected a dict"):
        dataclass_from_wire(Required, [1])


def test_convert_is_strict_with_paths() -> None:
    assert convert({"items": [{"name": "a", "when": "2024-01-01T00:00:00"}]}, Basket) == (
        Basket([Item("a", dt.datetime(2024, 1, 1))])
    )
    with pytest.raises(SerializationError, match=r"^value.items\[0\].name: Expected 'str'"):
        convert({"items": [{"name": 1, "when": "2024-01-01T00:00:00"}]}, Basket)
    with pytest.raises(SerializationError, match="Expected 'int', got 'str'"):
        convert("1", int)


def test_bad_format_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="format must be"):
        encode(1, format="yaml")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# Names and the import gate.


def test_qualified_name_and_resolve() -> None:
    assert qualified_name(Leaf) == "test_codec:Leaf"
    assert qualified_name(Leaf()) == "test_codec:Leaf"
    assert resolve_qualified_name("test_codec:Leaf") is Leaf
    assert resolve_qualified_name("collections:OrderedDict.fromkeys") is not None
    with pytest.raises(SerializationError, match="malformed class name"):
        resolve_qualified_name("no_colon_here")
    with pytest.raises(ClassImportError, match="No module named"):
        resolve_qualified_name("paglets_no_such_module_xyz:Thing")


def test_qualified_name_rejects_locals_and_main() -> None:
    @dataclasses.dataclass
    class LocalState:
        x: int = 0

    with pytest.raises(SerializationError, match=r"LocalState .*top level of an importable"):
        qualified_name(LocalState)
    main_cls = type("MainState", (), {"__module__": "__main__"})
    with pytest.raises(SerializationError, match=r"MainState is defined in __main__.*top level"):
        qualified_name(main_cls)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "nocolon",
        "a:b:c",
        "mod:",
        ":Cls",
        "1mod:Cls",
        "mod:Cls-x",
        "mod:Cls.__class__",
        "a..b:C",
    ],
)
def test_import_gate_rejects_malformed_names(name: str) -> None:
    with pytest.raises(SerializationError, match="malformed class name"):
        import_class(name)


def test_allow_list_prefixes() -> None:
    assert check_allowed_module("ds_dia", ["ds_dia"])
    assert check_allowed_module("ds_dia.compute.x", ["ds_dia"])
    assert not check_allowed_module("ds_dia2", ["ds_dia"])
    assert not check_allowed_module("other", ["ds_dia"])
    assert check_allowed_module("anything", None)
    assert not check_allowed_module("__main__", None)
    assert not check_allowed_module("__main__", ["__main__"])


def test_allow_list_refusal_imports_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "pgl_gate_probe.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('yes')\nclass Probe:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pgl_gate_probe", raising=False)
    with pytest.raises(ForbiddenError) as info:
        import_class("pgl_gate_probe:Probe", allow_modules=["pgl_gate_probe2", "paglets"])
    assert info.value.code == "module-not-allowed"
    assert "pgl_gate_probe" not in sys.modules
    assert not marker.exists()

    cls = import_class("pgl_gate_probe:Probe", allow_modules=["pgl_gate_probe"])
    assert cls.__name__ == "Probe" and marker.exists()
    # Cached, but the allow-list is still checked on every call.
    assert import_class("pgl_gate_probe:Probe", allow_modules=["pgl_gate_probe"]) is cls
    with pytest.raises(ForbiddenError):
        import_class("pgl_gate_probe:Probe", allow_modules=["elsewhere"])


def test_main_is_never_importable() -> None:
    for allow in (None, ["__main__"]):
        with pytest.raises(ForbiddenError, match="__main__"):
            import_class("__main__:Anything", allow_modules=allow)


def test_import_failure_names_everything() -> None:
    with pytest.raises(ClassImportError) as info:
        import_class(
            "lab_app.compute.paglets:BundleJob",
            host_name="linux-a",
            code_version="ds-dia-0.4.2",
        )
    error = info.value
    assert str(error) == (
        "cannot import lab_app.compute.paglets:BundleJob on host 'linux-a' "
        "(code version ds-dia-0.4.2): ModuleNotFoundError: No module named 'lab_app'"
    )
    assert error.class_name == "lab_app.compute.paglets:BundleJob"
    assert error.module == "lab_app.compute.paglets"
    assert error.import_error == "ModuleNotFoundError: No module named 'lab_app'"
    assert error.host_name == "linux-a"
    assert error.code_version == "ds-dia-0.4.2"
    assert error.code == "import-failed"


def test_missing_attribute_is_an_import_failure() -> None:
    with pytest.raises(ClassImportError, match=r"AttributeError: .*NoSuchClass"):
        import_class("test_codec:NoSuchClass")


def test_import_gate_kind_checks() -> None:
    assert import_class("test_codec:Sub", expect=Base) is Sub
    with pytest.raises(SerializationError) as info:
        import_class("test_codec:Leaf", expect=Base)
    assert info.value.code == "not-a-paglet"
    assert "not a subclass of test_codec:Base" in str(info.value)
    with pytest.raises(SerializationError, match="names a function, not a class"):
        import_class("test_codec:_roundtrip")
    assert import_class("test_codec:Leaf", require_dataclass=True) is Leaf
    with pytest.raises(SerializationError, match="not a dataclass") as info:
        import_class("test_codec:PlainClass", require_dataclass=True)
    assert info.value.code == "not-a-paglet"


# ----------------------------------------------------------------------------------------
# Properties.

_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_floats = st.floats(allow_nan=False, allow_infinity=False)
_offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)
) | st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=_offsets
)
_path_text = st.text(alphabet="abcXYZ019._-/ ", max_size=20)
_any_values = st.recursive(
    st.none() | st.booleans() | _ints | _floats | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)

_leaves = st.builds(
    Leaf,
    text=st.text(max_size=20),
    number=_ints,
    ratio=_floats,
    flag=st.booleans(),
    blob=st.binary(max_size=32),
    buffer=st.binary(max_size=8).map(bytearray),
    when=_datetimes,
    day=st.dates(),
    at=st.times(),
    span=st.timedeltas(min_value=dt.timedelta(days=-(10**6)), max_value=dt.timedelta(days=10**6)),
    uid=st.uuids(),
    amount=st.decimals(allow_nan=False, allow_infinity=False),
    color=st.sampled_from(Color),
    priority=st.sampled_from(Priority),
    mode=st.sampled_from(Mode),
    choice=st.sampled_from(["a", "b"]),
    where=_path_text.map(Path),
    pure=_path_text.map(PurePath),
    ref=st.none() | st.builds(PagletProxyRef, st.text(max_size=10), st.text(max_size=10)),
    num=_ints | _floats,
    maybe=st.none() | _ints,
)


def _trees(children: st.SearchStrategy[Tree | None]) -> st.SearchStrategy[Tree]:
    return st.builds(
        Tree,
        leaves=st.lists(_leaves, max_size=2),
        tags=st.sets(st.text(max_size=5), max_size=4),
        frozen=st.frozensets(_ints, max_size=4),
        pair=st.tuples(_ints, st.text(max_size=5)),
        many=st.lists(_floats, max_size=4).map(tuple),
        by_id=st.dictionaries(_ints, st.text(max_size=5), max_size=3),
        by_name=st.dictionaries(st.text(max_size=5), _leaves, max_size=2),
        shape=st.none() | st.builds(Shape, st.integers(0, 20), st.text(max_size=5)),
        child=children,
        extra=_any_values,
    )


_tree_values = st.recursive(
    st.none(),
    lambda inner: _trees(inner),
    max_leaves=3,
).filter(lambda v: v is not None)

_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_tree_values, st.sampled_from(FORMATS))
def test_property_typed_round_trip(tree: Tree, fmt: str) -> None:
    assert decode(encode(tree, format=fmt), Tree, format=fmt) == tree


@_settings
@given(_tree_values)
def test_property_state_round_trip(tree: Tree) -> None:
    data = encode_state(tree)
    assert decode_state(Tree, data) == tree
    assert encode_state(decode_state(Tree, data)) == data  # deterministic


@_settings
@given(_tree_values)
def test_property_wire_form_round_trip(tree: Tree) -> None:
    # The local-delivery path: builtins form, then typed conversion back.
    assert dataclass_from_wire(Tree, dataclass_to_wire(tree)) == tree
    assert convert(to_wire_form(tree), Tree) == tree


@_settings
@given(_any_values, st.sampled_from(FORMATS))
def test_property_untyped_round_trip(value: Any, fmt: str) -> None:
    assert decode(encode(value, format=fmt), format=fmt) == value
    assert restore_json_safe(json_safe(value)) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_property_random_bytes_only_raise_serialization_error(data: bytes) -> None:
    for cls in (Tree, Basket, Leaf):
        try:
            result = decode_state(cls, data)
        except SerializationError:
            continue
        assert type(result) is cls


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120) | st.text(max_size=120).map(str.encode))
def test_property_random_json_only_raises_serialization_error(data: bytes) -> None:
    for tp in (Tree, dict[int, str], Any):
        try:
            decode(data, tp, format="json")
        except SerializationError:
            pass


@settings(max_examples=100, deadline=None)
@given(_any_values)
def test_property_mutated_msgpack_state_only_raises_serialization_error(value: Any) -> None:
    # Well-formed MessagePack of the wrong shape, not just garbage bytes.
    payload = msgspec.msgpack.encode({"leaves": [value], "tags": value, "pair": value})
    try:
        decode_state(Tree, payload)
    except SerializationError as exc:
        assert str(exc).startswith("state")


def test_binary_tag_base64_matches_stdlib() -> None:
    raw = bytes(range(256))
    assert json_safe(raw)["base64"] == base64.b64encode(raw).decode()
