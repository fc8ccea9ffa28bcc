"""A plain HTTP client for the HTTP API tests: `http.client` over one keep-alive connection,
JSON or MessagePack bodies, and the decoded answer (no paglets client code involved)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

JSON = "application/json"
MSGPACK = "application/msgpack"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def body(self) -> Any:
        ctype = self.headers.get("Content-Type", "")
        if "msgpack" in ctype:
            return msgspec.msgpack.decode(self.raw)
        if "json" in ctype:
            return json.loads(self.raw)
        return self.raw


class Http:
    """One connection to a host; reconnects when the server closed it."""

    def __init__(self, url: str, *, key: str | None = None, fmt: str = "json") -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.key = key
        self.fmt = fmt
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        fmt: str | None = None,
        key: str | bool | None = True,
    ) -> Answer:
        fmt = fmt or self.fmt
        sent: dict[str, str] = {"Accept": MSGPACK if fmt == "msgpack" else JSON}
        use_key = self.key if key is True else (key or None)
        if use_key:
            sent["Authorization"] = f"Bearer {use_key}"
        data = raw
        if data is None and body is not None:
            if fmt == "msgpack":
                data = msgspec.msgpack.encode(body)
                sent["Content-Type"] = MSGPACK
            else:
                data = json.dumps(body).encode()
                sent["Content-Type"] = JSON
        sent.update(headers or {})
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=sent)
                response = self.conn.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return Answer(response.status, response.headers, payload)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.request("POST", path, body, **kw)
