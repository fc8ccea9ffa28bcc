"""LAN beacons (network.md §3.7): encoding, signing, and what a host refuses."""

from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets.remote.beacons import (
    MAX_BEACON_BYTES,
    Beacon,
    BeaconError,
    beacon_key,
    encode_beacon,
    make_beacon,
    read_beacon,
)

KEY = beacon_key("the-mesh-key")
OTHER = beacon_key("another-mesh-key")
HOST_ID = "0123456789abcdef0123456789abcdef"


def beacon(**changes: object) -> Beacon:
    made = make_beacon(HOST_ID, "linux-a", "http://10.0.0.5:8765", 3, "ds-dia-dev")
    return msgspec.structs.replace(made, **changes)


def test_the_wire_is_a_msgpack_map_of_the_spec_fields_with_the_mac_last() -> None:
    wire = msgspec.msgpack.decode(encode_beacon(beacon(), KEY))
    assert list(wire) == [
        "v", "host_id", "name", "url", "incarnation", "code_version", "protocol", "nonce", "mac",
    ]  # fmt: skip
    assert wire["v"] == 1 and wire["protocol"] == 1
    assert len(wire["nonce"]) == 16


def test_the_mac_is_hmac_sha256_of_the_other_fields_under_the_hkdf_key() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(hashes.SHA256(), 32, None, b"paglets beacon v1").derive(b"the-mesh-key")
    assert derived == KEY
    assert derived != b"the-mesh-key"
    sent = beacon()
    wire = msgspec.msgpack.decode(encode_beacon(sent, KEY))
    rest = {k: v for k, v in wire.items() if k != "mac"}
    expected = hmac.new(derived, msgspec.msgpack.encode(rest), hashlib.sha256).digest()
    assert wire["mac"] == expected


def test_nonces_differ_between_beacons() -> None:
    assert beacon().nonce != beacon().nonce


@given(
    host_id=st.text("0123456789abcdef", min_size=32, max_size=32),
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True),
    port=st.integers(0, 65535),
    path=st.text(max_size=40),
    incarnation=st.integers(0, 2**63 - 1),
    code_version=st.text(max_size=60),
    signed=st.booleans(),
)
def test_round_trip(
    host_id: str, name: str, port: int, path: str, incarnation: int, code_version: str, signed: bool
) -> None:
    sent = make_beacon(host_id, name, f"https://h:{port}/{path}", incarnation, code_version)
    key = KEY if signed else None
    data = encode_beacon(sent, key)
    assert len(data) <= MAX_BEACON_BYTES
    assert read_beacon(data, key) == sent
    assert read_beacon(data, None) == sent  # a keyless host reads signed ones too


@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_changed_byte_is_refused(position: int, flip: int) -> None:
    data = bytearray(encode_beacon(beacon(), KEY))
    data[position % len(data)] ^= flip
    with pytest.raises(BeaconError):
        read_beacon(bytes(data), KEY)


@pytest.mark.parametrize(
    "field", ["host_id", "name", "url", "incarnation", "code_version", "nonce"]
)
def test_a_changed_field_with_the_old_mac_is_refused(field: str) -> None:
    good = msgspec.msgpack.decode(encode_beacon(beacon(), KEY))
    forged = dict(good)
    forged[field] = {
        "host_id": "f" * 32,
        "name": "mallory",
        "url": "http://10.0.0.66:8765",
        "incarnation": 99,
        "code_version": "evil",
        "nonce": b"\0" * 16,
    }[field]
    with pytest.raises(BeaconError, match="not signed with this mesh's key"):
        read_beacon(msgspec.msgpack.encode(forged), KEY)


def test_a_keyed_host_refuses_unsigned_and_other_keys_beacons() -> None:
    with pytest.raises(BeaconError, match="unsigned"):
        read_beacon(encode_beacon(beacon(), None), KEY)
    with pytest.raises(BeaconError, match="not signed with this mesh's key"):
        read_beacon(encode_beacon(beacon(), OTHER), KEY)


def test_a_keyless_host_reads_unsigned_beacons() -> None:
    assert read_beacon(encode_beacon(beacon(), None), None).name == "linux-a"
    assert beacon_key(None) is None and beacon_key("") is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"not msgpack at all",
        msgspec.msgpack.encode({"v": 1}),
        msgspec.msgpack.encode([1, 2, 3]),
        b"\x00" * (MAX_BEACON_BYTES + 1),
    ],
)
def test_garbage_is_refused_without_crashing(data: bytes) -> None:
    with pytest.raises(BeaconError):
        read_beacon(data, KEY)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 2),
        ("host_id", "not-hex"),
        ("url", "file:///etc/passwd"),
        ("name", ""),
        ("incarnation", -1),
        ("nonce", b"short"),
    ],
)
def test_malformed_fields_are_refused_even_when_signed(field: str, value: object) -> None:
    wire = msgspec.msgpack.decode(encode_beacon(beacon(), None))
    wire[field] = value
    rest = {k: v for k, v in wire.items() if k != "mac"}
    wire["mac"] = hmac.new(KEY, msgspec.msgpack.encode(rest), hashlib.sha256).digest()  # type: ignore[arg-type]
    with pytest.raises(BeaconError):
        read_beacon(msgspec.msgpack.encode(wire), KEY)
