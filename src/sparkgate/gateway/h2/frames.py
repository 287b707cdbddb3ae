"""HTTP/2 framing (RFC 9113 §4, §6): frame types, flags, error codes, settings, and frame encoding.

Parsing lives in :mod:`.protocol`, inlined into its ``_parse`` because it is the hot path
(DATA payloads are forwarded as memoryviews of the received buffer, never copied). This module
holds what both directions share and what tests need to build frames by hand.
"""

from __future__ import annotations

import enum
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LEN = 9

# Frame types (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings identifiers (RFC 9113 §6.5.2).
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_FRAME_LIMIT = 2**24 - 1
MAX_WINDOW = 2**31 - 1


class ErrorCode(enum.IntEnum):
    """RST_STREAM / GOAWAY error codes (RFC 9113 §7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class H2Error(Exception):
    """A connection error (RFC 9113 §5.4.1): the connection ends with GOAWAY ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


HEADER = struct.Struct(">BHBBL")  # 24-bit length split as (high byte, low 16 bits)


def frame_header(length: int, type_: int, flags: int, stream_id: int) -> bytes:
    return HEADER.pack(length >> 16, length & 0xFFFF, type_, flags, stream_id)


def parse_frame_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int, int, int]:
    """``(length, type, flags, stream_id)`` of the 9-byte header at ``offset``."""
    hi, lo, type_, flags, sid = HEADER.unpack_from(buf, offset)
    return hi << 16 | lo, type_, flags, sid & 0x7FFFFFFF


def frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return frame_header(len(payload), type_, flags, stream_id) + payload


def settings_frame(pairs: list[tuple[int, int]]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HL", k, v) for k, v in pairs))


def parse_settings(payload: bytes | memoryview) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS payload is not a multiple of 6 bytes")
    return [struct.unpack_from(">HL", payload, i) for i in range(0, len(payload), 6)]


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">L", code))


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">LL", last_stream_id, code) + debug)


def parse_goaway(payload: bytes | memoryview) -> tuple[int, int, bytes]:
    if len(payload) < 8:
        raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
    last, code = struct.unpack_from(">LL", payload)
    return last & 0x7FFFFFFF, code, bytes(payload[8:])


def strip_padding(flags: int, payload: memoryview) -> memoryview:
    """Remove the Pad Length byte and padding of a PADDED frame."""
    if not flags & PADDED:
        return payload
    if not payload:
        raise H2Error(ErrorCode.PROTOCOL_ERROR, "padded frame without a Pad Length")
    pad = payload[0]
    if pad >= len(payload):
        raise H2Error(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - pad]
