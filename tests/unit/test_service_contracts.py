"""Service contracts, records and specs without a host: every way a call can misfit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from paglets import Message
from paglets.core.errors import HostError, ServiceContractError, ServiceNotFoundError
from paglets.remote.references import PagletProxyRef
from paglets.services import (
    EmptyPayload,
    ResidentLifecycle,
    ResidentServiceSpec,
    ServiceContract,
    ServiceOperation,
    ServiceRecord,
    ServiceScope,
)
from paglets.services.contracts import CONTRACT_METADATA_KEY, RESIDENT_METADATA_KEY
from support.service_models import (
    COUNT,
    ECHO,
    ECHO_CONTRACT,
    ECHO_V2,
    SQUARE,
    Count,
    EchoReply,
    EchoRequest,
    StructRequest,
)


def _record(contract: ServiceContract, **meta: object) -> ServiceRecord:
    return ServiceRecord(
        contract.name,
        PagletProxyRef("http://127.0.0.1:1", "p"),
        contract.capabilities,
        contract.advertise_metadata(meta or None),
    )


# -- operations ----------------------------------------------------------------------------


def test_operations_round_trip_requests_and_replies() -> None:
    message = ECHO.to_message(EchoRequest("hi"))
    assert message.kind == "echo"
    assert message.args == {"text": "hi"}
    assert ECHO.decode_request(message) == EchoRequest("hi")
    assert ECHO.decode_request({"text": "x"}) == EchoRequest("x")
    assert ECHO.decode_reply(ECHO.encode_reply(EchoReply("a", "h", 1))) == EchoReply("a", "h", 1)
    assert COUNT.to_message().args == {}
    assert ServiceOperation("ping").decode_reply(None) == EmptyPayload()
    assert SQUARE.decode_request(SQUARE.to_message(StructRequest(3))) == StructRequest(3)


def test_operations_are_frozen_and_hashable() -> None:
    assert hash(ECHO) == hash(ServiceOperation("echo", EchoRequest, EchoReply))
    assert ServiceOperation("echo", EchoRequest, EchoReply) == ECHO
    with pytest.raises(AttributeError):
        ECHO.name = "other"  # type: ignore[misc]


def test_a_wrong_request_type_is_refused() -> None:
    with pytest.raises(ServiceContractError, match="takes a EchoRequest request, got Count"):
        ECHO.to_message(Count(1))  # type: ignore[arg-type]


def test_a_wrong_reply_type_is_refused_on_both_sides() -> None:
    with pytest.raises(ServiceContractError, match=r"replies with a EchoReply.*returned Count"):
        ECHO.encode_reply(Count(1))  # type: ignore[arg-type]
    with pytest.raises(ServiceContractError, match="returned a int"):
        ECHO.decode_reply(42)
    with pytest.raises(ServiceContractError, match="not a valid EchoReply"):
        ECHO.decode_reply({"text": 5})
    with pytest.raises(ServiceContractError, match="returned nothing"):
        ECHO.decode_reply(None)


def test_an_undecodable_request_names_the_field() -> None:
    with pytest.raises(ServiceContractError, match=r"request.*text"):
        ECHO.decode_request({"text": ["not", "a", "string"]})


def test_a_request_type_without_defaults_cannot_be_omitted() -> None:
    op = ServiceOperation("needs", _Required)
    with pytest.raises(ServiceContractError, match="needs a _Required request"):
        op.to_message()


@dataclass
class _Required:
    value: int


def test_locals_and_non_dataclass_types_are_refused() -> None:
    @dataclass
    class Local:
        x: int = 0

    with pytest.raises(ServiceContractError, match="inside a function"):
        ServiceOperation("local", Local)
    with pytest.raises(ServiceContractError, match=r"dataclass or msgspec\.Struct"):
        ServiceOperation("plain", dict)  # type: ignore[arg-type]
    with pytest.raises(ServiceContractError, match="non-empty name"):
        ServiceOperation("")


# -- contracts -----------------------------------------------------------------------------


def test_contract_validation() -> None:
    with pytest.raises(ServiceContractError, match="non-empty name"):
        ServiceContract("", (ECHO,))
    with pytest.raises(ServiceContractError, match="version must be a non-empty string"):
        ServiceContract("x", (ECHO,), version="")
    with pytest.raises(ServiceContractError, match="at least one operation"):
        ServiceContract("x", ())
    with pytest.raises(ServiceContractError, match="twice"):
        ServiceContract("x", (ECHO, ServiceOperation("echo")))
    with pytest.raises(ServiceContractError, match="ServiceOperation objects"):
        ServiceContract("x", ("echo",))  # type: ignore[arg-type]


def test_unknown_operations_are_refused() -> None:
    assert ECHO_CONTRACT.capabilities == ("echo", "count")
    assert ECHO_CONTRACT.operation_for("nope") is None
    assert ECHO_CONTRACT.require_operation("echo") is ECHO
    with pytest.raises(ServiceContractError, match="has no operation 'nope'; it has: echo, count"):
        ECHO_CONTRACT.require_operation("nope")
    with pytest.raises(ServiceContractError, match="a different operation 'echo'"):
        ECHO_CONTRACT.require_operation(ServiceOperation("echo"))
    with pytest.raises(ServiceContractError, match="has no operation 'nope'"):
        ECHO_CONTRACT.route(Message("nope"), {})
    assert ECHO_CONTRACT.route(Message("nope"), {}, default="skip") == "skip"


def test_route_decodes_calls_and_encodes() -> None:
    reply = ECHO_CONTRACT.route(
        ECHO.to_message(EchoRequest("x")), {"echo": lambda r: EchoReply(r.text * 2)}
    )
    assert reply == {"text": "xx", "host": "", "pid": 0}
    assert ECHO_CONTRACT.route(COUNT.to_message(), {COUNT: lambda r: Count(7)}) == {"value": 7}
    with pytest.raises(ServiceContractError, match="no handler for operation 'count'"):
        ECHO_CONTRACT.route(COUNT.to_message(), {"echo": lambda r: r})
    with pytest.raises(ServiceContractError, match="returned Count"):
        ECHO_CONTRACT.route(ECHO.to_message(), {ECHO: lambda r: Count(1)})


def test_metadata_names_the_schemas() -> None:
    meta = ECHO_CONTRACT.metadata()
    assert meta["name"] == "echo"
    assert meta["version"] == "1"
    assert meta["operations"][0] == {
        "name": "echo",
        "request_type": "support.service_models:EchoRequest",
        "reply_type": "support.service_models:EchoReply",
    }
    assert len(meta["fingerprint"]) == 16


def test_the_reserved_metadata_keys_are_refused_in_extra() -> None:
    assert ECHO_CONTRACT.advertise_metadata({"zone": "a"})["zone"] == "a"
    for key in (CONTRACT_METADATA_KEY, RESIDENT_METADATA_KEY):
        with pytest.raises(ServiceContractError, match="reserved"):
            ECHO_CONTRACT.advertise_metadata({key: 1})


def test_records_match_on_name_version_and_schemas_in_any_order() -> None:
    record = _record(ECHO_CONTRACT)
    assert ECHO_CONTRACT.matches_record(record)
    assert ServiceContract("echo", (COUNT, ECHO)).matches_record(record)  # order ignored
    assert not ECHO_V2.matches_record(record)  # version mismatch finds nothing
    assert not ServiceContract("echo", (ECHO,)).matches_record(record)  # other operations
    other = ServiceContract("echo", (ServiceOperation("echo", EchoRequest, Count), COUNT))
    assert not other.matches_record(record)  # same names, other types
    plain = ServiceRecord("echo", PagletProxyRef("http://h:1", "p"))
    assert not ECHO_CONTRACT.matches_record(plain)
    compact = ServiceRecord(
        "echo",
        PagletProxyRef("http://h:1", "p"),
        metadata={
            CONTRACT_METADATA_KEY: {
                "name": "echo",
                "version": "1",
                "fingerprint": ECHO_CONTRACT.fingerprint,
            }
        },
    )
    assert ECHO_CONTRACT.matches_record(compact)  # the gossiped digest form


# -- records and specs ---------------------------------------------------------------------


def test_record_wire_round_trip_and_filters() -> None:
    record = ServiceRecord(
        "echo",
        PagletProxyRef("http://127.0.0.1:1", "p"),
        ("echo", "count"),
        {"zone": "a"},
        ServiceScope.MESH,
        "alpha",
        "http://127.0.0.1:1",
        10.0,
        20.0,
    )
    wire = record.to_wire()
    assert set(wire) == {
        "name",
        "proxy",
        "capabilities",
        "metadata",
        "scope",
        "host_name",
        "host_url",
        "advertised_at",
        "expires_at",
    }
    assert wire["scope"] == "mesh"
    assert ServiceRecord.from_wire({**wire, "extra": 1}) == record
    assert record.expired
    assert record.matches("echo", capability="count", scope=ServiceScope.MESH)
    assert not record.matches("echo", capability="nope")
    assert not record.matches(scope=ServiceScope.LOCAL)
    with pytest.raises(ValueError, match="scope must be one of"):
        ServiceRecord.from_wire({**wire, "scope": "galaxy"})
    with pytest.raises(ValueError, match="name"):
        ServiceRecord.from_wire({"proxy": wire["proxy"]})


def test_resident_specs() -> None:
    spec = ResidentServiceSpec(ECHO_CONTRACT, scope="mesh", lifecycle="eager")  # type: ignore[arg-type]
    assert spec.scope is ServiceScope.MESH
    assert spec.lifecycle is ResidentLifecycle.EAGER
    assert spec.resolved_agent_id == "service.echo"
    assert ResidentServiceSpec(ECHO_CONTRACT, agent_id="mine").resolved_agent_id == "mine"
    with pytest.raises(ValueError, match="lifecycle must be one of: lazy, eager"):
        ResidentServiceSpec(ECHO_CONTRACT, lifecycle="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout"):
        ResidentServiceSpec(ECHO_CONTRACT, idle_timeout=0)
    with pytest.raises(TypeError, match="ServiceContract"):
        ResidentServiceSpec("echo")  # type: ignore[arg-type]


def test_errors_are_in_the_host_error_tree() -> None:
    assert issubclass(ServiceNotFoundError, ServiceContractError)
    assert issubclass(ServiceContractError, HostError)
