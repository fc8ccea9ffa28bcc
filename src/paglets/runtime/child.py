"""The child process of an `ISOLATION = "process"` paglet.

Started from the forkserver (which pre-imports this module, hence the runtime, but never
the CLI or the examples). `main` imports the paglet class by `module:qualname`, builds the
real instance from the state bytes, and serves the host over the pipe
(`paglets.runtime.isolation_wire` describes the frames):

* the main thread reads frames; each call (handler, hook, deactivation policy) runs on a
  pool thread, so a nested call (a self-send made by a handler, A→B→A) runs while the
  outer one waits for its callback's answer;
* `run()` runs on its own thread; a side thread sends a heartbeat every interval;
* after each call the state is encoded and sent when it changed, so the host's copy (what
  checkpoints and `get_state` see) follows the child's.

The child exits when told to stop, when the host goes away (end of the pipe), or when
paglet code calls `sys.exit` (from any thread: the exit code is the host's to report).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from paglets.core.agent import NOT_HANDLED, Paglet
from paglets.core.errors import PagletTimeoutError, error_from_wire, error_to_wire
from paglets.core.messages import Message
from paglets.persistence.policy import DeactivationRequest
from paglets.runtime import isolation_wire as wire
from paglets.runtime.child_context import ChildContext
from paglets.runtime.workers import WorkerPool
from paglets.serialization import codec
from paglets.serialization.names import import_class

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["Child", "main"]

CALLBACK_TIMEOUT = 3600.0  # a context call the host never answers (the host also times out)


def main(conn: Connection, init: dict[str, Any]) -> None:
    """Entry point in the child (the forkserver's `Process` target)."""
    env = init.get("env")
    if env is not None:  # the host's environment now, not the forkserver's at its start
        os.environ.clear()
        os.environ.update(env)
    code = Child(conn, init).serve()
    _exit(code)


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _exit_for(exc: SystemExit) -> None:
    """`sys.exit()` in paglet code ends the child process with that code, on any thread."""
    code = exc.code
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    _exit(status)


class Child:
    def __init__(self, conn: Connection, init: dict[str, Any]) -> None:
        self.conn = conn
        self.init = init
        self.agent_id: str = init["agent_id"]
        self.host_name: str = init["host_name"]
        self.paglet: Any = None
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._last_state: bytes = init["state"]
        self._pending: dict[int, Future[tuple[bool, Any]]] = {}
        self._cb_ids = itertools.count(1)
        self._tl = threading.local()
        self._pool = WorkerPool(name="paglet-call", idle_timeout=60.0)
        self._stopping = threading.Event()
        self._run_thread: threading.Thread | None = None
        self._init_type: Any = None
        self._default_timeout = float(init.get("default_timeout", 10.0))

    # -- start -------------------------------------------------------------------------

    def serve(self) -> int:
        try:
            self.paglet = self._build()
            state = self._state_if_changed()
        except BaseException as exc:
            self._send([wire.READY, False, error_to_wire(exc, host_name=self.host_name), None])
            return 0
        self._send([wire.READY, True, None, state])
        threading.Thread(target=self._beat, name="paglet-heartbeat", daemon=True).start()
        return self._loop()

    def _build(self) -> Any:
        init = self.init
        cls = import_class(
            init["class_name"],
            expect=Paglet,
            allow_modules=init.get("allow_modules"),
            host_name=self.host_name,
            code_version=init.get("code_version"),
        )
        self._init_type = cls.Init
        state = codec.decode_state(cls.state_class(), init["state"])
        paglet = cls(state, agent_id=self.agent_id)
        paglet._context = ChildContext(self, self.agent_id, self.host_name, init["host_address"])
        return paglet

    # -- frames ------------------------------------------------------------------------

    def _send(self, frame: list[Any]) -> None:
        data = wire.encode_frame(frame)
        with self._write_lock:
            self.conn.send_bytes(data)

    def _send_with_state(self, make: Any) -> None:
        """Encode the state and send the frame `make(state)` as one step, so that frames
        carrying states reach the host in the order the states were taken."""
        with self._state_lock:
            self._send(make(self._state_if_changed()))

    def _state_if_changed(self) -> bytes | None:
        paglet = self.paglet
        with paglet.locked():
            data = codec.encode_state(paglet.state)
        if data == self._last_state:
            return None
        self._last_state = data
        return data

    def _loop(self) -> int:
        recv = self.conn.recv_bytes
        while True:
            try:
                frame = wire.decode_frame(recv())
            except (EOFError, OSError):
                return 0  # the host went away: nothing is left to serve
            kind = frame[0]
            if kind == wire.CALL:
                self._pool.submit(self._run_call, frame[1], frame[2], frame[3])
            elif kind == wire.REPLY:
                future = self._pending.pop(frame[1], None)
                if future is not None:
                    future.set_result((frame[2], frame[3]))
            elif kind == wire.RUN:
                self._start_run()
            elif kind == wire.DEPARTED:
                self._depart()
            elif kind == wire.STOP:
                self._depart()
                self._stop(float(frame[1]))
                return 0

    def _beat(self) -> None:
        interval = float(self.init.get("heartbeat", 1.0))
        while not self._stopping.wait(interval):
            try:
                self._send([wire.BEAT])
            except (OSError, ValueError):
                return

    # -- calls -------------------------------------------------------------------------

    def _run_call(self, call_id: int, op: str, payload: Any) -> None:
        self._tl.call = call_id
        status, value = wire.OK, None
        try:
            value = self._invoke(op, payload)
            if value is NOT_HANDLED:
                status, value = wire.NOT_HANDLED_STATUS, None
        except SystemExit as exc:
            _exit_for(exc)
        except BaseException as exc:
            status, value = wire.FAILED, error_to_wire(exc, host_name=self.host_name)
        finally:
            self._tl.call = 0
        try:
            self._send_with_state(lambda state: [wire.DONE, call_id, status, value, state])
        except Exception as exc:  # the state (or the reply) cannot be encoded
            error = error_to_wire(exc, host_name=self.host_name)
            self._send([wire.DONE, call_id, wire.FAILED, error, None])

    def _invoke(self, op: str, payload: Any) -> Any:
        paglet = self.paglet
        if op == "handle":
            try:
                result = paglet.handle_message(Message.from_wire(payload))
                if asyncio.iscoroutine(result):
                    result = asyncio.run(result)
            finally:
                paglet._context._message_handled()
            return result if result is NOT_HANDLED else codec.to_wire_form(result)
        if op == "hook":
            name, event_wire = payload
            event = wire.event_from_wire(event_wire, self._init_type)
            getattr(paglet, name)(event)
            if name in wire.DEPARTURE_HOOKS and paglet._resources is not None:
                paglet._resources.cleanup(reason=event.reason)
            return None
        if op == "policy":
            return paglet.deactivation_policy(DeactivationRequest.from_wire(payload)).to_wire()
        raise ValueError(f"unknown call {op!r} from the host")

    # -- callbacks to the host -----------------------------------------------------------

    def callback(self, op: str, payload: Any, *, state: bytes | None = None) -> Any:
        """Run a context call in the host and return its (wire) result."""
        cb_id = next(self._cb_ids)
        future: Future[tuple[bool, Any]] = Future()
        self._pending[cb_id] = future
        in_call = getattr(self._tl, "call", 0) or 0
        self._send([wire.CALLBACK, cb_id, in_call, op, payload])
        try:
            ok, value = future.result(CALLBACK_TIMEOUT)
        except TimeoutError:
            self._pending.pop(cb_id, None)
            raise PagletTimeoutError(
                f"the host did not answer {op} of paglet {self.agent_id!r} within "
                f"{CALLBACK_TIMEOUT:g}s"
            ) from None
        if not ok:
            raise error_from_wire(value)
        return value

    def state_changed(self) -> None:
        """A dirty mark: send the state (when it changed) so the host checkpoints it."""
        self._send_with_state(lambda state: [wire.STATE, state])

    def checkpoint(self) -> None:
        """`Paglet.checkpoint()`: the host stores this state before answering."""
        paglet = self.paglet
        with paglet.locked():
            data = codec.encode_state(paglet.state)
        with self._state_lock:
            self._last_state = data
        self.callback("checkpoint", data)

    def timeout(self, timeout: float | None) -> float:
        return self._default_timeout if timeout is None else timeout

    # -- run() and stopping ------------------------------------------------------------

    def _start_run(self) -> None:
        def runner() -> None:
            error = None
            try:
                self.paglet.run()
            except SystemExit as exc:
                _exit_for(exc)
            except BaseException as exc:
                error = error_to_wire(exc, host_name=self.host_name)
            try:
                self._send_with_state(lambda state: [wire.RUN_DONE, error, state])
            except Exception:
                self._send([wire.RUN_DONE, error, None])

        thread = threading.Thread(target=runner, name=f"paglet-run-{self.agent_id[:12]}")
        thread.daemon = True
        self._run_thread = thread
        thread.start()

    def _depart(self) -> None:
        paglet = self.paglet
        paglet.departed = True
        if paglet._context is not None:
            paglet._context._detached = True

    def _stop(self, grace: float) -> None:
        """Give `run()` up to `grace` seconds to notice `departed` and return."""
        self._stopping.set()
        thread = self._run_thread
        if thread is not None and thread.is_alive():
            thread.join(grace)
