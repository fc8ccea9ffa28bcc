"""The host's end of one `ISOLATION = "process"` paglet's child: the process, the pipe,
and the reader thread that serves it.

Calls into the child (`call`) wait on a queue of their own; the reader puts there the
call's answer and the callbacks the child makes while serving it, so the calling thread
(which holds the paglet's turn) runs those callbacks itself. Callbacks from `run()` or a
user thread in the child run on the host's worker pool. The reader also watches the
process: its exit, or no frame for the heartbeat timeout while no call is running (a long
handler is never hung), ends the link, and the owner reports the crash before any waiting
caller is woken, so a caller that sees `PagletCrashedError` finds the crash recorded.
Every wait here has a timeout or re-checks the child at least every `POLL` seconds.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import wait as wait_ready
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Protocol

from paglets.core.agent import NOT_HANDLED
from paglets.core.errors import HostError, PagletCrashedError, error_from_wire, error_to_wire
from paglets.runtime import child as child_main
from paglets.runtime import forkserver
from paglets.runtime import isolation_wire as wire

if TYPE_CHECKING:
    from paglets.runtime.classes import ClassSpec
    from paglets.runtime.host import Host

log = logging.getLogger("paglets.isolation")

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "HEARTBEAT_TIMEOUT_ENV",
    "ChildLink",
    "LinkOwner",
    "describe_exit",
    "heartbeat_timeout",
]

HEARTBEAT_TIMEOUT_ENV = "PAGLETS_CHILD_HEARTBEAT_TIMEOUT"
DEFAULT_HEARTBEAT_TIMEOUT = 10.0
START_TIMEOUT = 30.0  # child start → instance built
STOP_GRACE = 2.0  # a departed child's run() gets this long to return
POLL = 0.5  # every wait re-checks the child at least this often


class LinkOwner(Protocol):
    """What the link needs from the stand-in it serves."""

    def _apply_state(self, data: bytes | None, *, dirty: bool = False) -> None: ...
    def _callback(self, op: str, payload: Any) -> Any: ...
    def _crashed(self, exitcode: int | None, reason: str) -> None: ...


_DEAD = ("dead",)
_links: set[ChildLink] = set()
_links_lock = threading.Lock()


def heartbeat_timeout() -> float:
    raw = os.environ.get(HEARTBEAT_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_HEARTBEAT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise HostError(
            f"{HEARTBEAT_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}"
        )
    return value


def describe_exit(exitcode: int | None, hung_after: float | None) -> str:
    if hung_after is not None:
        return f"hung: no heartbeat for {hung_after:g}s, killed"
    if exitcode is None:
        return "the child process vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (as the OOM killer does)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {exitcode}"


# -- the link to one child process ---------------------------------------------------------


class ChildLink:
    """The pipe, process and reader thread of one child."""

    def __init__(
        self, owner: LinkOwner, host: Host, spec: ClassSpec, agent_id: str, state: bytes
    ) -> None:
        self.owner = owner
        self.host_name = host.name
        self.agent_id = agent_id
        self.dead = False  # set once the death is reported: callers then see it everywhere
        self._finished = threading.Event()
        self.exitcode: int | None = None
        self.reason = ""
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._calls: dict[int, SimpleQueue[Any]] = {}
        self._ids = itertools.count(1)
        self._inflight = 0
        self._stopping = False
        self._stop_pending = False
        self._hung_after: float | None = None
        self._ready: Future[Any] = Future()
        self._run_done = threading.Event()
        self._run_error: dict[str, Any] | None = None
        self._hb_timeout = heartbeat_timeout()
        self._interval = min(1.0, self._hb_timeout / 4)
        self._pool = host.pool
        self._host_stopped = lambda: host.stopped
        init = {
            "agent_id": agent_id,
            "class_name": spec.class_name,
            "state": state,
            "host_name": host.name,
            "host_address": host.address,
            "heartbeat": self._interval,
            "allow_modules": host.allow_modules,
            "code_version": host.mesh_version,
            "default_timeout": host.default_timeout,
            "env": dict(os.environ),
        }
        self.conn, child_end = forkserver.pipe()
        try:
            self.proc = forkserver.start_child(
                child_main.main, (child_end, init), name=f"paglet-{agent_id[:40]}"
            )
        finally:
            child_end.close()
        self._last_seen = time.monotonic()
        with _links_lock:
            _links.add(self)
        threading.Thread(
            target=self._read, name=f"paglet-link-{agent_id[:12]}", daemon=True
        ).start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def wait_ready(self) -> bytes | None:
        """Block until the child built the instance; its state if `__init__` changed it."""
        try:
            return self._ready.result(START_TIMEOUT)
        except TimeoutError:
            self.kill()
            raise HostError(
                f"the child process of paglet {self.agent_id!r} did not start within "
                f"{START_TIMEOUT:g}s; check that its module imports quickly"
            ) from None
        except BaseException:
            self.kill()
            raise

    # -- frames ------------------------------------------------------------------------

    def _send(self, frame: list[Any]) -> None:
        data = wire.encode_frame(frame)
        with self._write_lock:
            self.conn.send_bytes(data)

    def _read(self) -> None:
        conn, sentinel = self.conn, self.proc.sentinel
        try:
            while True:
                ready = wait_ready([conn, sentinel], self._interval)
                if conn in ready:
                    try:
                        data = conn.recv_bytes()
                    except (EOFError, OSError):
                        break
                    self._last_seen = time.monotonic()
                    self._on_frame(wire.decode_frame(data))
                elif sentinel in ready:
                    break
                else:
                    self._check_heartbeat()
        except Exception:
            log.exception("the link to the child of paglet %s failed", self.agent_id)
        finally:
            self._died()

    def _on_frame(self, frame: list[Any]) -> None:
        kind = frame[0]
        if kind == wire.DONE:
            inbox = self._calls.get(frame[1])
            if inbox is not None:
                inbox.put(frame)
        elif kind == wire.CALLBACK:
            inbox = self._calls.get(frame[2]) if frame[2] else None
            if inbox is not None:
                inbox.put(frame)  # the thread waiting for that call (it holds the turn)
            else:
                self._serve_on_pool(frame)
        elif kind == wire.STATE:
            self.owner._apply_state(frame[1], dirty=True)
        elif kind == wire.RUN_DONE:
            self.owner._apply_state(frame[2], dirty=True)
            self._run_error = frame[1]
            self._run_done.set()
        elif kind == wire.READY:
            if frame[1]:
                self._ready.set_result(frame[3])
            else:
                self._stopping = True  # a child that could not build its paglet is no crash
                self._ready.set_exception(error_from_wire(frame[2]))

    def _check_heartbeat(self) -> None:
        if (
            self._inflight
            or self._stopping
            or self._hung_after is not None
            or not self._ready.done()  # still importing: START_TIMEOUT bounds that
        ):
            return
        if time.monotonic() - self._last_seen > self._hb_timeout:
            self._hung_after = self._hb_timeout
            log.warning(
                "the child of paglet %s sent no heartbeat for %gs; killing it",
                self.agent_id,
                self._hb_timeout,
            )
            self.kill()

    def _died(self) -> None:
        self.proc.join(5.0)
        self.exitcode = self.proc.exitcode
        self.reason = describe_exit(self.exitcode, self._hung_after)
        if not self._ready.done():
            self._ready.set_exception(
                PagletCrashedError(
                    f"the child process of paglet {self.agent_id!r} {self.reason} while starting"
                )
            )
        elif not self._stopping:
            try:
                self.owner._crashed(self.exitcode, self.reason)
            except Exception:
                log.exception("reporting the crash of paglet %s failed", self.agent_id)
        self.dead = True
        self._finished.set()
        with self._lock:
            inboxes = list(self._calls.values())
        for inbox in inboxes:
            inbox.put(_DEAD)
        self._run_done.set()
        self.conn.close()
        with _links_lock:
            _links.discard(self)

    def crashed_error(self) -> PagletCrashedError:
        # The reader reports the death before it wakes anyone; a caller that noticed it
        # first (a failed write) waits for that report, so the crash is visible everywhere
        # by the time the caller sees the error.
        self._finished.wait(5.0)
        return PagletCrashedError(
            f"paglet {self.agent_id!r} on host {self.host_name!r} crashed: {self.reason or 'its child process died'}; "
            "dispose it or activate it to restart it from its last checkpoint"
        )

    # -- calls into the child ----------------------------------------------------------

    def call(self, op: str, payload: Any) -> Any:
        """Run `op` in the child and return its result, serving the callbacks it makes
        meanwhile on this thread. No overall timeout (a handler may run long); a dead
        child ends the wait."""
        if self.dead:
            raise self.crashed_error()
        call_id = next(self._ids)
        inbox: SimpleQueue[Any] = SimpleQueue()
        with self._lock:
            self._calls[call_id] = inbox
            self._inflight += 1
        try:
            try:
                self._send([wire.CALL, call_id, op, payload])
            except (OSError, ValueError):
                raise self.crashed_error() from None
            while True:
                try:
                    frame = inbox.get(timeout=POLL)
                except Empty:
                    if self._finished.is_set():
                        raise self.crashed_error() from None
                    continue
                kind = frame[0]
                if kind == wire.DONE:
                    status, value, state = frame[2], frame[3], frame[4]
                    if state is not None:
                        self.owner._apply_state(state)
                    if status == wire.OK:
                        return value
                    if status == wire.NOT_HANDLED_STATUS:
                        return NOT_HANDLED
                    raise error_from_wire(value)
                if kind == wire.CALLBACK:
                    self._serve(frame)
                    continue
                raise self.crashed_error()
        finally:
            with self._lock:
                del self._calls[call_id]
                self._inflight -= 1
                self._last_seen = time.monotonic()
                stop_now = self._stop_pending and self._inflight == 0
                if stop_now:
                    self._stop_pending = False
            if stop_now:
                self._stop_now()

    def run(self) -> None:
        """Start `run()` in the child and wait until it returns (re-raising its error)."""
        if self.dead or self._stopping:
            return
        self._run_done.clear()
        self._run_error = None
        try:
            self._send([wire.RUN])
        except (OSError, ValueError):
            return
        while not self._run_done.wait(POLL):
            pass
        if self._run_error is not None and not self.dead:
            raise error_from_wire(self._run_error)

    # -- callbacks from the child ------------------------------------------------------

    def _serve_on_pool(self, frame: list[Any]) -> None:
        try:
            self._pool.submit(self._serve, frame)
        except RuntimeError as exc:  # the host is stopping
            self._reply(frame[1], False, error_to_wire(exc, host_name=self.host_name))

    def _serve(self, frame: list[Any]) -> None:
        cb_id, op, payload = frame[1], frame[3], frame[4]
        try:
            value = self.owner._callback(op, payload)
            self._reply(cb_id, True, value)
        except BaseException as exc:
            self._reply(
                cb_id, False, error_to_wire(exc, host_name=self.host_name, with_traceback=False)
            )

    def _reply(self, cb_id: int, ok: bool, value: Any) -> None:
        try:
            self._send([wire.REPLY, cb_id, ok, value])
        except (OSError, ValueError):
            pass  # the child is gone; its death is reported by the reader
        except Exception as exc:  # the value cannot be encoded
            self._reply(cb_id, False, error_to_wire(exc, host_name=self.host_name))

    # -- stopping ----------------------------------------------------------------------

    def detach(self) -> None:
        """The paglet left: tell the child, and stop it once no call runs in it."""
        with self._lock:
            if self._stopping or self.dead:
                self._stopping = True
                return
            self._stopping = True
            busy = self._inflight > 0
            self._stop_pending = busy
        try:
            self._send([wire.DEPARTED])
        except (OSError, ValueError):
            return
        if not busy:
            self._stop_now()
        elif self._host_stopped():
            # The host is stopping with a call still running (a handler past the shutdown
            # grace, saved from its checkpoint): the child goes once the grace is over.
            threading.Thread(target=self._reap, name="paglet-reap", daemon=True).start()

    def _stop_now(self) -> None:
        if self.dead:
            return
        try:
            self._send([wire.STOP, STOP_GRACE])
        except (OSError, ValueError):
            return
        threading.Thread(target=self._reap, name="paglet-reap", daemon=True).start()

    def _reap(self) -> None:
        self.proc.join(STOP_GRACE + 3.0)
        if self.proc.exitcode is None:
            log.warning("the child of paglet %s did not stop; killing it", self.agent_id)
            self.kill()

    def kill(self) -> None:
        try:
            self.proc.kill()
        except (OSError, ValueError, AttributeError):
            pass


@atexit.register
def _kill_remaining() -> None:
    """Children still linked when this process exits are killed, so multiprocessing's own
    exit handler (which joins non-daemonic children) never waits for them."""
    with _links_lock:
        links = list(_links)
    for link in links:
        link._stopping = True
        link.kill()
    for link in links:
        link.proc.join(2.0)
