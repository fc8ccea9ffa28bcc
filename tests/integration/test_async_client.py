"""The event-loop client for host-to-host calls: same key, encodings, errors and moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from paglets import Host, Message
from paglets.core.errors import AuthenticationError, NotHandledError
from paglets.remote.async_client import AsyncHostClient
from support import move_models as mm


def test_messages_health_and_moves(make_host: Callable[..., Host]) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    proxy = alpha.create(mm.Traveller)

    async def scenario() -> None:
        async with AsyncHostClient() as client:
            health = await client.get_json(f"{alpha.address}/health")
            assert health["name"] == "alpha"
            assert (
                await client.send_message(alpha.address, proxy.agent_id, Message("add", {"n": 2}))
                == 2
            )
            await asyncio.to_thread(proxy.dispatch, beta.address)
            # The old address answers 307; the client follows it to beta.
            assert (
                await client.send_message(alpha.address, proxy.agent_id, Message("where")) == "beta"
            )
            with pytest.raises(NotHandledError):
                await client.send_message(beta.address, proxy.agent_id, Message("no-such-kind"))

    asyncio.run(scenario())


def test_a_keyed_host_refuses_a_keyless_client(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", api_key="sekrit")

    async def scenario() -> None:
        async with AsyncHostClient() as keyless:
            with pytest.raises(AuthenticationError):
                await keyless.get_json(f"{host.address}/agents")
        async with AsyncHostClient(api_key="sekrit") as keyed:
            assert (await keyed.get_json(f"{host.address}/agents"))["agents"] == []

    asyncio.run(scenario())
