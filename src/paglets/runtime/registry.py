"""Bookkeeping of the live paglets of a host."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from paglets.runtime.mailbox import Cell

__all__ = ["AgentInfo", "Registry"]


class AgentInfo:
    """What the host knows about a live paglet beyond its instance."""

    __slots__ = (
        "checkpoint_mode",
        "checkpointed_at",
        "class_name",
        "cls",
        "created_at",
        "epoch",
        "home_url",
        "meta",
        "run_error",
        "run_thread",
        "state_class_name",
    )

    def __init__(
        self,
        cls: type,
        class_name: str,
        state_class_name: str,
        *,
        epoch: int = 0,
        home_url: str = "",
        created_at: float = 0.0,
        meta: dict[str, Any] | None = None,
        checkpoint_mode: str = "interval",
    ) -> None:
        self.cls = cls
        self.class_name = class_name
        self.state_class_name = state_class_name
        self.epoch = epoch
        self.home_url = home_url
        self.created_at = created_at
        self.checkpointed_at = 0.0
        self.run_error: str | None = None
        self.run_thread: threading.Thread | None = None
        self.meta = meta if meta is not None else {}
        self.checkpoint_mode = checkpoint_mode


class Registry:
    """Live cells by id, and activations in progress (so concurrent triggers give one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[str, Cell] = {}
        self.activating: dict[str, Future[Any]] = {}
        self.reserved: set[str] = set()  # ids being created (not yet live)

    def get(self, agent_id: str) -> Cell | None:
        return self.live.get(agent_id)

    def __len__(self) -> int:
        return len(self.live)
