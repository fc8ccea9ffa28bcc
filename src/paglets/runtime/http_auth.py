"""Who may talk to a host: the bearer-key check, its throttle, the open routes, and the
`/mesh/hello` proof (network.md §1.3, §3.7; architecture.md §10).

The check runs first, on headers only: no body byte is read and no media type is looked at
before it passes (a keyless pickle request gets `401`, not `415`). Keys are compared as
SHA-256 digests with `hmac.compare_digest`, so neither the key's length nor its prefix
leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from aiohttp import web

from paglets.runtime.http_wire import SERVER_KEY, HttpRefusal, refuse, reply
from paglets.runtime.ui_sessions import COOKIE, CSRF_HEADER, UiSessions

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["PROTOCOL", "Auth", "host_id_of", "mesh_hello"]

PROTOCOL = 1
_NONCE = re.compile(r"[0-9a-fA-F]{32}")
_MAX_TRACKED = 10_000  # addresses remembered by the throttle (oldest forgotten first)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Dashboard pages a browser opens by hand: without credentials it is sent to the login page
# (relative locations, so a --public-url path prefix survives) instead of a JSON 401.
_LOGIN_FROM = {"/": "ui/login", "/ui": "ui/login", "/ui/": "login"}


def host_id_of(host: Host) -> str:
    """The host's persistent id (32 hex, network.md §0), made and stored on first use."""
    existing = getattr(host, "host_id", None)
    if isinstance(existing, str) and existing:
        return existing
    stored = host.store.get_meta("host_id")
    if stored:
        return stored
    made = uuid.uuid4().hex
    host.store.set_meta("host_id", made)
    return made


class _Failures:
    __slots__ = ("blocked_until", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.blocked_until = 0.0


class Auth:
    """The bearer check and the failure throttle of one host.

    `max_failures`, `window` and `block_seconds` are attributes so tests (and an operator
    embedding a host) can tune them; the defaults are network.md §1.3's.
    """

    def __init__(self, api_key: str | None, *, client_ca: bool = False) -> None:
        self.enabled = bool(api_key)
        self._key = api_key.encode() if api_key else b""
        self._digest = hashlib.sha256(self._key).digest() if api_key else b""
        self._client_ca = client_ca
        self.max_failures = 20
        self.window = 60.0
        self.block_seconds = 60.0
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        # Dashboard sessions (cookie instead of the bearer key); None without a key.
        self.sessions = UiSessions(self._key) if api_key else None

    # -- the open routes ---------------------------------------------------------------

    @staticmethod
    def is_open(request: web.Request) -> bool:
        method = request.method
        path = request.path
        if method == "POST":
            return path == "/ui/login"  # checks the key itself, under the same throttle
        if method not in ("GET", "HEAD"):
            return False
        return path in ("/mesh/hello", "/ui/login") or path.startswith("/ui/static/")

    # -- the check ---------------------------------------------------------------------

    def check(self, request: web.Request) -> None:
        """Raise the 401/429 refusal, or return when the caller may go on."""
        if not self.enabled or self.is_open(request):
            return
        address = request.remote or "?"
        now = time.monotonic()
        record = self._throttled(address, now)
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and self.key_matches(token):
                return
        cookie = request.cookies.get(COOKIE) if self.sessions is not None else None
        if cookie and self._session_ok(request, cookie):
            return
        if self._client_ca and self._verified_peer(request):
            return
        login = _LOGIN_FROM.get(request.path) if request.method == "GET" else None
        if login is not None and "text/html" in request.headers.get("Accept", ""):
            if header is not None or cookie:
                self._fail(address, now, record)  # a wrong credential still counts
            raise web.HTTPFound(login, headers={"Cache-Control": "no-store"})
        self._fail(address, now, record)
        if header is None:
            raise HttpRefusal(
                f"{request.method} {request.path} needs the mesh key: this host requires "
                "'Authorization: Bearer <key>'",
                code="auth-required",
                error_type="AuthenticationError",
                headers={"WWW-Authenticate": 'Bearer realm="paglets"'},
            )
        raise HttpRefusal(
            f"{request.method} {request.path}: the bearer key was not accepted",
            code="auth-failed",
            error_type="AuthenticationError",
            headers={"WWW-Authenticate": 'Bearer realm="paglets"'},
        )

    def _throttled(self, address: str, now: float) -> _Failures | None:
        """Refuse (429) an address blocked for failing too often; else its record."""
        record = self._failures.get(address)
        if record is not None and record.blocked_until > now:
            wait = max(1, int(record.blocked_until - now + 0.999))
            refuse(
                f"too many failed key checks from {address}; try again in {wait}s",
                code="auth-throttled",
                headers={"Retry-After": str(wait)},
            )
        return record

    def key_matches(self, key: str) -> bool:
        """Whether `key` is the mesh key (SHA-256 digests compared in constant time)."""
        given = hashlib.sha256(key.strip().encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(given, self._digest)

    def _session_ok(self, request: web.Request, cookie: str) -> bool:
        """A valid dashboard session; a request that changes something also needs the
        session's CSRF value (403 without it: the session is fine, the caller is not)."""
        sessions = self.sessions
        assert sessions is not None
        nonce = sessions.verify(cookie)
        if nonce is None:
            return False
        if request.method not in _SAFE_METHODS and not sessions.csrf_ok(
            nonce, request.headers.get(CSRF_HEADER)
        ):
            raise HttpRefusal(
                f"{request.method} {request.path} with a dashboard session needs the "
                f"{CSRF_HEADER} header the login gave the page",
                code="csrf-required",
                error_type="ForbiddenError",
                status=403,
            )
        return True

    def login(self, request: web.Request, key: str) -> tuple[str, str, int] | None:
        """`POST /ui/login`: check `key` under the same throttle as a bearer check; a new
        session (token, csrf, expiry), or None when this host has no key to check."""
        if self.sessions is None:
            return None
        address = request.remote or "?"
        now = time.monotonic()
        record = self._throttled(address, now)
        if self.key_matches(key):
            return self.sessions.issue()
        self._fail(address, now, record)
        raise HttpRefusal(
            "the key was not accepted: every host of a mesh has the same key (PAGLETS_API_KEY "
            "or ~/.paglets/mesh.key); paste that one",
            code="auth-failed",
            error_type="AuthenticationError",
        )

    @staticmethod
    def _verified_peer(request: web.Request) -> bool:
        transport = request.transport
        if transport is None:
            return False
        # With --tls-ca the TLS layer already refused unverified certificates; any peer
        # certificate present here was verified against the mesh CA.
        return bool(transport.get_extra_info("peercert"))

    def _fail(self, address: str, now: float, record: _Failures | None) -> None:
        failures = self._failures
        if record is None:
            record = failures[address] = _Failures()
            if len(failures) > _MAX_TRACKED:
                failures.popitem(last=False)
        else:
            failures.move_to_end(address)
        times = record.times
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) > self.max_failures:
            record.blocked_until = now + self.block_seconds
            times.clear()

    # -- /mesh/hello -----------------------------------------------------------------

    def proof(self, nonce: str, host_id: str) -> str | None:
        """HMAC-SHA256(key, "hello" + nonce + host_id), hex; None without a key."""
        if not self.enabled:
            return None
        message = f"hello{nonce}{host_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


async def mesh_hello(request: web.Request) -> web.Response:
    """GET /mesh/hello?nonce=32hex (open): proves this host holds the mesh key."""
    server: Any = request.app[SERVER_KEY]
    nonce = request.query.get("nonce", "")
    if not _NONCE.fullmatch(nonce):
        refuse(
            "GET /mesh/hello needs ?nonce= with 32 hex characters",
            code="bad-query",
            error_type="SerializationError",
        )
    host_id = server.host_id
    return reply(
        request,
        {"protocol": PROTOCOL, "host_id": host_id, "proof": server.auth.proof(nonce, host_id)},
    )
