"""Services: typed contracts, the host's service registry, resident services (api.md §16).

```python
from paglets.services import ServiceContract, ServiceOperation, ResidentServiceSpec
```

Names are imported from their modules on first use (PEP 562), so `paglets.core.agent`, which
mixes in `paglets.services.helpers`, does not load the rest of the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paglets.core.errors import ServiceContractError, ServiceNotFoundError
    from paglets.core.runtime_values import ResidentLifecycle, ServiceScope
    from paglets.services.contracts import EmptyPayload, ServiceContract, ServiceOperation
    from paglets.services.handles import ServiceHandle, ServiceLease
    from paglets.services.records import ServiceRecord
    from paglets.services.resident import ResidentServiceSpec

_HOMES = {
    "EmptyPayload": "paglets.services.contracts",
    "ResidentLifecycle": "paglets.core.runtime_values",
    "ResidentServiceSpec": "paglets.services.resident",
    "ServiceContract": "paglets.services.contracts",
    "ServiceContractError": "paglets.core.errors",
    "ServiceHandle": "paglets.services.handles",
    "ServiceLease": "paglets.services.handles",
    "ServiceNotFoundError": "paglets.core.errors",
    "ServiceOperation": "paglets.services.contracts",
    "ServiceRecord": "paglets.services.records",
    "ServiceScope": "paglets.core.runtime_values",
}

__all__ = [
    "EmptyPayload",
    "ResidentLifecycle",
    "ResidentServiceSpec",
    "ServiceContract",
    "ServiceContractError",
    "ServiceHandle",
    "ServiceLease",
    "ServiceNotFoundError",
    "ServiceOperation",
    "ServiceRecord",
    "ServiceScope",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
