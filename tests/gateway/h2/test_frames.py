"""HTTP/2 frame encoding and the small parsers shared by both legs."""

from __future__ import annotations

import pytest

from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.frames import ErrorCode, H2Error


def test_frame_header_round_trip() -> None:
    head = f.frame_header(0x123456, f.HEADERS, f.END_HEADERS | f.END_STREAM, 7)
    assert head == bytes.fromhex("123456") + bytes((f.HEADERS, 5)) + (7).to_bytes(4, "big")
    assert f.parse_frame_header(head) == (0x123456, f.HEADERS, 5, 7)


def test_reserved_bit_of_the_stream_id_is_ignored() -> None:
    head = bytearray(f.frame_header(0, f.DATA, 0, 3))
    head[5] |= 0x80
    assert f.parse_frame_header(head)[3] == 3


def test_settings_round_trip_and_bad_length() -> None:
    frame = f.settings_frame([(f.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (f.SETTINGS_HEADER_TABLE_SIZE, 0)])
    assert f.parse_frame_header(frame) == (12, f.SETTINGS, 0, 0)
    assert f.parse_settings(frame[9:]) == [(f.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (f.SETTINGS_HEADER_TABLE_SIZE, 0)]
    with pytest.raises(H2Error) as e:
        f.parse_settings(b"\x00" * 7)
    assert e.value.code is ErrorCode.FRAME_SIZE_ERROR


def test_control_frames() -> None:
    assert f.window_update_frame(1, 100)[9:] == (100).to_bytes(4, "big")
    assert f.rst_stream_frame(3, ErrorCode.CANCEL)[9:] == (8).to_bytes(4, "big")
    goaway = f.goaway_frame(5, ErrorCode.PROTOCOL_ERROR, b"why")
    assert f.parse_goaway(goaway[9:]) == (5, ErrorCode.PROTOCOL_ERROR, b"why")
    with pytest.raises(H2Error):
        f.parse_goaway(b"\x00" * 4)


def test_padding_is_stripped_and_checked() -> None:
    payload = memoryview(b"\x02abc\x00\x00")
    assert bytes(f.strip_padding(f.PADDED, payload)) == b"abc"
    assert f.strip_padding(0, payload) is payload
    with pytest.raises(H2Error):
        f.strip_padding(f.PADDED, memoryview(b"\x05ab"))
    with pytest.raises(H2Error):
        f.strip_padding(f.PADDED, memoryview(b""))
