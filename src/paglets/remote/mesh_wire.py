"""The membership protocol's frames (network.md §3.4): msgspec structs, compact MessagePack.

One tagged union (`kind`) so a frame can ride any byte pipe (the peer WebSocket, the
simulator); the HTTP routes decode the one struct they serve, where the tag may be absent.
Defaults are omitted on the wire, so an idle ping is little more than its sender's identity:
that keeps steady traffic under 1 KiB/s per host (targets.md h1).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ALIVE",
    "DEAD",
    "LEFT",
    "PROTOCOL",
    "SUSPECT",
    "Ack",
    "DigestEntry",
    "Frame",
    "Gossip",
    "Identity",
    "IndirectAck",
    "MemberRecord",
    "Ping",
    "PingReq",
    "Pull",
    "Pulled",
    "Summary",
    "Sync",
    "SyncReply",
    "Target",
    "Update",
    "decode_frame",
    "encode_frame",
    "encoded_size",
]

PROTOCOL = 1  # the wire protocol version (network.md, head)

ALIVE, SUSPECT, DEAD, LEFT = "alive", "suspect", "dead", "left"


class Identity(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who sent a frame (`from`). `spec_version` and `summary_version` (the newest of the
    sender's pushed summaries) let a peer see its copies are old and pull (jobs.md 1.4)."""

    host_id: str
    name: str
    url: str
    incarnation: int
    code_version: str = ""
    spec_version: int = 0
    summary_version: int = 0


class MemberRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a host announces about itself (network.md §3.2, the gossiped part).

    Changing any field raises the incarnation, so the newest record always wins. Counts and
    load change too often for that: they ride as summaries (`Summary`, kind `load`).
    """

    host_id: str
    name: str
    url: str
    incarnation: int
    protocol: int = PROTOCOL
    code_version: str = ""
    paglets_version: str = ""
    tags: tuple[str, ...] = ()
    properties: dict[str, str] = {}
    capabilities: tuple[str, ...] = ()
    relay_via: str | None = None
    auto_update_from_git: bool = False
    git_head: str | None = None
    draining: bool = False
    spec_version: int = 0

    def identity(self, summary_version: int = 0) -> Identity:
        return Identity(
            self.host_id,
            self.name,
            self.url,
            self.incarnation,
            self.code_version,
            self.spec_version,
            summary_version,
        )


class Update(msgspec.Struct, frozen=True, omit_defaults=True):
    """One membership change. `alive` carries the record; `suspect` names who suspects
    (`by`), so independent suspicions can be counted (Lifeguard)."""

    type: str
    host_id: str
    incarnation: int
    record: MemberRecord | None = None
    by: str | None = None


class Summary(msgspec.Struct, frozen=True, array_like=True):
    """A host's versioned side data riding with membership: `load`, `spec` or `services`
    (jobs.md 1.4, network.md §3.4). The body is the owning layer's; membership only carries it.
    Four values without field names: loads are many and must stay near 100 bytes each."""

    host_id: str
    kind: str
    version: int
    body: dict[str, Any]


class DigestEntry(msgspec.Struct, frozen=True, array_like=True):
    """One member in an anti-entropy digest: three values, no field names."""

    host_id: str
    incarnation: int
    status: str


class Target(msgspec.Struct, frozen=True):
    host_id: str
    url: str


class Ping(msgspec.Struct, frozen=True, omit_defaults=True, tag="ping", tag_field="kind"):
    seq: int
    from_: Identity = msgspec.field(name="from")
    to_host_id: str = ""
    protocol: int = PROTOCOL
    updates: list[Update] = []
    summaries: list[Summary] = []


class Ack(msgspec.Struct, frozen=True, omit_defaults=True, tag="ack", tag_field="kind"):
    """Answer to a ping. `refused="wrong-host"` when the ping was for another host id (409)."""

    seq: int
    from_: Identity = msgspec.field(name="from")
    updates: list[Update] = []
    summaries: list[Summary] = []
    refused: str | None = None


class PingReq(msgspec.Struct, frozen=True, omit_defaults=True, tag="ping-req", tag_field="kind"):
    seq: int
    from_: Identity = msgspec.field(name="from")
    target: Target = Target("", "")
    timeout_ms: int = 500


class IndirectAck(
    msgspec.Struct, frozen=True, omit_defaults=True, tag="ping-req-ack", tag_field="kind"
):
    """The helper's answer to a ping-req: `nack` early when the target is silent (Lifeguard),
    `ack` with the round-trip time when it answered."""

    seq: int
    from_: Identity = msgspec.field(name="from")
    ack: bool = False
    nack: bool = False
    rtt_ms: float | None = None


class Gossip(msgspec.Struct, frozen=True, omit_defaults=True, tag="gossip", tag_field="kind"):
    """Pushed updates (suspect, dead, left, refutations), every gossip_interval."""

    from_: Identity = msgspec.field(name="from")
    updates: list[Update] = []


class Sync(msgspec.Struct, frozen=True, omit_defaults=True, tag="sync", tag_field="kind"):
    """Join (`join=True`: full records back) or anti-entropy (`table_hash` first; a digest
    only when the hashes differ, records only for what differs)."""

    seq: int
    from_: MemberRecord = msgspec.field(name="from")
    join: bool = False
    members: list[Update] = []
    summaries: list[Summary] = []
    table_hash: int = 0


class SyncReply(
    msgspec.Struct, frozen=True, omit_defaults=True, tag="sync-reply", tag_field="kind"
):
    """`error="name-taken"` refuses a join and names the holder (409)."""

    seq: int
    from_: Identity = msgspec.field(name="from")
    members: list[Update] = []
    summaries: list[Summary] = []
    digest: list[DigestEntry] = []
    in_sync: bool = False
    error: str | None = None
    holder_url: str | None = None


class Pull(msgspec.Struct, frozen=True, omit_defaults=True, tag="pull", tag_field="kind"):
    """Ask for full records (`host_ids`) and/or the answering host's summaries (`kinds`)."""

    seq: int
    from_: Identity = msgspec.field(name="from")
    host_ids: list[str] = []
    kinds: list[str] = []


class Pulled(msgspec.Struct, frozen=True, omit_defaults=True, tag="pulled", tag_field="kind"):
    seq: int
    from_: Identity = msgspec.field(name="from")
    members: list[Update] = []
    summaries: list[Summary] = []


Frame = Ping | Ack | PingReq | IndirectAck | Gossip | Sync | SyncReply | Pull | Pulled

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


def encode_frame(frame: Frame) -> bytes:
    return _encoder.encode(frame)


def decode_frame(data: bytes) -> Frame:
    """Decode one frame; a malformed one raises `msgspec.ValidationError`/`DecodeError`."""
    return _decoder.decode(data)


def encoded_size(value: Any) -> int:
    """Bytes `value` takes in a frame, to keep piggybacks within their budget."""
    return len(_encoder.encode(value))
