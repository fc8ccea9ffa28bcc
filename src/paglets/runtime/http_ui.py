"""The dashboard's routes (architecture.md §11, network.md §1.3 and §1.8).

* `GET /` and `GET /ui` redirect to `/ui/`, the page (`web/index.html`, no build step);
  `/ui/static/*` serves its script and style sheet. Both, and `GET /ui/login`, need no key:
  they hold no data.
* `POST /ui/login` takes `{"key": ...}` (JSON, sent by the page's script, never in a URL)
  and answers with an HttpOnly, SameSite=Strict session cookie that replaces the bearer key
  for this browser (`ui_sessions.py`); `POST /ui/logout` revokes it.
* `GET /ui/api/session`, `/ui/api/mesh` and `/ui/api/paglets/{id}` answer what the page
  shows and no single API route does (`ui_data.py`). Everything else the page reads from
  the API itself (`/agents`, `/events/stream`, `/artifacts`, `/jobs`, ...), with the cookie.

Locations in redirects are relative, so the dashboard also works behind `--public-url`
with a path prefix.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

import paglets
from paglets.runtime.http_wire import SERVER_KEY, decode_body, read_body, reply
from paglets.runtime.ui_data import mesh_members, mesh_view, paglet_detail
from paglets.runtime.ui_sessions import COOKIE

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["ui_routes"]

LOGIN_BODY_BYTES = 4096
STATIC_TYPES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
}
# The page loads nothing from elsewhere and runs no inline script.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginBody(msgspec.Struct):
    key: str = ""


def _web_file(name: str) -> bytes:
    return resources.files("paglets.web").joinpath(name).read_bytes()


def ui_routes(host: Host) -> list[web.RouteDef]:
    """The dashboard's routes, or none with `--no-ui` (then `/ui/...` is `404 no-route`)."""
    if not getattr(host, "ui_enabled", True):
        return []
    page = _web_file("index.html")
    static = {name: _web_file(name) for name in STATIC_TYPES}

    def server_of(request: web.Request) -> Any:
        return request.app[SERVER_KEY]

    async def to_ui(request: web.Request) -> web.Response:
        raise web.HTTPFound("ui/")  # relative: from "/" and from "/ui" alike

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            body=page, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
        )

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = static.get(name)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=body,
            content_type=STATIC_TYPES[name],
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )

    async def login(request: web.Request) -> web.Response:
        server = server_of(request)
        data = await read_body(request, LOGIN_BODY_BYTES)
        body: LoginBody = decode_body(request, data, LoginBody)
        session = server.auth.login(request, body.key)
        if session is None:  # no key on this host: nothing to log in to
            return reply(request, {"ok": True, "auth_required": False, "host_name": host.name})
        token, csrf, expires = session
        response = reply(
            request,
            {
                "ok": True,
                "auth_required": True,
                "host_name": host.name,
                "csrf": csrf,
                "expires_at": expires,
            },
            headers={"Cache-Control": "no-store"},
        )
        response.set_cookie(
            COOKIE,
            token,
            max_age=server.auth.sessions.lifetime,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=bool(host.tls[0]),
        )
        return response

    async def logout(request: web.Request) -> web.Response:
        sessions = server_of(request).auth.sessions
        token = request.cookies.get(COOKIE)
        if sessions is not None and token:
            sessions.revoke(token)
        response = reply(request, {"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def session(request: web.Request) -> web.Response:
        auth = server_of(request).auth
        csrf = expires = None
        token = request.cookies.get(COOKIE)
        if auth.sessions is not None and token:
            nonce = auth.sessions.verify(token)
            if nonce is not None:
                csrf = auth.sessions.csrf(nonce)
                expires = int(token.partition(".")[0])
        return reply(
            request,
            {
                "host_name": host.name,
                "host_url": host.address,
                "auth_required": auth.enabled,
                "csrf": csrf,
                "expires_at": expires,
                "code_version": host.mesh_version,
                "paglets_version": paglets.__version__,
                "last_event_id": host.events.last_event_id,
                "metrics": bool(getattr(host, "metrics_enabled", True)),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def mesh(request: web.Request) -> web.Response:
        members = mesh_members(host)  # on the loop, where the membership node lives
        body = await server_of(request).run_blocking(mesh_view, host, members)
        return reply(request, body)

    async def paglet(request: web.Request) -> web.Response:
        agent_id = request.match_info["id"]
        body = await server_of(request).run_blocking(paglet_detail, host, agent_id)
        return reply(request, body)

    return [
        web.get("/", to_ui),
        web.get("/ui", to_ui),
        web.get("/ui/", index),
        web.get("/ui/login", index),
        web.post("/ui/login", login),
        web.post("/ui/logout", logout),
        web.get("/ui/static/{name}", asset),
        web.get("/ui/api/session", session),
        web.get("/ui/api/mesh", mesh),
        web.get("/ui/api/paglets/{id}", paglet),
    ]
