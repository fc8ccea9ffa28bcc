"""Bad input to a real host fails early and clearly: a PagletError (or the documented
builtin) whose message names what was wrong (api.md §1.2, §1.8, §5, §8.1, §10)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from paglets import DeactivationPolicy, Host, Message, Paglet, PagletState
from paglets.core.errors import (
    ClassImportError,
    DuplicateAgentError,
    ForbiddenError,
    HostError,
    InvalidAgentError,
    InvalidAgentIdError,
    PagletError,
    SerializationError,
)
from support.lifecycle_models import (
    MissingState,
    OtherState,
    Recorder,
    RecState,
    StateNotDataclass,
)

# -- classes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["support.lifecycle_models:NoSuchPaglet", "no_such_module_for_paglets_tests:Thing"],
    ids=["unknown-class", "unknown-module"],
)
def test_unknown_class_name_is_refused_naming_it(host: Host, name: str) -> None:
    with pytest.raises((ClassImportError, ForbiddenError)) as caught:
        host.create(name)
    assert name.split(":")[1] in str(caught.value)
    assert host.list_agents(active=True, inactive=True) == []


def test_main_module_class_name_is_forbidden(host: Host) -> None:
    with pytest.raises((ForbiddenError, ClassImportError)) as caught:
        host.create("__main__:Something")
    assert "__main__" in str(caught.value)


def test_class_name_that_is_not_a_paglet_is_refused(host: Host) -> None:
    with pytest.raises(PagletError, match="RecState"):
        host.create("support.lifecycle_models:RecState")


def test_state_that_is_not_a_dataclass_is_refused_naming_the_class(host: Host) -> None:
    with pytest.raises(HostError, match="StateNotDataclass"):
        host.create(StateNotDataclass)


def test_class_without_state_is_refused_naming_the_class(host: Host) -> None:
    with pytest.raises(HostError, match="MissingState") as caught:
        host.create(MissingState)
    assert "State" in str(caught.value)


def test_non_class_is_refused(host: Host) -> None:
    with pytest.raises(PagletError):
        host.create(42)  # type: ignore[arg-type]


# -- ids ----------------------------------------------------------------------------------


def test_duplicate_explicit_id_is_refused(host: Host) -> None:
    host.create(Recorder, agent_id="only-one")
    with pytest.raises(DuplicateAgentError, match="only-one"):
        host.create(Recorder, agent_id="only-one")
    assert host.get_state("only-one").count == 0  # the existing one is untouched


def test_duplicate_explicit_id_is_refused_when_the_existing_one_is_inactive(host: Host) -> None:
    existing = host.create(Recorder, RecState(count=5), agent_id="sleeper")
    existing.deactivate()

    with pytest.raises(DuplicateAgentError, match="sleeper"):
        host.create(Recorder, agent_id="sleeper")

    assert not existing.is_active()
    assert existing.get_state().count == 5


BAD_IDS = {
    "slash": "a/b",
    "dotdot": "a..b",
    "leading-dotdot": "..",
    "backslash": "a\\b",
    "nul": "a\x00b",
    "space": "a b",
    "tab": "a\tb",
    "newline": "ab\n",
    "empty": "",
    "leading-dash": "-abc",
    "129-chars": "a" * 129,
}


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_bad_agent_ids_are_refused_naming_the_id(host: Host, bad: str) -> None:
    with pytest.raises(InvalidAgentIdError) as caught:
        host.create(Recorder, agent_id=bad)
    assert isinstance(caught.value, ValueError)
    shown = repr(bad)[1:-1]
    assert shown[:40] in str(caught.value)
    assert host.list_agents(active=True, inactive=True) == []


@pytest.mark.parametrize(
    "bad", ["a/b", "..", "a\x00b", "a" * 129], ids=["slash", "dotdot", "nul", "long"]
)
def test_bad_agent_ids_are_refused_by_every_operation(host: Host, bad: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: host.deliver_message(bad, Message("get")),
        lambda: host.get_state(bad),
        lambda: host.deactivate(bad),
        lambda: host.activate(bad),
        lambda: host.dispose(bad),
        lambda: host.clone(bad),
        lambda: host.get_proxy(bad),
        lambda: host.work_dir_for(bad),
    ]
    for operation in operations:
        with pytest.raises(InvalidAgentIdError):
            operation()


def test_largest_valid_id_is_accepted(host: Host) -> None:
    longest = "a" * 128
    assert host.create(Recorder, agent_id=longest).agent_id == longest


# -- state ----------------------------------------------------------------------------------


def test_state_not_matching_its_type_hints_names_the_field(host: Host) -> None:
    with pytest.raises(SerializationError, match=r"count"):
        host.create(Recorder, RecState(count="three"))  # type: ignore[arg-type]


def test_nested_state_error_names_the_field_path(host: Host) -> None:
    with pytest.raises(SerializationError) as caught:
        host.create(Recorder, RecState(items=["ok", 7]))  # type: ignore[list-item]
    assert "items[1]" in str(caught.value)


def test_state_dict_not_matching_its_type_hints_names_the_field(host: Host) -> None:
    with pytest.raises(SerializationError, match="count"):
        host.create(Recorder, {"count": "three"})


def test_state_of_the_wrong_dataclass_is_refused(host: Host) -> None:
    with pytest.raises(SerializationError) as caught:
        host.create(Recorder, OtherState())
    message = str(caught.value)
    assert "RecState" in message and "OtherState" in message
    assert host.list_agents(active=True, inactive=True) == []


def test_state_without_defaults_needs_a_state(host: Host) -> None:
    with pytest.raises(PagletError, match="NeedsValueState"):
        host.create(NeedsValue)


@dataclass
class NeedsValueState(PagletState):
    value: int


class NeedsValue(Paglet[NeedsValueState]):
    State = NeedsValueState


# -- messages and operations ----------------------------------------------------------


@pytest.mark.parametrize(
    "not_a_message", ["add", {"kind": "add"}, None], ids=["str", "dict", "none"]
)
def test_non_message_passed_to_send_is_refused(host: Host, not_a_message: object) -> None:
    proxy = host.create(Recorder)
    with pytest.raises((TypeError, PagletError), match="Message"):
        proxy.send(not_a_message)  # type: ignore[arg-type]
    assert proxy.get_state().count == 0


def test_operations_on_a_disposed_paglet_raise_invalid_agent(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.dispose()

    operations: dict[str, Callable[[], object]] = {
        "send": lambda: proxy.send(Message("add")),
        "send_oneway": lambda: proxy.send_oneway(Message("add")),
        "info": proxy.info,
        "get_state": proxy.get_state,
        "deactivate": proxy.deactivate,
        "activate": proxy.activate,
        "dispose": proxy.dispose,
        "clone": proxy.clone,
        "dispatch": lambda: proxy.dispatch(host.address),
        "host.get_state": lambda: host.get_state(agent_id),
        "host.deactivate": lambda: host.deactivate(agent_id),
    }
    for name, operation in operations.items():
        with pytest.raises(InvalidAgentError, match=agent_id):
            operation()
        assert name  # keeps the failing operation's name in the traceback locals
    assert not proxy.is_valid()


def test_unknown_id_raises_invalid_agent(host: Host) -> None:
    with pytest.raises(InvalidAgentError, match="never-created"):
        host.deliver_message("never-created", Message("add"))
    with pytest.raises(InvalidAgentError, match="never-created"):
        host.activate("never-created")


def test_host_not_started_says_to_call_start_background(tmp_path: Path) -> None:
    host = Host("idle", persistence_dir=tmp_path / "idle", mesh_version="test")
    try:
        with pytest.raises(HostError, match="start_background"):
            host.create(Recorder)
        with pytest.raises(HostError, match="start_background"):
            host.activate("anything")
    finally:
        host.stop()


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(TypeError, match="activate_on_message"):
        DeactivationPolicy(activate_on_message="false")  # type: ignore[arg-type]


# -- classes that cannot be imported again ---------------------------------------------


def _clear_about(exc: PagletError) -> bool:
    text = str(exc).lower()
    return any(hint in text for hint in ("top level", "importable", "<locals>", "__main__"))


def test_locally_defined_class_works_in_process_or_fails_clearly(
    make_host: Callable[..., Host],
) -> None:
    @dataclass
    class LocalState(PagletState):
        count: int = 0

    class LocalPaglet(Paglet[LocalState]):
        State = LocalState

        def handle_message(self, message: Message) -> int:
            self.state.count += 1
            return self.state.count

    host = make_host("alpha")
    proxy = host.create(LocalPaglet)
    assert proxy.send(Message("add")) == 1

    try:
        proxy.deactivate()
    except PagletError as exc:
        assert _clear_about(exc), str(exc)
        assert proxy.is_active()  # a refused deactivation leaves it live
        assert proxy.send(Message("add")) == 2
        return
    except Exception as exc:  # pragma: no cover - reported as the failure
        pytest.fail(f"deactivating a <locals> paglet raised a non-PagletError: {exc!r}")
    # Deactivation worked: within this process it must come back.
    assert proxy.send(Message("add")) == 2
    assert proxy.is_active()
    # A restart cannot import a <locals> class again: it stays stored, not live, and the
    # failure says why.
    host.stop()
    again = make_host("alpha")
    assert proxy.agent_id not in again.registry.live
    failures = [
        e
        for e in again.list_events(limit=10_000)
        if e.kind == "activation-failed" and e.agent_id == proxy.agent_id
    ]
    assert failures and _clear_about_text(failures[0].error or ""), failures


def test_main_module_class_works_in_process_or_fails_clearly(
    make_host: Callable[..., Host],
) -> None:
    main_state = dataclass(
        type("MainState", (PagletState,), {"__annotations__": {"count": int}, "count": 0})
    )
    main_state.__module__ = "__main__"
    main_paglet = type("MainPaglet", (Paglet,), {"State": main_state, "__module__": "__main__"})

    host = make_host("alpha")
    try:
        proxy = host.create(main_paglet)
    except PagletError as exc:
        assert _clear_about(exc), str(exc)
        return
    try:
        host.stop()
    except Exception as exc:  # pragma: no cover - reported as the failure
        pytest.fail(f"stopping a host with a __main__ paglet raised: {exc!r}")
    again = make_host("alpha")
    # It cannot be imported again: not live, and the failure is recorded clearly.
    assert proxy.agent_id not in again.registry.live
    failures = [e for e in again.list_events(limit=10_000) if e.kind == "activation-failed"]
    assert failures and all(_clear_about_text(e.error or "") for e in failures)


def _clear_about_text(text: str) -> bool:
    text = text.lower()
    return any(
        hint in text for hint in ("top level", "importable", "<locals>", "__main__", "not allowed")
    )
