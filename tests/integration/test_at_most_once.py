"""targets r4: a synchronous send retried after a lost reply runs its handler once."""

from __future__ import annotations

from collections.abc import Callable

from paglets import Host, Message
from paglets.remote.client import HostClient
from support import move_models as mm


def test_a_resent_delivery_id_runs_the_handler_once(make_host: Callable[..., Host]) -> None:
    alpha = make_host("alpha")
    proxy = alpha.create(mm.Traveller)
    client = HostClient(in_process=False)  # over the network, as a retrying remote caller
    first = client.send_message(alpha.address, proxy.agent_id, Message("add", message_id="a" * 32))
    # The caller lost that reply and sends again under the same delivery id.
    again = client.send_message(alpha.address, proxy.agent_id, Message("add", message_id="a" * 32))
    assert first == again == 1
    assert alpha.get_state(proxy.agent_id).count == 1
    # A new delivery id is a new send.
    assert client.send_message(alpha.address, proxy.agent_id, Message("add")) == 2
