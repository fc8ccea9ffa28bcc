"""RFC 6455 framing for blocking sockets: the few pieces the peer socket needs.

Both ends of the peer socket (`paglets.remote.peer_socket` in a client, and
`paglets.runtime.peer_socket` in a host that took the connection over from aiohttp) read and
write WebSocket frames on plain blocking sockets from worker threads. A general WebSocket
library would put its own reader thread between the socket and the caller (a thread
hand-off, ~75 µs, on every reply), so this module offers just the framing, and the callers
decide which thread reads.

What is supported: binary and text messages, fragmented messages (reassembled), ping, pong
and close; client frames masked (RFC 6455 §5.3), server frames not; no extensions (no
compression is ever negotiated).
"""

from __future__ import annotations

import base64
import hashlib
import struct

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameError",
    "FrameReader",
    "accept_key",
    "close_payload",
    "encode_frame",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_H2 = struct.Struct("!BB")
_H4 = struct.Struct("!BBH")
_H10 = struct.Struct("!BBQ")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_CONTROL_MAX = 125

try:  # websockets (a dependency) ships a C implementation of the XOR mask
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - pure-Python fallback

    def _apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


class FrameError(Exception):
    """The peer broke the framing (bad opcode, oversized message, bad control frame).
    `code` is the WebSocket close code to answer with."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


def accept_key(key: str) -> str:
    """`Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def encode_frame(payload: bytes, *, mask: bytes | None = None, opcode: int = OP_BINARY) -> bytes:
    """One final frame carrying `payload`; masked with the 4-byte `mask` (clients) or not."""
    n = len(payload)
    first = 0x80 | opcode
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = _H2.pack(first, bit | n)
    elif n < 65536:
        head = _H4.pack(first, bit | 126, n)
    else:
        head = _H10.pack(first, bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + _apply_mask(payload, mask)


def close_payload(code: int, reason: str = "") -> bytes:
    return _U16.pack(code) + reason.encode("utf-8")[: _CONTROL_MAX - 2]


class FrameReader:
    """Frames parsed out of bytes fed to it, reassembling fragmented messages.

    `feed(data)` appends what the socket gave; `next()` returns `(opcode, payload)` for the
    next whole message or control frame, or `None` when more bytes are needed. Messages
    longer than `max_size` raise `FrameError` (close code 1009) as soon as their header
    says so, before their payload is buffered.
    """

    __slots__ = ("_buf", "_parts", "_parts_len", "_parts_op", "max_size")

    def __init__(self, max_size: int) -> None:
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._parts_len = 0
        self._parts_op = 0
        self.max_size = max_size

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next(self) -> tuple[int, bytes] | None:
        while True:
            frame = self._frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode >= OP_CLOSE:
                if not fin or len(payload) > _CONTROL_MAX:
                    raise FrameError("a control frame was fragmented or longer than 125 bytes")
                return opcode, payload
            if opcode == OP_CONTINUATION:
                if not self._parts_op:
                    raise FrameError("a continuation frame arrived with no message to continue")
            elif self._parts_op:
                raise FrameError("a new message began before the previous one was finished")
            elif fin:
                return opcode, payload
            else:
                self._parts_op = opcode
            self._parts.append(payload)
            self._parts_len += len(payload)
            if self._parts_len > self.max_size:
                raise FrameError(f"message larger than {self.max_size} bytes", 1009)
            if fin:
                opcode, data = self._parts_op, b"".join(self._parts)
                self._parts.clear()
                self._parts_len = self._parts_op = 0
                return opcode, data

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        have = len(buf)
        if have < 2:
            return None
        b0 = buf[0]
        b1 = buf[1]
        if b0 & 0x70:
            raise FrameError("reserved bits set: no extension was negotiated")
        opcode = b0 & 0x0F
        if opcode not in (0, 1, 2, 8, 9, 10):
            raise FrameError(f"unknown opcode {opcode}")
        n = b1 & 0x7F
        offset = 2
        if n == 126:
            if have < 4:
                return None
            n = _U16.unpack_from(buf, 2)[0]
            offset = 4
        elif n == 127:
            if have < 10:
                return None
            n = _U64.unpack_from(buf, 2)[0]
            offset = 10
        if n > self.max_size:
            raise FrameError(f"message larger than {self.max_size} bytes", 1009)
        masked = b1 & 0x80
        end = offset + (4 if masked else 0) + n
        if have < end:
            return None
        if masked:
            mask = bytes(buf[offset : offset + 4])
            payload = _apply_mask(bytes(buf[offset + 4 : end]), mask)
        else:
            payload = bytes(buf[offset:end])
        del buf[:end]
        return bool(b0 & 0x80), opcode, payload
