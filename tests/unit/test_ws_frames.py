"""`paglets.remote.ws_frames`: the RFC 6455 framing the peer socket reads and writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets.remote.ws_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameReader,
    accept_key,
    close_payload,
    encode_frame,
)


def test_accept_key_is_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@given(
    payloads=st.lists(st.binary(max_size=70_000), min_size=1, max_size=4),
    masked=st.booleans(),
    cut=st.integers(min_value=1, max_value=9000),
)
def test_frames_round_trip_whatever_the_chunking(
    payloads: list[bytes], masked: bool, cut: int
) -> None:
    mask = b"\x01\x02\x03\x04" if masked else None
    wire = b"".join(encode_frame(p, mask=mask) for p in payloads)
    reader = FrameReader(max_size=1 << 20)
    got: list[bytes] = []
    for start in range(0, len(wire), cut):
        reader.feed(wire[start : start + cut])
        while (item := reader.next()) is not None:
            assert item[0] == OP_BINARY
            got.append(item[1])
    assert got == payloads
    assert reader.buffered == 0


def test_fragments_are_reassembled_around_a_control_frame() -> None:
    first = bytes([0x02, 3]) + b"abc"  # binary, not final
    ping = encode_frame(b"hi", opcode=OP_PING)
    last = bytes([0x80, 2]) + b"de"  # continuation, final
    reader = FrameReader(max_size=100)
    reader.feed(first + ping + last)
    assert reader.next() == (OP_PING, b"hi")
    assert reader.next() == (OP_BINARY, b"abcde")
    assert reader.next() is None


def test_text_and_close_frames_are_returned_as_such() -> None:
    reader = FrameReader(max_size=100)
    reader.feed(encode_frame(b"x", opcode=OP_TEXT) + encode_frame(close_payload(1000), opcode=8))
    assert reader.next() == (OP_TEXT, b"x")
    assert reader.next() == (OP_CLOSE, b"\x03\xe8")


@pytest.mark.parametrize(
    ("data", "code", "text"),
    [
        (bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"), 1009, "larger than"),
        (bytes([0xC2, 0]), 1002, "reserved bits"),
        (bytes([0x83, 0]), 1002, "unknown opcode"),
        (bytes([0x80, 0]), 1002, "no message to continue"),
        (bytes([0x02, 1]) + b"a" + bytes([0x82, 1]) + b"b", 1002, "before the previous"),
        (bytes([0x09, 0]), 1002, "control frame"),
    ],
)
def test_protocol_errors_name_their_close_code(data: bytes, code: int, text: str) -> None:
    reader = FrameReader(max_size=1000)
    reader.feed(data)
    with pytest.raises(FrameError, match=text) as caught:
        while reader.next() is not None:
            pass
    assert caught.value.code == code


def test_a_fragmented_message_is_bounded_as_a_whole() -> None:
    reader = FrameReader(max_size=4)
    reader.feed(bytes([0x02, 3]) + b"abc" + bytes([0x80, 3]) + b"def")
    with pytest.raises(FrameError) as caught:
        reader.next()
    assert caught.value.code == 1009
