"""`GET /metrics`: the host's figures in the Prometheus text format (network.md §1.9).

Every host has its own `CollectorRegistry`, never prometheus-client's global one: several
hosts live in one process in tests and embeddings, and each must report only itself.

Nothing is counted twice and nothing costs on the hot path: the collector reads the host
at scrape time (paglet counts from the store's trigger-kept counters, mailbox depths from
the live cells, the member table from the mesh node) plus the plain integers of
`counters.HostCounters` that deliveries and moves bump. Other parts of the runtime (the
compute-slots scheduler, for its queue and leases) add their own collector with
`registry_for(host).register(collector)`.

The scrape runs on the host's worker pool, not its event loop: walking 100,000 live cells
takes milliseconds the loop should not lose.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from paglets.runtime.counters import MOVE_KINDS

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["HostCollector", "registry_for"]

MEMBER_STATES = ("alive", "suspect", "dead", "left", "incompatible")
PAGLET_STATES = ("active", "inactive", "crashed")
_COUNT_HELD = "SELECT count(*) FROM queued"


def registry_for(host: Host) -> CollectorRegistry:
    """The host's registry (made, with the host's collector in it, on first use)."""
    registry = host.metrics_registry
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HostCollector(host))
        host.metrics_registry = registry
    return registry


class HostCollector:
    """Reads one host at scrape time. `collect()` runs on a worker thread."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def describe(self) -> list[Metric]:
        # Nothing to check at registration; collect() needs a running host.
        return []

    def collect(self) -> Iterator[Metric]:
        host = self.host
        yield from self._paglets(host)
        yield from self._mailboxes(host)
        yield from self._counters(host)
        yield from self._members(host)
        yield from self._host(host)

    # -- scrape-time readings ----------------------------------------------------------

    @staticmethod
    def _paglets(host: Host) -> Iterator[Metric]:
        store = host.store
        family = GaugeMetricFamily(
            "paglets_paglets", "Paglets on this host by state.", labels=["state"]
        )
        family.add_metric(["active"], len(host.registry.live))
        family.add_metric(["inactive"], store.count_agents("inactive"))
        family.add_metric(["crashed"], store.count_agents("crashed"))
        yield family

    @staticmethod
    def _mailboxes(host: Host) -> Iterator[Metric]:
        queued = busy = deepest = nonempty = 0
        for cell in list(host.registry.live.values()):
            depth = cell.queued_count()
            if depth:
                nonempty += 1
                queued += depth
                if depth > deepest:
                    deepest = depth
            if cell.busy:
                busy += 1
        yield GaugeMetricFamily(
            "paglets_mailbox_queued_messages",
            "Messages waiting in the mailboxes of live paglets.",
            value=queued,
        )
        yield GaugeMetricFamily(
            "paglets_mailbox_depth_max",
            "Depth of the deepest mailbox of a live paglet.",
            value=deepest,
        )
        yield GaugeMetricFamily(
            "paglets_mailboxes_nonempty",
            "Live paglets with at least one message waiting.",
            value=nonempty,
        )
        yield GaugeMetricFamily(
            "paglets_mailbox_in_flight",
            "Live paglets running a message handler now.",
            value=busy,
        )
        held = host.store.query(_COUNT_HELD)
        yield GaugeMetricFamily(
            "paglets_messages_held",
            "Messages stored for inactive paglets, delivered when they are activated.",
            value=held[0][0] if held else 0,
        )

    @staticmethod
    def _counters(host: Host) -> Iterator[Metric]:
        c = host.counters
        yield CounterMetricFamily(
            "paglets_messages_delivered",
            "Messages whose handler returned.",
            value=c.messages_delivered,
        )
        yield CounterMetricFamily(
            "paglets_messages_failed",
            "Messages whose handler raised.",
            value=c.messages_failed,
        )
        yield CounterMetricFamily(
            "paglets_messages_queued",
            "Messages stored for an inactive paglet.",
            value=c.messages_queued,
        )
        moves = CounterMetricFamily(
            "paglets_moves",
            "Moves this host sent away and committed, by kind.",
            labels=["kind"],
        )
        for kind in MOVE_KINDS:
            moves.add_metric([kind], getattr(c, f"moves_{kind}"))
        yield moves
        transfers = CounterMetricFamily(
            "paglets_transfers",
            "Decided transfers: role source (sent away) or target (received), by outcome.",
            labels=["role", "outcome"],
        )
        transfers.add_metric(["source", "committed"], c.transfers_out_committed)
        transfers.add_metric(["source", "aborted"], c.transfers_out_aborted)
        transfers.add_metric(["source", "rejected"], c.transfers_out_rejected)
        transfers.add_metric(["target", "committed"], c.transfers_in_committed)
        transfers.add_metric(["target", "aborted"], c.transfers_in_aborted)
        transfers.add_metric(["target", "rejected"], c.transfers_in_rejected)
        yield transfers
        yield CounterMetricFamily(
            "paglets_events",
            "Events written to the event log (ids continue across restarts).",
            value=host.events.last_event_id,
        )

    @staticmethod
    def _members(host: Host) -> Iterator[Metric]:
        counts = dict.fromkeys(MEMBER_STATES, 0)
        rtts: list[tuple[str, float]] = []
        node = host.mesh
        if node is not None:

            def read() -> list[tuple[str, str, float | None]]:
                return [(m.status, m.name, m.rtt_ms) for m in node.members()]

            try:
                members = host._on_loop(read)
            except Exception:  # the loop is stopping: report this host alone
                members = []
            for status, name, rtt_ms in members:
                counts[status] = counts.get(status, 0) + 1
                if rtt_ms is not None:
                    rtts.append((name, rtt_ms / 1000.0))
        counts["alive"] += 1  # this host
        family = GaugeMetricFamily(
            "paglets_members",
            "Mesh members by state as this host sees them (this host included).",
            labels=["state"],
        )
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family
        rtt = GaugeMetricFamily(
            "paglets_member_rtt_seconds",
            "Last probe round trip to each member.",
            labels=["member"],
        )
        for name, seconds in rtts:
            rtt.add_metric([name], seconds)
        yield rtt

    @staticmethod
    def _host(host: Host) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "paglets_host_info",
            "This host: name and code version (the value is always 1).",
            labels=["name", "code_version"],
        )
        info.add_metric([host.name, str(host.mesh_version)], 1)
        yield info
        server: Any = host.http
        if server is not None:
            yield GaugeMetricFamily(
                "paglets_uptime_seconds",
                "Seconds since the host's HTTP server started.",
                value=server.uptime_s,
            )
            yield GaugeMetricFamily(
                "paglets_event_stream_subscribers",
                "Open event streams (SSE).",
                value=server.events.subscribers,
            )
