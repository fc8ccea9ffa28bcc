"""The dashboard's HTTP side (architecture.md §11, network.md §1.3, §1.8): the login that
trades the mesh key for a session cookie, the cookie in place of the bearer key, CSRF on
changes, redirects for browsers, and the gathering routes `/ui/api/*` (a paglet followed
after a move, the mesh with an incompatible member). Browser tests are in
tests/e2e/test_dashboard.py."""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie

from paglets import Host, Message
from paglets.examples.counter import Counter
from support.http_calls import Answer, Http
from support.waiting import wait_until

KEY = "dashboard-test-key"
HTML = {"Accept": "text/html,application/xhtml+xml"}


def login(client: Http, key: str = KEY) -> Answer:
    return client.post("/ui/login", {"key": key}, key=None)


def session_of(answer: Answer) -> tuple[str, str]:
    """(Cookie header value, CSRF value) from a successful login."""
    jar = SimpleCookie()
    jar.load(answer.headers["Set-Cookie"])
    morsel = jar["paglets_session"]
    return f"paglets_session={morsel.value}", answer.body["csrf"]


def test_login_sets_a_strict_http_only_cookie_that_is_not_the_key(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha", api_key=KEY)
    with Http(host.address) as client:
        answer = login(client)
        assert answer.status == 200 and answer.body["auth_required"] is True
        header = answer.headers["Set-Cookie"]
        jar = SimpleCookie()
        jar.load(header)
        morsel = jar["paglets_session"]
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/"
        assert int(morsel["max-age"]) == 12 * 3600
        assert KEY not in header and KEY not in answer.raw.decode()
        assert answer.headers["Cache-Control"] == "no-store"


def test_the_cookie_replaces_the_bearer_key_for_reading(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", api_key=KEY)
    host.create(Counter, agent_id="c1")
    with Http(host.address) as client:
        cookie, _ = session_of(login(client))
        headers = {"Cookie": cookie}
        assert client.get("/health", key=None).status == 401
        assert client.get("/health", key=None, headers=headers).status == 200
        assert client.get("/agents/c1", key=None, headers=headers).body["agent_id"] == "c1"
        assert client.get("/metrics", key=None, headers=headers).status == 200
        session = client.get("/ui/api/session", key=None, headers=headers).body
        assert session["host_name"] == "alpha" and session["auth_required"] is True
        assert session["csrf"] and KEY not in str(session)
        page = client.get("/ui/", key=None, headers={**headers, **HTML})
        assert page.status == 200 and b"static/app.js" in page.raw


def test_changes_with_a_cookie_need_the_csrf_header(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", api_key=KEY)
    host.create(Counter, agent_id="c1")
    with Http(host.address) as client:
        cookie, csrf = session_of(login(client))
        send = {"message": {"kind": "add"}}
        refused = client.post("/agents/c1/messages", send, key=None, headers={"Cookie": cookie})
        assert refused.status == 403 and refused.body["code"] == "csrf-required"
        assert host.get_state("c1").count == 0  # nothing ran
        wrong = {"Cookie": cookie, "X-Paglets-CSRF": "0" * 64}
        assert client.post("/agents/c1/messages", send, key=None, headers=wrong).status == 403
        right = {"Cookie": cookie, "X-Paglets-CSRF": csrf}
        answer = client.post("/agents/c1/messages", send, key=None, headers=right)
        assert answer.status == 200 and answer.body == {"result": 1}


def test_a_wrong_key_is_refused_and_throttled(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", api_key=KEY)
    host.http.auth.max_failures = 3
    with Http(host.address) as client:
        for _ in range(4):
            refused = login(client, "not-the-key")
            assert refused.status == 401 and refused.body["code"] == "auth-failed"
            assert "Set-Cookie" not in refused.headers
        throttled = login(client)  # even the right key, from this address, for a while
        assert throttled.status == 429 and throttled.body["code"] == "auth-throttled"


def test_forged_and_revoked_cookies_are_refused(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", api_key=KEY)
    host.http.auth.max_failures = 10_000
    with Http(host.address) as client:
        cookie, csrf = session_of(login(client))
        forged = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
        assert client.get("/health", key=None, headers={"Cookie": forged}).status == 401
        assert client.get("/health", key=None, headers={"Cookie": KEY}).status == 401
        out = client.post(
            "/ui/logout", {}, key=None, headers={"Cookie": cookie, "X-Paglets-CSRF": csrf}
        )
        assert out.status == 200 and "paglets_session=" in out.headers["Set-Cookie"]
        assert client.get("/health", key=None, headers={"Cookie": cookie}).status == 401


def test_browsers_without_a_session_are_sent_to_the_login_page(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha", api_key=KEY)
    with Http(host.address) as client:
        for path, location in (("/", "ui/login"), ("/ui", "ui/login"), ("/ui/", "login")):
            answer = client.get(path, key=None, headers=HTML)
            assert answer.status == 302 and answer.headers["Location"] == location
            assert client.get(path, key=None).status == 401  # an API caller gets the 401
        page = client.get("/ui/login", key=None, headers=HTML)
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
        script = client.get("/ui/static/app.js", key=None)
        assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
        assert client.get("/ui/static/style.css", key=None).status == 200
        assert client.get("/ui/static/../index.html", key=None).status in (401, 404)


def test_a_keyless_loopback_host_needs_no_login(host: Host) -> None:
    with Http(host.address) as client:
        answer = login(client, "anything")
        assert answer.status == 200 and answer.body["auth_required"] is False
        assert "Set-Cookie" not in answer.headers
        assert client.get("/ui/", headers=HTML).status == 200
        redirect = client.get("/", headers=HTML)
        assert redirect.status == 302 and redirect.headers["Location"] == "ui/"


def test_no_ui_and_no_metrics_remove_the_routes(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha", ui=False, metrics=False)
    with Http(host.address) as client:
        for path in ("/ui/", "/ui/login", "/ui/static/app.js", "/metrics", "/ui/api/session"):
            answer = client.get(path)
            assert answer.status == 404 and answer.body["code"] == "no-route", path
        assert "metrics" not in client.get("/health").body["capabilities"]


def test_paglet_detail_follows_a_move_and_keeps_the_history(
    make_host: Callable[..., Host],
) -> None:
    alpha = make_host("alpha", api_key=KEY)
    beta = make_host("beta", api_key=KEY, peers=[alpha.address])
    proxy = alpha.create(Counter, agent_id="walker")
    proxy.send(Message("add", {"n": 2}))
    proxy.dispatch(beta.address)
    proxy.send(Message("add"))
    with Http(alpha.address, key=KEY) as client:
        detail = client.get("/ui/api/paglets/walker").body
    assert detail["location"]["state"] == "live"
    assert detail["location"]["host_name"] == "beta"
    assert detail["summary"]["host"] == "beta" and detail["summary"]["active"] is True
    assert detail["mailbox"]["delivered"] >= 1
    assert detail["errors"] == []
    trail = [(e["host_name"], e["kind"]) for e in detail["history"]]
    assert trail == [("alpha", "create"), ("alpha", "dispatch"), ("beta", "arrival")]
    assert [h.rstrip("/") for h in detail["hosts_asked"]] == [beta.address, alpha.address]
    with Http(alpha.address, key=KEY) as client:
        unknown = client.get("/ui/api/paglets/nobody").body
        assert unknown["location"]["state"] == "unknown" and unknown["summary"] is None
        assert client.get("/ui/api/paglets/bad..id").status == 400


def test_mesh_view_flags_an_incompatible_member(make_host: Callable[..., Host]) -> None:
    alpha = make_host("alpha", api_key=KEY, tags=["laptop"])
    make_host("beta", api_key=KEY, peers=[alpha.address], tags=["linux"])
    make_host("old", api_key=KEY, peers=[alpha.address], mesh_version="other-version")
    alpha.create(Counter)

    def members() -> dict[str, dict]:
        with Http(alpha.address, key=KEY) as client:
            body = client.get("/ui/api/mesh").body
        return {m["name"]: m for m in body["members"]}

    wait_until(
        lambda: (
            {"alpha", "beta", "old"} <= members().keys()
            and members()["old"]["status"] == "incompatible"
            and members()["beta"]["status"] == "alive"
        ),
        timeout=20,
    )
    view = members()
    assert view["alpha"]["self"] is True and view["alpha"]["tags"] == ["laptop"]
    assert view["alpha"]["health"]["active_count"] == len(alpha.registry.live)
    assert view["beta"]["tags"] == ["linux"] and view["beta"]["health"]["name"] == "beta"
    assert "other-version" in view["old"]["incompatible_reason"]


def test_paglet_detail_asks_only_members_of_the_mesh(make_host: Callable[..., Host]) -> None:
    alpha = make_host("alpha", api_key=KEY)
    stranger = "http://192.0.2.7:8765"  # documentation range: never contacted
    with Http(alpha.address, key=KEY) as client:
        noted = client.post("/agents/ghost/location", {"url": stranger, "epoch": 3})
        assert noted.status == 200
        detail = client.get("/ui/api/paglets/ghost").body
    assert detail["location"]["state"] == "moved"
    assert detail["location"]["host_url"] == stranger
    assert detail["summary"] is None
    assert any(stranger in e and "not a member" in e for e in detail["errors"])
    assert stranger not in detail["hosts_asked"]
