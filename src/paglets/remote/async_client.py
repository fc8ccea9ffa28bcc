"""`AsyncHostClient`: host-to-host calls made from a host's event loop.

`HostClient` is synchronous and serves user code and the worker threads (moves run in a
paglet's turn, on a worker). Work that lives on the event loop itself — membership
probes, relays, fan-outs — must never block it, so it talks to other hosts through this
client: one pooled `aiohttp` session, the same key, the same encodings and errors, and
the same rule for moved paglets (follow the `307` block, at most `max_forward_hops`,
epochs never going back, the same delivery id on every hop).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from paglets.core.errors import (
    AuthenticationError,
    HostError,
    PagletError,
    PagletTimeoutError,
    RemoteHostError,
    error_from_wire,
)
from paglets.core.messages import SYNCHRONOUS, Message
from paglets.remote.agent_route import decode_answer, moved_target
from paglets.remote.http_pool import Headers
from paglets.remote.message_route import outgoing
from paglets.serialization import codec

__all__ = ["AsyncHostClient"]

MSGPACK = "application/msgpack"


class AsyncHostClient:
    """Pooled, keyed HTTP for coroutines. Create it on the loop that will use it."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        tls_ca: str | None = None,
        max_forward_hops: int = 8,
    ) -> None:
        self.timeout = timeout
        self.max_forward_hops = max_forward_hops
        self._headers = {"X-Paglets-Protocol": "1"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=tls_ca) if tls_ca else None
        )
        self._session: aiohttp.ClientSession | None = None

    def _sessions(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=256, ssl=self._ssl if self._ssl is not None else True
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers
            )
        return session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncHostClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the exchange ----------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        accept: str = MSGPACK,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Headers, bytes]:
        """One exchange; any status is returned. Unreachable → `RemoteHostError`, no answer
        in time → `PagletTimeoutError`."""
        sent = {"Accept": accept}
        if body is not None:
            sent["Content-Type"] = content_type
        if headers:
            sent.update(headers)
        limit = aiohttp.ClientTimeout(total=self.timeout if timeout is None else timeout)
        try:
            async with self._sessions().request(
                method, url, data=body, headers=sent, timeout=limit, allow_redirects=False
            ) as response:
                headers = Headers((k.lower(), v) for k, v in response.headers.items())
                return response.status, headers, await response.read()
        except TimeoutError:
            raise PagletTimeoutError(f"{method} {url}: no answer within {limit.total:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RemoteHostError(f"could not reach {url}: {exc}") from None

    def _error(self, status: int, headers: Headers, data: bytes, what: str) -> PagletError:
        try:
            body = decode_answer(headers, data)
        except Exception:
            body = None
        if isinstance(body, dict) and body.get("error_type"):
            error = error_from_wire(body)
        else:
            text = data[:200].decode("utf-8", "replace").strip() or "(empty body)"
            error = (HostError if status < 500 else RemoteHostError)(
                f"{what} answered HTTP {status}: {text}"
            )
        if status == 401 and not isinstance(error, AuthenticationError):
            return AuthenticationError(f"{what}: the host wants the mesh key ({error})")
        return error

    async def get_json(self, url: str, *, timeout: float | None = None) -> Any:
        status, headers, data = await self.request("GET", url, timeout=timeout)
        if status >= 300:
            raise self._error(status, headers, data, f"GET {url}")
        return decode_answer(headers, data)

    async def post_json(
        self, url: str, payload: Any = None, *, timeout: float | None = None
    ) -> Any:
        body = codec.encode(payload if payload is not None else {}, format="json")
        status, headers, data = await self.request("POST", url, body=body, timeout=timeout)
        if status >= 300:
            raise self._error(status, headers, data, f"POST {url}")
        return decode_answer(headers, data)

    # -- messages --------------------------------------------------------------------

    async def send_message(
        self,
        url: str,
        agent_id: str,
        message: Message,
        *,
        oneway: bool = False,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        """Deliver `message` to the paglet, following it if it moved; its reply."""
        out = outgoing(
            message, SYNCHRONOUS, oneway, activate_if_inactive, no_delay, False, None, None
        )
        body = out.http_body()
        epoch = -1
        target = url.rstrip("/")
        for _ in range(self.max_forward_hops + 1):
            status, headers, data = await self.request(
                "POST",
                f"{target}/agents/{agent_id}/messages",
                body=body,
                content_type=MSGPACK,
                timeout=timeout,
            )
            if status == 307:
                moved = moved_target(
                    decode_answer(headers, data).get("moved"), headers.get("X-Paglets-Epoch")
                )
                if moved is None or moved[1] < epoch:
                    raise RemoteHostError(
                        f"{target} answered a move that goes nowhere for {agent_id!r}"
                    )
                target, epoch = moved[0].rstrip("/"), moved[1]
                continue
            if status >= 300:
                raise self._error(
                    status, headers, data, f"message {message.kind!r} to {agent_id!r}"
                )
            answer = decode_answer(headers, data)
            result = (
                answer.get("result") if isinstance(answer, dict) and "result" in answer else answer
            )
            if oneway:
                return None
            return codec.convert(result, reply_type) if reply_type is not None else result
        raise RemoteHostError(f"paglet {agent_id!r} moved more than {self.max_forward_hops} times")
