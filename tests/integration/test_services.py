"""Services on one host: the registry, typed handles, resident services, leases, the launch
config and startup agents (api.md §1.10, §16, §17 operations)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets import Host, HostClient, Message
from paglets.config.startup import LaunchConfigError
from paglets.core.errors import (
    HostError,
    InvalidAgentError,
    NotHandledError,
    PagletCrashedError,
    ServiceContractError,
    ServiceNotFoundError,
)
from paglets.patterns import OperationClient
from paglets.remote.references import PagletProxyRef
from paglets.services import ServiceHandle, ServiceScope
from support.service_models import (
    BAD_CONTRACT,
    BAD_REPLY,
    COUNT,
    CRASH,
    CRASHY_CONTRACT,
    ECHO,
    ECHO_CONTRACT,
    ECHO_V2,
    AdvertisesOnCreation,
    BadReplier,
    Caller,
    Count,
    CrashyEcho,
    EchoReply,
    EchoRequest,
    EchoService,
    EchoState,
    LazyEcho,
    SelfAdvertisingLazy,
    created,
)
from support.waiting import wait_until

MakeHost = Callable[..., Host]


def _echo(host: Host, *, scope: str = "local", prefix: str = "") -> Any:
    proxy = host.create(EchoService, EchoState(prefix=prefix))
    proxy.send(Message("advertise", {"scope": scope}))
    return proxy


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "launch.toml"
    path.write_text(text)
    return path


# -- the registry ----------------------------------------------------------------------------


def test_advertise_lookup_and_call(host: Host) -> None:
    proxy = _echo(host, prefix="> ")
    record = host.lookup_service("echo")
    assert record is not None and record.proxy == PagletProxyRef(host.address, proxy.agent_id)
    assert record.host_name == host.name and record.scope is ServiceScope.LOCAL
    assert host.lookup_service("echo", capability="count") == record
    assert host.lookup_service("echo", capability="nope") is None
    assert host.lookup_services("echo") == [record]
    handle = host.require_contract(ECHO_CONTRACT, operation="echo")
    assert handle.call(ECHO, EchoRequest("hi")) == EchoReply(
        "> hi", host.name, handle.call(ECHO).pid
    )
    assert handle.call("count") == Count(2)
    with pytest.raises(ServiceContractError, match="no operation 'nope'"):
        host.lookup_contract(ECHO_CONTRACT, operation="nope")


def test_a_version_mismatch_finds_nothing(host: Host) -> None:
    _echo(host)
    assert host.lookup_contract(ECHO_CONTRACT) is not None
    assert host.lookup_contract(ECHO_V2) is None
    assert host.lookup_contracts(ECHO_V2) == []
    with pytest.raises(ServiceNotFoundError, match="'echo' version '2'"):
        host.require_contract(ECHO_V2)


def test_helpers_inside_a_paglet(host: Host) -> None:
    caller = host.create(Caller)
    assert caller.send(Message("lookup")) is None
    echo = _echo(host, prefix="+")
    assert caller.send(Message("lookup", {"capability": "echo"}))["agent_id"] == echo.agent_id
    assert caller.send(Message("call", {"text": "x"})) == "+x"
    assert caller.send(Message("settings")) == {}


def test_records_go_when_the_paglet_stops_being_live(make_host: MakeHost) -> None:
    alpha = make_host("alpha", mesh=False)
    beta = make_host("beta", mesh=False)
    proxy = _echo(alpha)
    alpha.deactivate(proxy.agent_id)
    assert alpha.lookup_services("echo") == []
    alpha.activate(proxy.agent_id)
    assert alpha.lookup_services("echo") == []  # a new incarnation advertises again
    proxy.send(Message("advertise"))
    assert len(alpha.lookup_services("echo")) == 1
    moved = alpha.dispatch(proxy.agent_id, beta.address)
    assert alpha.lookup_services("echo") == []
    moved.send(Message("advertise"))
    assert beta.lookup_service("echo").host_url == beta.address
    beta.dispose(proxy.agent_id)
    assert beta.lookup_services("echo") == []
    wait_until(lambda: not beta.services.registry.has_agent(proxy.agent_id))  # deleted too


def test_advertising_from_on_creation_counts(host: Host) -> None:
    proxy = host.create(AdvertisesOnCreation)
    record = host.lookup_service("echo")
    assert record is not None and record.agent_id == proxy.agent_id
    assert record.scope is ServiceScope.MESH


def test_ttl_is_checked_at_lookup(host: Host) -> None:
    proxy = host.create(EchoService)
    proxy.send(Message("advertise", {"ttl": 0.2}))
    record = host.lookup_service("echo")
    assert record is not None and record.expires_at is not None
    wait_until(lambda: host.lookup_service("echo") is None)
    assert not host.services.registry.has_agent(proxy.agent_id)


def test_unadvertise_and_bad_advertisements(host: Host) -> None:
    proxy = _echo(host)
    other = _echo(host)
    assert [r.agent_id for r in host.unadvertise_service("echo", agent_id=other.agent_id)] == [
        other.agent_id
    ]
    assert proxy.send(Message("unadvertise")) == 1
    assert host.lookup_services("echo") == []
    with pytest.raises(InvalidAgentError, match="not live"):
        host.advertise_service("nobody", "echo")
    with pytest.raises(HostError, match="reserved"):
        host.advertise_service(proxy.agent_id, "echo", metadata={"paglets.resident": "lazy"})
    with pytest.raises(HostError, match="ttl"):
        host.advertise_service(proxy.agent_id, "echo", ttl=0)
    with pytest.raises(ValueError, match="scope must be one of"):
        host.advertise_service(proxy.agent_id, "echo", scope="galaxy")


def test_a_wrong_reply_type_reaches_the_caller(host: Host) -> None:
    proxy = host.create(BadReplier)
    host.advertise_contract(proxy.agent_id, BAD_CONTRACT)
    handle = host.require_contract(BAD_CONTRACT)
    with pytest.raises(ServiceContractError, match="replies with a EchoReply"):
        handle.call(BAD_REPLY)
    with pytest.raises(ServiceContractError, match="has no operation 'echo'"):
        handle.call(ECHO)


def test_operation_paglet_and_client(host: Host) -> None:
    client = OperationClient(host.create(EchoService, EchoState(prefix="~")))
    assert client.call(ECHO, EchoRequest("a")).text == "~a"
    assert client.call(COUNT) == Count(1)
    client.send_oneway(ECHO, EchoRequest("b"))
    wait_until(lambda: client.call(COUNT).value == 2)
    with pytest.raises(NotHandledError):
        client.proxy.send(Message("unknown-kind"))
    with pytest.raises(ServiceContractError, match="takes a EchoRequest"):
        client.call(ECHO, Count(1))


# -- resident services -----------------------------------------------------------------------


def test_lazy_service_is_advertised_created_on_first_call_and_idles_out(host: Host) -> None:
    host.services.enable_resident(LazyEcho, idle_timeout=0.2)
    record = host.lookup_service("echo")
    assert record is not None and record.agent_id == "service.echo"
    assert host.get_proxy("service.echo") is None  # advertised before it exists
    handle = host.require_contract(ECHO_CONTRACT)
    assert handle.call(ECHO, EchoRequest("a")).text == "a"
    assert host.get_proxy("service.echo") is not None
    wait_until(lambda: host.get_proxy("service.echo") is None)  # idle: deactivated
    assert host.get_proxy("service.echo", include_inactive=True) is not None
    assert handle.call(ECHO, EchoRequest("b")).text == "b"  # woken by the message
    hooks = host.get_state("service.echo").hooks
    assert hooks == ["created", "deactivating:resident-service-idle", "activated:activate"]
    assert host.lookup_service("echo") is not None  # resident records stay


def test_a_resident_provider_advertising_itself_stays_managed(host: Host) -> None:
    host.services.enable_resident(SelfAdvertisingLazy)
    host.require_contract(ECHO_CONTRACT).call(ECHO)
    (record,) = host.lookup_services("echo")
    assert record.metadata["zone"] == "a" and record.metadata["paglets.resident"] == "lazy"
    with host.lease_contract(ECHO_CONTRACT, ttl=5.0) as handle:
        assert handle.call(ECHO, EchoRequest("l")).text == "l"


def test_concurrent_first_calls_make_one_provider(host: Host) -> None:
    host.services.enable_resident(LazyEcho, agent_id="race.echo")
    (handle,) = host.lookup_contracts(ECHO_CONTRACT)
    before = created("LazyEcho")
    barrier = threading.Barrier(12)
    results: list[str] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            barrier.wait(10)
            results.append(handle.call(ECHO, EchoRequest(str(i))).text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results, key=int) == [str(i) for i in range(12)]
    assert created("LazyEcho") - before == 1
    assert host.get_state("race.echo").hooks == ["created"]


def test_a_lease_keeps_a_lazy_provider_and_release_lets_it_go(host: Host) -> None:
    host.services.enable_resident(LazyEcho, agent_id="held", idle_timeout=0.1)
    host.services.enable_resident(LazyEcho, agent_id="free", idle_timeout=0.1)
    held, free = host.lookup_contracts(ECHO_CONTRACT)
    assert (held.record.agent_id, free.record.agent_id) == ("held", "free")
    lease = host.lease_service_handle(held, ttl=30.0)
    assert host.get_proxy("held") is not None  # the lease started it
    free.call(ECHO)
    wait_until(lambda: host.get_proxy("free") is None)  # the same ticks put "free" to sleep
    assert host.get_proxy("held") is not None
    new_expiry = lease.renew(60.0)
    assert new_expiry >= lease.expires_at - 1 and lease.ttl == 60.0
    assert lease.release() is True
    assert lease.release() is False
    wait_until(lambda: host.get_proxy("held") is None)
    with pytest.raises(ServiceNotFoundError, match="released"):
        lease.renew()


def test_lease_as_context_manager_and_refusals(host: Host) -> None:
    host.services.enable_resident(LazyEcho)
    with host.lease_contract(ECHO_CONTRACT, ttl=5.0) as handle:
        assert isinstance(handle, ServiceHandle)
        assert host.services.resident.leases_of("service.echo") == 1
    assert host.services.resident.leases_of("service.echo") == 0
    plain = _echo(host)
    (record,) = [r for r in host.lookup_services("echo") if r.agent_id == plain.agent_id]
    with pytest.raises(ServiceNotFoundError, match="not a managed resident"):
        host.lease_service_handle(ServiceHandle(ECHO_CONTRACT, record, host))
    with pytest.raises(ServiceNotFoundError, match="unknown or expired"):
        host.services.resident.renew("no-such-lease", 1.0)
    with pytest.raises(ServiceNotFoundError, match="not a managed resident"):
        host.services.resident.ensure(plain.agent_id)


def test_a_paglets_lease_is_released_when_it_leaves(host: Host) -> None:
    host.services.enable_resident(LazyEcho)
    caller = host.create(Caller)
    caller.send(Message("lease"))
    assert host.services.resident.leases_of("service.echo") == 1
    assert any(n.startswith("service-lease:") for n in host.resources_for(caller.agent_id).status())
    host.deactivate(caller.agent_id)
    assert host.services.resident.leases_of("service.echo") == 0


def test_a_crashed_provider_restarts_on_the_next_call(host: Host) -> None:
    host.services.enable_resident(CrashyEcho)
    handle = host.require_contract(CRASHY_CONTRACT)
    first = handle.call(ECHO, EchoRequest("a"))
    with pytest.raises(PagletCrashedError):
        handle.call(CRASH)
    wait_until(lambda: host.get_proxy("service.crashy") is None)
    second = handle.call(ECHO, EchoRequest("b"))
    assert second.text == "b" and second.pid != first.pid


def test_eager_services_start_at_once_after_restarts_and_when_gone(
    make_host: MakeHost, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        '[[resident_services]]\nclass = "support.service_models:EagerEcho"\n',
    )
    host = make_host("alpha", launch_config=config, mesh=False)
    assert host.get_proxy("service.echo") is not None
    host.dispose("service.echo")
    wait_until(lambda: host.get_proxy("service.echo") is not None)  # started again
    host.shutdown()
    again = make_host("alpha", launch_config=config, mesh=False)
    assert again.get_proxy("service.echo") is not None
    assert again.lookup_service("echo").scope is ServiceScope.MESH


def test_lazy_providers_do_not_come_back_at_the_next_start(
    make_host: MakeHost, tmp_path: Path
) -> None:
    config = _config(tmp_path, '[[resident_services]]\nclass = "support.service_models:LazyEcho"\n')
    host = make_host("alpha", launch_config=config, mesh=False)
    host.require_contract(ECHO_CONTRACT).call(ECHO)
    assert host.get_proxy("service.echo") is not None
    host.shutdown()
    again = make_host("alpha", launch_config=config, mesh=False)
    assert again.get_proxy("service.echo") is None
    assert again.require_contract(ECHO_CONTRACT).call(ECHO, EchoRequest("z")).text == "z"


# -- the launch config -----------------------------------------------------------------------


def test_launch_config_entries_tune_services(make_host: MakeHost, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        """
[[resident_services]]
class = "support.service_models:LazyEcho"
agent_id = "tuned"
scope = "mesh"
state = { prefix = "T:" }

[[resident_services]]
class = "support.service_models:TwoServices"
service = "crashy"
enabled = false

[services.echo]
greeting = "hello"
""",
    )
    host = make_host("alpha", launch_config=config, mesh=False)
    (record,) = host.lookup_services("echo")
    assert (record.agent_id, record.scope) == ("tuned", ServiceScope.MESH)
    assert host.require_contract(ECHO_CONTRACT).call(ECHO, EchoRequest("x")).text == "T:x"
    assert host.create(Caller).send(Message("settings")) == {"greeting": "hello"}
    assert host.services.settings("nothing") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[resident_services]]\nclass = "support.nowhere:Gone"\n', "#1, key 'class'"),
        ('[[resident_services]]\nclass = "support.service_models:Plain"\n', "no RESIDENT_SERVICES"),
        (
            '[[resident_services]]\nclass = "support.service_models:TwoServices"\n',
            "several resident services (echo, crashy); set service",
        ),
        (
            '[[resident_services]]\nclass = "support.service_models:LazyEcho"\nservice = "x"\n',
            "has no resident service 'x'",
        ),
        (
            '[[resident_services]]\nclass = "support.service_models:LazyEcho"\n'
            '[[resident_services]]\nclass = "support.service_models:EagerEcho"\n',
            "already used",
        ),
        ('[[startup_agents]]\nclass = "support.nowhere:Gone"\n', "[[startup_agents]] #1"),
    ],
)
def test_bad_launch_configs_fail_the_host_construction(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = _config(tmp_path, text)
    with pytest.raises(LaunchConfigError) as caught:
        Host("alpha", persistence_dir=tmp_path / "alpha", launch_config=config)
    assert str(config) in str(caught.value) and expected in str(caught.value)
    # The store was closed: the same dir can be used at once.
    Host("alpha", persistence_dir=tmp_path / "alpha").stop()


# -- startup agents --------------------------------------------------------------------------


def test_startup_agents_start_once_across_restarts(make_host: MakeHost, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        """
[[startup_agents]]
class = "support.service_models:Watchdog"
state = { label = "from-config" }

[[startup_agents]]
class = "support.service_models:Plain"

[[startup_agents]]
class = "support.service_models:Plain"
enabled = false
""",
    )
    host = make_host("alpha", launch_config=config, mesh=False)
    assert host.get_state("watchdog").label == "from-config"  # AUTO_START gave the id
    plain = [a for a in host.list_agents() if a["class_name"].endswith(":Plain")]
    assert len(plain) == 1
    host.deactivate(plain[0]["agent_id"])
    host.stop()  # no hooks; the watchdog is recovered, the sleeping Plain is the singleton
    again = make_host("alpha", launch_config=config, mesh=False)
    agents = again.list_agents(inactive=True)
    assert sum(a["class_name"].endswith(":Plain") for a in agents) == 1
    assert again.get_proxy(plain[0]["agent_id"]) is not None  # started, not duplicated
    assert sum(a["agent_id"] == "watchdog" for a in agents) == 1


def test_a_failing_startup_agent_does_not_stop_the_host(
    make_host: MakeHost, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        '[[startup_agents]]\nclass = "support.service_models:Watchdog"\nstate = { label = 3 }\n',
    )
    host = make_host("alpha", launch_config=config, mesh=False)
    assert host.get_proxy("watchdog") is None
    assert any(e.kind == "startup-agent-failed" for e in host.list_events(limit=1000))


# -- over HTTP -------------------------------------------------------------------------------


def test_the_service_routes(host: Host) -> None:
    proxy = host.create(EchoService)
    host.services.enable_resident(LazyEcho, agent_id="svc.lazy")
    with HostClient(in_process=False) as client:
        url = host.address
        answer = client.post_json(
            f"{url}/agents/{proxy.agent_id}/services",
            {"name": "echo", "capabilities": ["echo"], "metadata": {"zone": "a"}, "ttl": 60},
        )
        assert answer["service"]["proxy"]["agent_id"] == proxy.agent_id
        listed = client.list_services(url, name="echo", capability="echo")
        assert {r["proxy"]["agent_id"] for r in listed} == {proxy.agent_id, "svc.lazy"}
        lease = client.post_json(f"{url}/services/leases", {"service_name": "echo", "ttl": 5})
        assert host.get_proxy("svc.lazy") is not None
        renewed = client.post_json(f"{url}/services/leases/{lease['lease_id']}/renew", {"ttl": 9})
        assert renewed["expires_at"] >= lease["expires_at"]
        released = client.post_json(f"{url}/services/leases/{lease['lease_id']}/release")
        assert released == {"released": True}
        status = client.get_json(f"{url}/services/resident")["services"]
        (lazy,) = [s for s in status if s["agent_id"] == "svc.lazy"]
        assert lazy["live"] is True
        removed = client.post_json(
            f"{url}/agents/{proxy.agent_id}/unadvertise-service", {"name": "echo"}
        )
        assert len(removed["services"]) == 1
        with pytest.raises(ServiceNotFoundError):
            client.post_json(f"{url}/services/leases", {"service_name": "nope"})
        with pytest.raises(InvalidAgentError):
            client.post_json(f"{url}/agents/nobody/services", {"name": "echo"})


def test_a_handle_over_the_network_starts_a_lazy_provider(host: Host) -> None:
    host.services.enable_resident(LazyEcho, agent_id="net.lazy")
    with HostClient(in_process=False) as client:
        (wire,) = client.list_services(host.address, name="echo")
        from paglets.services import ServiceRecord

        handle = ServiceHandle(ECHO_CONTRACT, ServiceRecord.from_wire(wire), client)
        assert host.get_proxy("net.lazy") is None
        assert handle.call(ECHO, EchoRequest("n")).text == "n"  # via POST /services/resident/ensure
        lease = handle.lease(ttl=5.0)
        assert host.services.resident.leases_of("net.lazy") == 1
        lease.release()
        assert host.services.resident.leases_of("net.lazy") == 0
