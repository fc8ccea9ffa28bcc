"""Starting the child processes of `ISOLATION = "process"` paglets.

Children come from multiprocessing's forkserver, started lazily (when the first process
paglet starts) with `paglets.runtime.child` pre-imported, so a child costs a fork plus the
import of the paglet's own module, not a fresh interpreter.

One change from multiprocessing's own forkserver launch: the preparation data sent to the
child leaves out the parent's `__main__`. multiprocessing would re-run the main script in
every child (`paglets host` started as a console script imports the whole CLI, rich
included; under pytest it imports pytest), costing seconds per child and importing what
the runtime must never import. It also leaves out the start method, so starting a child
never fixes the host process's default multiprocessing context.

Children are not daemonic: paglet code may itself use `multiprocessing`.
"""

from __future__ import annotations

import io
import multiprocessing.context as _context
import os
import sys
import threading
from multiprocessing import forkserver, get_context, popen_forkserver
from multiprocessing import process as _process
from multiprocessing import util as _util
from multiprocessing.context import ForkServerProcess
from typing import Any

__all__ = ["ChildProcess", "start_child"]

PRELOAD = ["paglets.runtime.child"]

# multiprocessing internals this module mirrors (typed loosely: the stubs omit them).
process: Any = _process
util: Any = _util
_context_any: Any = _context
reduction: Any = _context_any.reduction
set_spawning_popen: Any = _context_any.set_spawning_popen

_setup_lock = threading.Lock()
_ready = False


def _preparation_data(name: str) -> dict[str, Any]:
    """`multiprocessing.spawn.get_preparation_data` without `__main__` or start method."""
    data: dict[str, Any] = {
        "log_to_stderr": util._log_to_stderr,
        "authkey": process.current_process().authkey,
        "name": name,
        "sys_argv": list(sys.argv),
        "orig_dir": process.ORIGINAL_DIR,
        "dir": os.getcwd(),
    }
    if util._logger is not None:
        data["log_level"] = util._logger.getEffectiveLevel()
    sys_path = list(sys.path)
    if "" in sys_path and process.ORIGINAL_DIR is not None:
        sys_path[sys_path.index("")] = process.ORIGINAL_DIR
    data["sys_path"] = sys_path
    return data


class _Popen(popen_forkserver.Popen):
    """multiprocessing's forkserver launch (CPython 3.11), with `_preparation_data`."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = _preparation_data(process_obj._name)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        # As multiprocessing does: a duplicate of the data pipe's write end stays open as
        # the child's parent sentinel.
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class ChildProcess(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _Popen(process_obj)


def _setup() -> None:
    global _ready
    with _setup_lock:
        if not _ready:
            # Takes effect when the forkserver starts, i.e. at the first child (no-op if
            # another part of this process already started it: the child then imports
            # the runtime itself).
            get_context("forkserver").set_forkserver_preload(PRELOAD)
            _ready = True


def start_child(target: Any, args: tuple[Any, ...], name: str) -> ChildProcess:
    """Start `target(*args)` in a new non-daemonic child of the forkserver."""
    _setup()
    child = ChildProcess(target=target, args=args, name=name, daemon=False)
    child.start()
    return child


def pipe() -> tuple[Any, Any]:
    """A duplex pipe whose child end can be passed to `start_child`."""
    return get_context("forkserver").Pipe(duplex=True)
