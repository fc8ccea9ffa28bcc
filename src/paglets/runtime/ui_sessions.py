"""Dashboard sessions: what `POST /ui/login` hands a browser instead of the mesh key
(network.md §1.3).

A session token is `<expires>.<nonce>.<mac>`, where `mac` is an HMAC-SHA256 under a secret
derived from the mesh key (`HMAC(key, "paglets-ui-session-v1")`). The token reveals nothing
of the key, needs no table (a host restart keeps sessions; every host of a mesh accepts the
tokens of the others, which matters on one address with several ports, where browsers share
cookies), and expires on its own after 12 hours. Logging out revokes the token's nonce on
this host until the token would have expired anyway.

Requests that change something with a session (not a bearer key) also carry
`X-Paglets-CSRF`, a second HMAC of the nonce that the login answer and `GET /ui/api/session`
give the page's script: a page on another site can make a browser send the cookie, never
read that value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

__all__ = ["COOKIE", "CSRF_HEADER", "SESSION_SECONDS", "UiSessions"]

COOKIE = "paglets_session"
CSRF_HEADER = "X-Paglets-CSRF"
SESSION_SECONDS = 12 * 3600
_MAX_TOKEN = 160  # longer cookies are not ours: refused before any HMAC is computed
_MAX_REVOKED = 10_000


class UiSessions:
    """Issues and checks session tokens for one mesh key."""

    def __init__(
        self,
        key: bytes,
        *,
        lifetime: float = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = hmac.new(key, b"paglets-ui-session-v1", hashlib.sha256).digest()
        self.lifetime = lifetime
        self._clock = clock
        self._revoked: dict[str, float] = {}  # nonce -> when its token expires

    def _mac(self, purpose: str, text: str) -> str:
        return hmac.new(self._secret, f"{purpose}.{text}".encode(), hashlib.sha256).hexdigest()

    def issue(self) -> tuple[str, str, int]:
        """A new session: (token, csrf value, expiry as Unix seconds)."""
        expires = int(self._clock() + self.lifetime)
        nonce = secrets.token_hex(16)
        body = f"{expires}.{nonce}"
        return f"{body}.{self._mac('session', body)}", self.csrf(nonce), expires

    def verify(self, token: str) -> str | None:
        """The token's nonce when it is ours, unexpired and not revoked; else None."""
        if len(token) > _MAX_TOKEN:
            return None
        expires_text, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expires_text.isdigit() and nonce and mac):
            return None
        expected = self._mac("session", f"{expires_text}.{nonce}")
        if not hmac.compare_digest(expected, mac):
            return None
        if int(expires_text) <= self._clock() or nonce in self._revoked:
            return None
        return nonce

    def csrf(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def csrf_ok(self, nonce: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.csrf(nonce), given.strip())

    def revoke(self, token: str) -> None:
        """Logout: the token stops working on this host."""
        nonce = self.verify(token)
        if nonce is None:
            return
        now = self._clock()
        revoked = self._revoked
        for old, until in list(revoked.items()):
            if until <= now:
                del revoked[old]
        if len(revoked) >= _MAX_REVOKED:
            revoked.pop(next(iter(revoked)))
        revoked[nonce] = float(token.partition(".")[0])
