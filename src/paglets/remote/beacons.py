"""LAN beacons: what a host multicasts so others on its network find it (network.md §3.7).

A beacon is a MessagePack map `{v, host_id, name, url, incarnation, code_version, protocol,
nonce, mac}`. `mac` is HMAC-SHA256, under a key derived from the mesh key by HKDF-SHA256
(no salt, info `paglets beacon v1`), of the MessagePack map of the eight other fields in that
order (msgspec's encoding: shortest forms). A derived key, not the mesh key itself, so the
bearer key never keys anything an eavesdropper sees.

A host with a key drops beacons that are unsigned or badly signed; a host without one
(`--insecure`) reads any well-formed beacon and cannot check its mac. A beacon only makes a
host sync with the URL it names, so a replayed beacon can only repeat a true URL; the random
`nonce` keeps two beacons of one host from being byte-identical.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Annotated

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "BEACON_VERSION",
    "MAX_BEACON_BYTES",
    "Beacon",
    "BeaconError",
    "beacon_key",
    "encode_beacon",
    "make_beacon",
    "read_beacon",
]

BEACON_VERSION = 1
PROTOCOL = 1  # the wire protocol of network.md (not the beacon format)
MAX_BEACON_BYTES = 1200  # one unfragmented datagram on any LAN
NONCE_BYTES = 16
_INFO = b"paglets beacon v1"

_HostId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
_Url = Annotated[str, msgspec.Meta(pattern="^https?://", max_length=512)]
_Text = Annotated[str, msgspec.Meta(max_length=256)]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]


class BeaconError(ValueError):
    """A datagram that is not a beacon this host accepts; the message says why."""


class Beacon(msgspec.Struct, frozen=True):
    """The signed part of a beacon, in wire order."""

    v: int
    host_id: _HostId
    name: _Name
    url: _Url
    incarnation: _Count
    code_version: _Text
    protocol: int
    nonce: _Nonce


class _Wire(Beacon, frozen=True):
    """A beacon on the wire: the signed fields, then `mac` (empty when unsigned)."""

    mac: bytes = b""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Wire).decode
_FIELDS = Beacon.__struct_fields__


def beacon_key(mesh_key: str | bytes | None) -> bytes | None:
    """The beacon signing key derived from the mesh key; None without a mesh key."""
    if not mesh_key:
        return None
    material = mesh_key.encode() if isinstance(mesh_key, str) else mesh_key
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return hkdf.derive(material)


def make_beacon(host_id: str, name: str, url: str, incarnation: int, code_version: str) -> Beacon:
    """A beacon of this host now, with a fresh nonce."""
    return Beacon(
        BEACON_VERSION, host_id, name, url, incarnation, code_version, PROTOCOL,
        os.urandom(NONCE_BYTES),
    )  # fmt: skip


def _mac(key: bytes, beacon: Beacon) -> bytes:
    return hmac.new(key, _encode(beacon), hashlib.sha256).digest()


def encode_beacon(beacon: Beacon, key: bytes | None) -> bytes:
    """The datagram for `beacon`, signed with `key` (unsigned when None)."""
    mac = _mac(key, beacon) if key is not None else b""
    fields = [getattr(beacon, f) for f in _FIELDS]
    return _encode(_Wire(*fields, mac=mac))


def read_beacon(data: bytes, key: bytes | None) -> Beacon:
    """The beacon in `data`, or `BeaconError`: malformed, too big, another beacon version,
    or (when `key` is given) unsigned or signed with another key."""
    if len(data) > MAX_BEACON_BYTES:
        raise BeaconError(f"beacon of {len(data)} bytes is over {MAX_BEACON_BYTES}")
    try:
        wire = _decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 is the latter
        raise BeaconError(f"not a paglets beacon: {exc}") from None
    if wire.v != BEACON_VERSION:
        raise BeaconError(f"beacon version {wire.v} is not {BEACON_VERSION}")
    beacon = Beacon(*[getattr(wire, f) for f in _FIELDS])
    if key is None:
        return beacon  # an --insecure host cannot check a mac
    if not wire.mac:
        raise BeaconError(f"unsigned beacon from {beacon.url}; this host has a mesh key")
    if not hmac.compare_digest(wire.mac, _mac(key, beacon)):
        raise BeaconError(f"beacon from {beacon.url} is not signed with this mesh's key")
    return beacon
