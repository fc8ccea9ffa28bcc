"""`paglets host`'s network and discovery flags, as decided values (cli.md §1.1).

* `--bind-public HOST|auto` (repeatable): addresses bound besides `--host`; `auto` is this
  machine's LAN address (`paglets.runtime.addresses`). Resolved only after the key checks of
  `host_run.check_options`, so a machine without a key hears about the key first.
* `--discover/--no-discover` and its paglets 2.0 name `--mesh-multicast/--no-mesh-multicast`:
  None (the host's default: on when a LAN address is bound) unless given; the two names
  must not disagree.
* `--discover-scan` and the positive paglets 2.0 form `--mesh-lan-discovery`; the negative
  `--no-mesh-lan-discovery` changes nothing (the scan is off unless asked for).
"""

from __future__ import annotations

from typing import Any

from paglets.cli.errors import CliError
from paglets.cli.host_options import HostOptions

__all__ = ["beacons_switch", "discovery_line", "resolve_bind_public", "scan_switch"]


def beacons_switch(o: HostOptions) -> bool | None:
    """True/False when `--discover` or `--mesh-multicast` (or their negatives) was given."""
    given = {value for value in (o.discover, o.mesh_multicast) if value is not None}
    if len(given) > 1:
        raise CliError(
            "--discover and --mesh-multicast disagree (one is on, the other off); "
            "--mesh-multicast is the paglets 2.0 name of --discover: give one of them",
        )
    return given.pop() if given else None


def scan_switch(o: HostOptions) -> bool:
    return bool(o.discover_scan or o.mesh_lan_discovery)


def resolve_bind_public(o: HostOptions) -> tuple[str, ...]:
    """The `--bind-public` addresses with `auto` expanded (exit 2 when `auto` finds none)."""
    if not o.bind_public:
        return ()
    from paglets.core.errors import HostError
    from paglets.runtime import addresses

    try:
        return tuple(addresses.resolve_bind_public(o.bind_public))
    except HostError:
        raise CliError(addresses.NO_LAN_ADDRESS, hint=addresses.NO_LAN_HINT) from None


def discovery_line(host: Any) -> str:
    """What the host does to find others, for the start-up output (cli.md §1.2)."""
    discovery = getattr(host, "discovery", None)
    return "off" if discovery is None else discovery.describe()
