"""Typed operations on one paglet without a registry (api.md §17 `operations`).

`OperationPaglet` lists its `ServiceOperation`s in `Operations` and maps them to methods in
`operation_handlers()`; `OperationClient` calls them through a proxy with the same
request/reply checks as a `ServiceHandle`:

```python
PING = ServiceOperation("ping", PingRequest, PingReply)

class Pinger(OperationPaglet[PingerState]):
    State = PingerState
    Operations = (PING,)

    def operation_handlers(self):
        return {PING: self.ping}

    def ping(self, request: PingRequest) -> PingReply:
        return PingReply(echo=request.text)

reply = OperationClient(proxy).call(PING, PingRequest("hi"))
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from paglets.core.agent import Paglet
from paglets.core.errors import ServiceContractError
from paglets.core.messages import Message
from paglets.services.contracts import ServiceOperation

__all__ = ["OperationClient", "OperationPaglet"]

StateT = TypeVar("StateT")


class OperationPaglet(Paglet[StateT]):
    """A paglet whose messages are typed operations.

    A message whose kind is one of `Operations` is decoded into the request type, handed to
    the handler `operation_handlers()` maps it to (by operation or by name; the mapping is
    rebuilt for every message, so it may depend on the state), and its reply checked and
    encoded. A listed operation without a handler is a `ServiceContractError`. Other kinds
    go to `handle_operation_message(message)`, where `None` means not handled.
    """

    Operations: ClassVar[tuple[ServiceOperation[Any, Any], ...]] = ()

    def operation_handlers(self) -> Mapping[Any, Callable[[Any], Any]]:
        return {}

    def handle_operation_message(self, message: Message) -> Any:
        return None

    @classmethod
    def operation_named(cls, name: str) -> ServiceOperation[Any, Any] | None:
        for op in cls.Operations:
            if op.name == name:
                return op
        return None

    def handle_message(self, message: Message) -> Any:
        op = self.operation_named(message.kind)
        if op is None:
            result = self.handle_operation_message(message)
            return self.not_handled() if result is None else result
        handlers = self.operation_handlers()
        handler = handlers.get(op)
        if handler is None:
            handler = handlers.get(op.name)
        if handler is None:
            raise ServiceContractError(
                f"{type(self).__qualname__} lists operation {op.name!r} in Operations but "
                "operation_handlers() has no handler for it"
            )
        return op.encode_reply(handler(op.decode_request(message)))


class OperationClient:
    """Typed calls to one paglet's operations through `proxy` (a `PagletProxy`)."""

    __slots__ = ("proxy",)

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy

    def __repr__(self) -> str:
        return f"OperationClient({self.proxy!r})"

    def call(
        self,
        op: ServiceOperation[Any, Any],
        request: Any = None,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Send `op` with `request` (`None` = its default) and return the typed reply."""
        reply = self.proxy.send(
            op.to_message(request),
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
        )
        return op.decode_reply(reply)

    async def call_async(
        self,
        op: ServiceOperation[Any, Any],
        request: Any = None,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
    ) -> Any:
        reply = await self.proxy.send_async(
            op.to_message(request),
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
        )
        return op.decode_reply(reply)

    def send_oneway(
        self,
        op: ServiceOperation[Any, Any],
        request: Any = None,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Queue `op` at the paglet without waiting for its reply."""
        self.proxy.send_oneway(
            op.to_message(request),
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
        )
