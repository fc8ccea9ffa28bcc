"""Dashboard session tokens (network.md §1.3): HMAC-derived, never the key, expiring after
12 h, revocable, and each with its own CSRF value."""

from __future__ import annotations

from paglets.runtime.ui_sessions import SESSION_SECONDS, UiSessions

KEY = b"the-mesh-key"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_accepted_until_it_expires() -> None:
    clock = Clock()
    sessions = UiSessions(KEY, clock=clock)
    token, csrf, expires = sessions.issue()
    assert expires == int(clock.now + SESSION_SECONDS)
    nonce = sessions.verify(token)
    assert nonce is not None and sessions.csrf(nonce) == csrf
    clock.now = expires - 1
    assert sessions.verify(token) == nonce
    clock.now = expires
    assert sessions.verify(token) is None


def test_the_token_holds_nothing_of_the_key() -> None:
    token, csrf, _ = UiSessions(KEY).issue()
    for secret in (KEY.decode(), KEY.hex()):
        assert secret not in token and secret not in csrf


def test_a_changed_token_is_refused() -> None:
    sessions = UiSessions(KEY)
    token, _, _ = sessions.issue()
    expires, nonce, mac = token.split(".")
    later = str(int(expires) + 10**6)
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    for bad in (
        f"{later}.{nonce}.{mac}",  # a longer life
        f"{expires}.{'0' * len(nonce)}.{mac}",  # another nonce
        f"{expires}.{nonce}.{flipped}",
        f"{expires}.{nonce}",
        "",
        "x" * 10_000,
        f"-1.{nonce}.{mac}",
    ):
        assert sessions.verify(bad) is None, bad


def test_tokens_of_another_key_are_refused_and_hosts_with_one_key_agree() -> None:
    token, _, _ = UiSessions(KEY).issue()
    assert UiSessions(b"another-key").verify(token) is None
    assert UiSessions(KEY).verify(token) is not None  # another host (or a restart), same key


def test_logout_revokes_one_token() -> None:
    sessions = UiSessions(KEY)
    kept, _, _ = sessions.issue()
    dropped, _, _ = sessions.issue()
    sessions.revoke(dropped)
    assert sessions.verify(dropped) is None
    assert sessions.verify(kept) is not None
    sessions.revoke("not-a-token")  # ignored


def test_csrf_values_are_per_session() -> None:
    sessions = UiSessions(KEY)
    first, first_csrf, _ = sessions.issue()
    _, second_csrf, _ = sessions.issue()
    assert first_csrf != second_csrf
    nonce = sessions.verify(first)
    assert nonce is not None
    assert sessions.csrf_ok(nonce, first_csrf)
    assert sessions.csrf_ok(nonce, f" {first_csrf} ")
    assert not sessions.csrf_ok(nonce, second_csrf)
    assert not sessions.csrf_ok(nonce, None)
    assert not sessions.csrf_ok(nonce, "")
