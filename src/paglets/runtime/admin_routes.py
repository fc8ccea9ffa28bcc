"""Admin routes: `POST`/`GET /admin/git-update` (network.md section 5) and `POST
/admin/drain` (section 1.8, jobs.md 3.7). The middleware has checked the mesh key already.

* `POST /admin/git-update {target_hash?, source_name?, source_url?, source_host_id?}` →
  `202 {status: accepted|coalesced, update_id}` at once; `429 rate-limited` + `Retry-After`
  within `--auto-update-min-interval` of the last run; `403 auto-update-disabled` on a host
  started without `--auto-update-from-git`. Without `target_hash` the upstream's tip is the
  target.
* `GET /admin/git-update` → the checkout, its heads and the current or last run.
* `POST /admin/drain {drain: bool}` → `{draining, running_jobs, queued}`: the counts come
  from the host's compute-slots scheduler (running = granted or running leases; queued =
  its queue, which a draining host redirects to hosts that can start the jobs sooner).
  Admission stops at once, not at the next tick. `paglets host drain --wait` repeats the
  call until `running_jobs` is 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aiohttp import web
from msgspec import Meta, Struct

from paglets.core.errors import ForbiddenError
from paglets.runtime.http_wire import decode_body, read_body, refuse, reply
from paglets.tooling.git_update import RATE_LIMITED

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["admin_routes"]

Hash = Annotated[str, Meta(pattern="^[0-9a-f]{7,64}$")]
Text = Annotated[str, Meta(max_length=2048)]


class GitUpdateBody(Struct):
    target_hash: Hash | None = None
    source_name: Text | None = None
    source_url: Text | None = None
    source_host_id: Text | None = None


class DrainBody(Struct):
    drain: bool = True


def _disabled(host: Host) -> ForbiddenError:
    error = ForbiddenError(
        f"host {host.name!r} does not update itself from git; start it with "
        "--auto-update-from-git (from its git checkout) to allow this",
        code="auto-update-disabled",
    )
    return error


def admin_routes(host: Host) -> list[web.RouteDef]:
    async def git_update(request: web.Request) -> web.Response:
        data = await read_body(request, host.http.control_limit)
        auto = host.git_update
        if auto is None:
            raise _disabled(host)
        body: GitUpdateBody = decode_body(request, data, GitUpdateBody)
        result = auto.updater.request(
            body.target_hash,
            source_name=body.source_name,
            source_url=body.source_url,
            source_host_id=body.source_host_id,
        )
        if result.status == RATE_LIMITED:
            wait = max(1, round(result.retry_after_s or 1))
            refuse(
                f"host {host.name!r} updated from git less than "
                f"{auto.updater.min_interval:g}s ago ({result.message}); retry in {wait}s",
                code="rate-limited",
                headers={"Retry-After": str(wait)},
                detail={"status": RATE_LIMITED, "retry_after_s": result.retry_after_s},
            )
        # accepted, or coalesced into the run under way (whose id it names)
        return reply(request, {"status": result.status, "update_id": result.update_id}, status=202)

    async def git_update_status(request: web.Request) -> web.Response:
        auto = host.git_update
        if auto is None:
            return reply(request, {"enabled": False, "update": None})
        return reply(request, auto.updater.status())

    async def drain(request: web.Request) -> web.Response:
        data = await read_body(request, host.http.control_limit)
        body: DrainBody = decode_body(request, data, DrainBody)

        def run() -> dict[str, Any]:
            from paglets.system.compute_slots.graceful import job_counts
            from paglets.system.compute_slots.host_slots import existing_runtime

            host.drain.set(body.drain, reason="admin")
            rt = existing_runtime(host)
            if rt is not None:  # admission follows the drain now, not at the next tick
                with rt.lock:
                    rt.scheduler.set_accepting(
                        not host.drain.active and host.resource_monitor.accepting
                    )
                rt.wake()
            return {"draining": host.drain.active, **job_counts(host)}

        return reply(request, await host.http.run_blocking(run))

    return [
        web.post("/admin/git-update", git_update),
        web.get("/admin/git-update", git_update_status),
        web.post("/admin/drain", drain),
    ]
