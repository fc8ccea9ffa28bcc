"""Deactivation policies and requests, inactive-record values, and managed storage.

The host's SQLite store (`paglets.persistence.store`) is runtime-internal and is not
imported here, so importing these value types stays cheap.
"""

from paglets.core.errors import StorageQuotaError
from paglets.persistence.policy import (
    DeactivationPolicy,
    DeactivationRequest,
    InactiveRecord,
    QueuedMessage,
)
from paglets.persistence.storage import ManagedStorage, StorageStatus

__all__ = [
    "DeactivationPolicy",
    "DeactivationRequest",
    "InactiveRecord",
    "ManagedStorage",
    "QueuedMessage",
    "StorageQuotaError",
    "StorageStatus",
]
